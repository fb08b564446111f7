//! The "before fetching" step of a followed partition, run when the fetcher starts following
//! it and after each change of its leader or leader epoch: it decides the offset the first
//! fetch starts from.
//!
//! Today the step fetches from the local log end offset. The leader-epoch truncation
//! (OffsetForLeaderEpoch to the leader, then truncating a divergent suffix, KIP-279) replaces
//! the body of [`fetch_start`]; its signature stays.

use super::connection::{LeaderConnection, ReplicationError};
use super::table::Followed;
use crate::partition::Partition;

/// The offset to fetch `partition` from, for the assignment `followed` (its leader and
/// `leader_epoch`, which a request to the leader carries as `current_leader_epoch`).
/// `connection` is open to that leader and idle: the step may send requests on it
/// (`LeaderConnection::call`). May truncate the local log before returning. Any error closes
/// the connection; the fetcher reconnects (with its back-off) and runs the step again.
pub async fn fetch_start(
    connection: &mut LeaderConnection,
    partition: &Partition,
    followed: &Followed,
) -> Result<i64, ReplicationError> {
    let _ = (connection, followed);
    Ok(partition.log.log_end_offset())
}
