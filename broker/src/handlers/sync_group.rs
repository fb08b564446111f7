//! SyncGroup: the leader hands out assignments; every member receives its own. Versions 0–5.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::{group_shard, RequestContext};
use crate::shard::message::{Reply, Request};

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 5;

pub async fn handle(ctx: &RequestContext, request: SyncGroupRequest) -> SyncGroupResponse {
    let group_id = request.group_id.0.to_string();
    let member_id = request.member_id.to_string();
    let instance_id = request.group_instance_id.map(|i| i.to_string());
    let assignments = request
        .assignments
        .into_iter()
        // Copied: a slice would keep the whole request frame alive as long as the group.
        .map(|a| {
            (
                a.member_id.to_string(),
                Bytes::copy_from_slice(&a.assignment),
            )
        })
        .collect();
    let owner = match group_shard(ctx, &group_id) {
        Ok(owner) => owner,
        Err(error) => return SyncGroupResponse::default().with_error_code(error.code()),
    };
    let result = ctx
        .shard
        .call(
            owner,
            Request::SyncGroup {
                group_id,
                member_id,
                instance_id,
                generation: request.generation_id,
                assignments,
            },
        )
        .await;
    let Reply::SyncGroup(result) = result else {
        result.mismatch("SyncGroup")
    };
    // v5 names the protocol; a member that expected another one is inconsistent.
    let mismatch = |asked: &Option<StrBytes>, actual: &Option<String>| {
        asked
            .as_ref()
            .is_some_and(|a| actual.as_deref().is_some_and(|b| a.as_str() != b))
    };
    let error = if result.error.is_none()
        && (mismatch(&request.protocol_type, &result.protocol_type)
            || mismatch(&request.protocol_name, &result.protocol_name))
    {
        Some(ResponseError::InconsistentGroupProtocol)
    } else {
        result.error
    };
    let response = SyncGroupResponse::default()
        .with_error_code(error.map_or(0, |e| e.code()))
        .with_assignment(result.assignment);
    if ctx.version >= 5 {
        response
            .with_protocol_type(result.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(result.protocol_name.map(StrBytes::from_string))
    } else {
        response
    }
}
