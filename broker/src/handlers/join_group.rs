//! JoinGroup. Versions 0–9. Forwarded to the group's coordinator shard, where the call waits
//! until the join phase completes (all members rejoined, or the rebalance timeout).

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use super::{group_shard, RequestContext};
use crate::groups::group::{JoinArgs, JoinResult};
use crate::shard::message::{Reply, Request};

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 9;

pub async fn handle(ctx: &RequestContext, request: JoinGroupRequest) -> JoinGroupResponse {
    let group_id = request.group_id.0.to_string();
    if group_id.is_empty() {
        return JoinGroupResponse::default()
            .with_error_code(ResponseError::InvalidGroupId.code())
            .with_generation_id(-1);
    }
    // v0 has no rebalance timeout: it is the session timeout.
    let rebalance_timeout_ms = if ctx.version == 0 {
        request.session_timeout_ms
    } else {
        request.rebalance_timeout_ms
    };
    let args = JoinArgs {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|i| i.to_string()),
        client_id: ctx
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", ctx.peer_ip),
        session_timeout: Duration::from_millis(request.session_timeout_ms.max(0) as u64),
        rebalance_timeout: Duration::from_millis(rebalance_timeout_ms.max(0) as u64),
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            // Copied: a slice would keep the whole request frame alive as long as the member.
            .map(|p| (p.name.to_string(), Bytes::copy_from_slice(&p.metadata)))
            .collect(),
        require_known_member_id: ctx.version >= 4,
    };
    let owner = match group_shard(ctx, &group_id) {
        Ok(owner) => owner,
        Err(error) => {
            return JoinGroupResponse::default()
                .with_error_code(error.code())
                .with_generation_id(-1)
                .with_member_id(StrBytes::from_string(args.member_id))
        }
    };
    let result = ctx
        .shard
        .call(owner, Request::JoinGroup { group_id, args })
        .await;
    let Reply::JoinGroup(result) = result else {
        result.mismatch("JoinGroup")
    };
    response(ctx.version, result)
}

fn response(version: i16, result: JoinResult) -> JoinGroupResponse {
    let members = result
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(id))
                .with_group_instance_id(if version >= 5 {
                    instance.map(StrBytes::from_string)
                } else {
                    None
                })
                .with_metadata(metadata)
        })
        .collect();
    let response = JoinGroupResponse::default()
        .with_error_code(result.error.map_or(0, |e| e.code()))
        .with_generation_id(result.generation)
        .with_protocol_name(result.protocol_name.map(StrBytes::from_string))
        .with_leader(StrBytes::from_string(result.leader))
        .with_member_id(StrBytes::from_string(result.member_id))
        .with_members(members);
    if version >= 7 {
        response.with_protocol_type(result.protocol_type.map(StrBytes::from_string))
    } else {
        response
    }
}
