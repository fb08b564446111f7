//! FindCoordinator: every group is coordinated by this broker (the shard that owns the group's
//! `__consumer_offsets` partition serves it, reached from any connection). Versions 0–4.
//! Transaction coordinators (key type 1) are not served: COORDINATOR_NOT_AVAILABLE.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 4;

const KEY_TYPE_GROUP: i8 = 0;

pub async fn handle(
    ctx: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let config = &ctx.shard.config;
    let (node, host, port) = (
        BrokerId(config.node_id),
        StrBytes::from_string(config.advertised_host()),
        i32::from(config.listen.port()),
    );
    let error =
        (request.key_type != KEY_TYPE_GROUP).then_some(ResponseError::CoordinatorNotAvailable);
    if ctx.version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let found = Coordinator::default().with_key(key);
                match error {
                    Some(error) => found
                        .with_error_code(error.code())
                        .with_node_id(BrokerId(-1))
                        .with_port(-1),
                    None => found
                        .with_node_id(node)
                        .with_host(host.clone())
                        .with_port(port),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    match error {
        Some(error) => FindCoordinatorResponse::default()
            .with_error_code(error.code())
            .with_node_id(BrokerId(-1))
            .with_port(-1),
        None => FindCoordinatorResponse::default()
            .with_node_id(node)
            .with_host(host)
            .with_port(port),
    }
}
