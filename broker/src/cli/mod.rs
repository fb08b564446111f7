//! Command-line tools that talk to a running broker over TCP with the native client in `net`.

pub mod common;
pub mod consume;
pub mod group;
pub mod produce;
pub mod topic;
