//! DescribeGroups: state, protocol and members with their assignments. Versions 0–5.
//! A group that does not exist is described as Dead, as Kafka does. Authorised operations (v3+)
//! are reported when asked for.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{authorized_operations, group_shard, RequestContext};
use crate::shard::message::{Reply, Request};

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 5;

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    // v3+ can ask for the group's authorised operations (every one: there is no authoriser).
    let operations = authorized_operations::if_requested(
        request.include_authorized_operations,
        authorized_operations::GROUP,
    );
    let mut described = Vec::with_capacity(request.groups.len());
    for group_id in request.groups {
        let name = group_id.0.to_string();
        let owner = match group_shard(ctx, &name) {
            Ok(owner) => owner,
            Err(error) => {
                described.push(
                    DescribedGroup::default()
                        .with_group_id(group_id)
                        .with_error_code(error.code()),
                );
                continue;
            }
        };
        let summary = ctx
            .shard
            .call(owner, Request::DescribeGroup { group_id: name })
            .await;
        let Reply::DescribeGroup(summary) = summary else {
            summary.mismatch("DescribeGroup")
        };
        let entry = DescribedGroup::default()
            .with_group_id(group_id)
            .with_authorized_operations(operations);
        described.push(match summary {
            None => entry.with_group_state(StrBytes::from_static_str("Dead")),
            Some(g) => {
                let members = g
                    .members
                    .into_iter()
                    .map(|(id, instance, client_id, host, metadata, assignment)| {
                        DescribedGroupMember::default()
                            .with_member_id(StrBytes::from_string(id))
                            .with_group_instance_id(if ctx.version >= 4 {
                                instance.map(StrBytes::from_string)
                            } else {
                                None
                            })
                            .with_client_id(StrBytes::from_string(client_id))
                            .with_client_host(StrBytes::from_string(host))
                            .with_member_metadata(metadata)
                            .with_member_assignment(assignment)
                    })
                    .collect();
                entry
                    .with_group_state(StrBytes::from_static_str(g.state.name()))
                    .with_protocol_type(StrBytes::from_string(g.protocol_type))
                    .with_protocol_data(StrBytes::from_string(g.protocol))
                    .with_members(members)
            }
        });
    }
    DescribeGroupsResponse::default().with_groups(described)
}
