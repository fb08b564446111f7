//! LeaveGroup: members leave (v0–2 one member by id; v3+ a batch, static members by instance
//! id). Versions 0–5.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::{group_shard, RequestContext};
use crate::shard::message::{Reply, Request};

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 5;

pub async fn handle(ctx: &RequestContext, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let group_id = request.group_id.0.to_string();
    let members: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let owner = match group_shard(ctx, &group_id) {
        Ok(owner) => owner,
        Err(error) => return LeaveGroupResponse::default().with_error_code(error.code()),
    };
    let asked = members.clone();
    let errors = ctx
        .shard
        .call(
            owner,
            Request::LeaveGroup {
                group_id,
                members: asked,
            },
        )
        .await;
    let Reply::LeaveGroup(errors) = errors else {
        errors.mismatch("LeaveGroup")
    };
    if ctx.version < 3 {
        return LeaveGroupResponse::default().with_error_code(errors[0].map_or(0, |e| e.code()));
    }
    let responses = request
        .members
        .into_iter()
        .zip(errors)
        .map(|(m, error)| {
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(error.map_or(0, |e| e.code()))
        })
        .collect();
    LeaveGroupResponse::default().with_members(responses)
}
