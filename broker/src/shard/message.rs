//! The typed messages shards send each other: one [`Request`] variant per cross-shard operation
//! and one [`Reply`] variant per answer, dispatched by the receiving shard with one `match`
//! (`shard::dispatch`).
//!
//! Payloads are plain owned data (no closures, no `Rc`). On one broker the value moves through
//! the channel as it is: record data is never copied or encoded on the way. Both enums are also
//! archivable with rkyv (validated on access with bytecheck), the shape in which they can one day
//! travel between brokers; nothing on one broker encodes them. Kafka error codes archive as their
//! i16 code, record batches as their bytes (validated again when deserialized), and a wait as
//! its remaining time rather than an `Instant`, which means nothing on another machine.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use storage::ValidatedBatches;

use crate::cluster::controller::elections::ElectionOutcome;
use crate::cluster::controller::reassign::ReassignmentRequest;
use crate::cluster::controller::{BrokerTarget, ConfigChange, Refusal, TopicSpec};
use crate::cluster::election::ElectionType;
use crate::cluster::metadata::{MetadataSnapshot, TopicMeta};
use crate::cluster::quorum_view::QuorumView;
use crate::groups::group::{JoinArgs, JoinResult, SyncResult};
use crate::groups::{CommitEntry, GroupSummary, OffsetsByTopic};
use crate::partition::{
    Appended, IsrChange, PartitionRead, ReadSpec, Replication, WaitFor, WaitSpec,
};

/// Work for another shard (or this one): partitions go to their owner shard, groups to their
/// coordinator shard, metadata changes to the controller shard.
#[derive(Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Request {
    /// Appends one produced batch to a partition this shard owns.
    Append {
        topic: String,
        partition: i32,
        batches: ValidatedBatches,
        acks: i16,
        replication: Replication,
    },
    /// Reads from partitions this shard owns: for a consumer (`replica_id` -1) up to the high
    /// watermark, for a follower (its broker id) up to the log end, recording its position. A
    /// consumer's `client_rack` (set only with a rack-aware replica selector) lets a leader
    /// answer with a replica in that rack instead of records (KIP-392).
    Read {
        specs: Vec<ReadSpec>,
        replica_id: i32,
        client_rack: Option<String>,
    },
    /// Completes when any of `waits` has data past its offset (committed data, or any for a
    /// follower: `wait_for`; for a follower also a high watermark past the one it was
    /// answered), or once `timeout` has passed since the owner received it. The sender also stops waiting at its own deadline, so time in the channel
    /// never lengthens a fetch's wait.
    Wait {
        waits: Vec<WaitSpec>,
        wait_for: WaitFor,
        timeout: Duration,
    },
    ListOffset {
        topic: String,
        partition: i32,
        timestamp: i64,
        /// The client's `current_leader_epoch`; -1 asks for no check.
        current_leader_epoch: i32,
    },
    DeleteRecords {
        topic: String,
        partition: i32,
        offset: i64,
    },
    JoinGroup {
        group_id: String,
        args: JoinArgs,
    },
    SyncGroup {
        group_id: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    },
    Heartbeat {
        group_id: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
    },
    /// Members as (member id, group instance id).
    LeaveGroup {
        group_id: String,
        members: Vec<(String, Option<String>)>,
    },
    CommitOffsets {
        group_id: String,
        member_id: String,
        instance_id: Option<String>,
        generation: i32,
        entries: Vec<CommitEntry>,
    },
    /// `wanted: None` asks for every committed offset of the group.
    FetchOffsets {
        group_id: String,
        wanted: Option<Vec<(String, Vec<i32>)>>,
    },
    DescribeGroup {
        group_id: String,
    },
    /// The groups this shard coordinates.
    ListGroups,
    DeleteGroup {
        group_id: String,
    },
    DeleteOffsets {
        group_id: String,
        partitions: Vec<(String, i32)>,
    },
    AllocateProducerId,
    CreateTopics {
        specs: Vec<TopicSpec>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    /// (topic, new partition count).
    CreatePartitions {
        requests: Vec<(String, i32)>,
        validate_only: bool,
    },
    AlterTopicConfigs {
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    },
    AlterBrokerConfigs {
        changes: Vec<(BrokerTarget, ConfigChange)>,
        validate_only: bool,
    },
    /// Installs a metadata snapshot the controller published.
    ApplyMetadata(Arc<MetadataSnapshot>),
    /// The metadata quorum as this broker sees it, from the controller shard.
    DescribeQuorum,
    /// Proposes the ISR a partition this broker leads should have, on the controller shard.
    ChangeIsr {
        topic: String,
        /// The topic's id as the leader knows it: a topic re-created since is left alone.
        topic_id: uuid::Uuid,
        partition: i32,
        change: IsrChange,
    },
    /// The end offset of `leader_epoch` in a partition's log (OffsetForLeaderEpoch).
    OffsetForLeaderEpoch {
        topic: String,
        partition: i32,
        leader_epoch: i32,
    },
    /// Leader elections on (topic, partition)s, None for every partition.
    ElectLeaders {
        election: ElectionType,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// Starts or cancels partition reassignments, on the controller shard.
    AlterReassignments {
        requests: Vec<ReassignmentRequest>,
    },
}

/// The answer to a [`Request`], in the variant of the same name.
#[derive(Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Reply {
    Append(Result<Appended, ResponseError>),
    Read(Vec<PartitionRead>),
    Wait,
    /// (offset, timestamp).
    ListOffset(Result<(i64, i64), ResponseError>),
    /// The new log start offset.
    DeleteRecords(Result<i64, ResponseError>),
    JoinGroup(JoinResult),
    SyncGroup(SyncResult),
    Heartbeat(Option<ResponseError>),
    /// One outcome per member asked.
    LeaveGroup(Vec<Option<ResponseError>>),
    /// One outcome per entry.
    CommitOffsets(Vec<Option<ResponseError>>),
    /// COORDINATOR_LOAD_IN_PROGRESS while the group's partition is replayed.
    FetchOffsets(Result<OffsetsByTopic, ResponseError>),
    DescribeGroup(Option<GroupSummary>),
    ListGroups(Vec<GroupSummary>),
    DeleteGroup(Option<ResponseError>),
    DeleteOffsets(Result<Vec<Option<ResponseError>>, ResponseError>),
    AllocateProducerId(Result<i64, ResponseError>),
    CreateTopics(Vec<Result<TopicMeta, Refusal>>),
    DeleteTopics(Vec<Result<uuid::Uuid, Refusal>>),
    CreatePartitions(Vec<Result<(), Refusal>>),
    AlterTopicConfigs(Vec<Result<(), Refusal>>),
    AlterBrokerConfigs(Vec<Result<(), Refusal>>),
    /// The partitions that failed to open, as (topic, error).
    ApplyMetadata(Vec<(String, String)>),
    DescribeQuorum(QuorumView),
    ChangeIsr(Result<(), Refusal>),
    /// (epoch, end offset); (-1, -1) where Kafka answers UNDEFINED.
    OffsetForLeaderEpoch(Result<(i32, i64), ResponseError>),
    ElectLeaders(Vec<ElectionOutcome>),
    /// One result per reassignment request, in order.
    AlterReassignments(Vec<Result<(), Refusal>>),
}

impl Reply {
    /// For a caller that received the reply of another request: a bug in `dispatch`.
    pub fn mismatch(&self, wanted: &str) -> ! {
        unreachable!("a {wanted} request was answered with another reply")
    }
}

#[cfg(test)]
mod tests;
