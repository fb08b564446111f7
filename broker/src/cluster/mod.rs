//! Cluster state and the changes to it: the metadata snapshot every shard serves, the topic and
//! broker configs it holds, where each partition lives, and the controller, the one writer that
//! changes the metadata and publishes each new snapshot to the shards.
//!
//! Invariant: nothing here knows the shard. The controller reaches the shards only through
//! [`controller::MetadataPublisher`], which the shard implements, so cluster state sits below
//! the shard in the module graph (as the partitions and the groups do).

pub mod broker_config;
pub mod controller;
pub mod election;
pub mod liveness;
pub mod membership;
pub mod metadata;
pub mod placement;
pub mod quorum_view;
pub mod routing;
pub mod topic_config;
