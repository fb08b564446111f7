//! Heartbeat: keeps a member's session alive; tells it when to rejoin. Versions 0–4.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{group_shard, RequestContext};
use crate::shard::message::{Reply, Request};

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 4;

pub async fn handle(ctx: &RequestContext, request: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let instance_id = request.group_instance_id.map(|i| i.to_string());
    let owner = match group_shard(ctx, &group_id) {
        Ok(owner) => owner,
        Err(error) => return HeartbeatResponse::default().with_error_code(error.code()),
    };
    let generation = request.generation_id;
    let error = ctx
        .shard
        .call(
            owner,
            Request::Heartbeat {
                group_id,
                member_id,
                instance_id,
                generation,
            },
        )
        .await;
    let Reply::Heartbeat(error) = error else {
        error.mismatch("Heartbeat")
    };
    HeartbeatResponse::default().with_error_code(error.map_or(0, |e| e.code()))
}
