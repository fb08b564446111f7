//! ListGroups: every group of every shard, optionally filtered by state (v4+). Versions 0–4.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::groups;

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 4;

pub async fn handle(ctx: &RequestContext, request: ListGroupsRequest) -> ListGroupsResponse {
    let mut listed = Vec::new();
    for target in 0..ctx.shard.count {
        let summaries = ctx
            .shard
            .call(target, |s| async move { groups::summaries(&s) })
            .await;
        listed.extend(summaries);
    }
    let wanted = |state: &str| {
        request.states_filter.is_empty()
            || request
                .states_filter
                .iter()
                .any(|f| f.as_str().eq_ignore_ascii_case(state))
    };
    let groups = listed
        .into_iter()
        .filter(|g| wanted(g.state))
        .map(|g| {
            let entry = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            if ctx.version >= 4 {
                entry.with_group_state(StrBytes::from_static_str(g.state))
            } else {
                entry
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
