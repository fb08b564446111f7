//! ListGroups: every group of every shard, optionally filtered by state (v4+) and by type (v5+,
//! KIP-848). Versions 0–5. Every Sluice group is a classic group.

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::shard::message::{Reply, Request};

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 5;

/// The type of every group Sluice coordinates (KIP-848 names the classic protocol so).
const GROUP_TYPE: &str = "classic";

pub async fn handle(ctx: &RequestContext, request: ListGroupsRequest) -> ListGroupsResponse {
    let mut listed = Vec::new();
    for target in 0..ctx.shard.count {
        let summaries = ctx.shard.call(target, Request::ListGroups).await;
        let Reply::ListGroups(summaries) = summaries else {
            summaries.mismatch("ListGroups")
        };
        listed.extend(summaries);
    }
    let wanted = |state: &str| {
        request.states_filter.is_empty()
            || request
                .states_filter
                .iter()
                .any(|f| f.as_str().eq_ignore_ascii_case(state))
    };
    // A types filter that does not name the classic type matches no group (v5+).
    let classic_wanted = request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|t| t.as_str().eq_ignore_ascii_case(GROUP_TYPE));
    let groups = listed
        .into_iter()
        .filter(|g| classic_wanted && wanted(g.state.name()))
        .map(|g| {
            let entry = ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.group_id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type));
            let entry = if ctx.version >= 4 {
                entry.with_group_state(StrBytes::from_static_str(g.state.name()))
            } else {
                entry
            };
            if ctx.version >= 5 {
                entry.with_group_type(StrBytes::from_static_str(GROUP_TYPE))
            } else {
                entry
            }
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
