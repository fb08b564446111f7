//! FindCoordinator: names the broker coordinating a group, the leader of the group's
//! `__consumer_offsets` partition (`cluster::routing::coordinator_of`), with its advertised
//! address; COORDINATOR_NOT_AVAILABLE while no broker leads that partition. Answered from the
//! snapshot clients are served (`metadata::served_snapshot`): a broker cut off from its quorum
//! never names itself. Versions 0–4 (v4
//! asks for several keys at once). Transaction coordinators (key type 1) are not served:
//! COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::cluster::metadata::MetadataSnapshot;
use crate::cluster::routing::coordinator_of;
use crate::groups::store::offsets_partition;

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 4;

const KEY_TYPE_GROUP: i8 = 0;

/// A coordinator's node id, host and port.
type Found = (i32, String, u16);

pub async fn handle(
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let snapshot = super::metadata::served_snapshot(&ctx.shard);
    let find = |key: &str| find(&snapshot, request.key_type, key);
    if ctx.version >= 4 {
        let coordinators = (request.coordinator_keys.into_iter())
            .map(|key| {
                let coordinator = Coordinator::default();
                match find(key.as_str()) {
                    Ok((id, host, port)) => coordinator
                        .with_node_id(BrokerId(id))
                        .with_host(StrBytes::from_string(host))
                        .with_port(i32::from(port)),
                    Err(error) => coordinator
                        .with_error_code(error.code())
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                }
                .with_key(key)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match find(request.key.as_str()) {
        Ok((id, host, port)) => FindCoordinatorResponse::default()
            .with_node_id(BrokerId(id))
            .with_host(StrBytes::from_string(host))
            .with_port(i32::from(port)),
        Err(error) => FindCoordinatorResponse::default()
            .with_error_code(error.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1),
    }
}

/// The coordinator of `key` (a group id when `key_type` is 0) and its advertised listener.
fn find(snapshot: &MetadataSnapshot, key_type: i8, key: &str) -> Result<Found, ResponseError> {
    if key_type != KEY_TYPE_GROUP {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    let id = coordinator_of(snapshot, offsets_partition(key))?;
    let broker = (snapshot.brokers.get(&id)).ok_or(ResponseError::CoordinatorNotAvailable)?;
    Ok((id, broker.host.clone(), broker.port))
}
