//! The `sluice` binary's client commands: they talk to a running broker over TCP through the
//! `client` crate, like any other client.

pub mod cluster;
pub mod common;
pub mod consume;
pub mod group;
pub mod produce;
pub mod reassign;
pub mod topic;
