//! DeleteGroups: remove empty groups and their committed offsets. Versions 0–2.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::{group_shard, RequestContext};
use crate::shard::message::{Reply, Request};

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 2;

pub async fn handle(ctx: &RequestContext, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        let name = group_id.0.to_string();
        let error = match group_shard(ctx, &name) {
            Err(error) => Some(error),
            Ok(owner) => {
                let error = ctx
                    .shard
                    .call(owner, Request::DeleteGroup { group_id: name })
                    .await;
                let Reply::DeleteGroup(error) = error else {
                    error.mismatch("DeleteGroup")
                };
                error
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(error.map_or(0, |e| e.code())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
