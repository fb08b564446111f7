//! Request builders and response parsers of the consumer group APIs: FindCoordinator, JoinGroup,
//! SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups,
//! DeleteGroups and OffsetDelete. Pure functions over kafka-protocol message types, like `apis`.
//!
//! Builders take the negotiated version because these messages moved fields between versions
//! (e.g. FindCoordinator v4 batches keys, LeaveGroup v3 lists members, OffsetFetch v8 batches
//! groups); kafka-protocol refuses to encode a field the version does not have.

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::error::{check_code, ClientError, Result};
use super::types::{
    BrokerAddress, CommittedOffset, GroupDescription, GroupMembership, JoinGroupParams,
    JoinOutcome, JoinedGroup, JoinedMember, ListedGroup, MemberDescription, PartitionOffset,
};

fn string(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn optional(value: &Option<String>) -> Option<StrBytes> {
    value.as_deref().map(string)
}

fn owned(value: &Option<StrBytes>) -> Option<String> {
    value.as_ref().map(|value| value.as_str().to_owned())
}

fn group_name(group_id: &str) -> GroupId {
    GroupId(string(group_id))
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(string(topic))
}

/// Groups `(topic, item)` pairs by topic, keeping the order in which topics first appear.
fn by_topic<'a, T>(items: impl IntoIterator<Item = (&'a str, T)>) -> Vec<(&'a str, Vec<T>)> {
    let mut topics: Vec<(&str, Vec<T>)> = Vec::new();
    for (topic, item) in items {
        match topics.iter_mut().find(|(name, _)| *name == topic) {
            Some((_, entries)) => entries.push(item),
            None => topics.push((topic, vec![item])),
        }
    }
    topics
}

/// Looks up the coordinator of a consumer group (key type 0).
pub fn find_coordinator_request(group_id: &str, version: i16) -> FindCoordinatorRequest {
    let mut request = FindCoordinatorRequest::default();
    if version >= 4 {
        request.coordinator_keys = vec![string(group_id)];
    } else {
        request.key = string(group_id);
    }
    request
}

pub fn parse_find_coordinator(
    response: &FindCoordinatorResponse,
    group_id: &str,
    version: i16,
) -> Result<BrokerAddress> {
    let context = || format!("find coordinator of group {group_id:?}");
    if version < 4 {
        check_code(
            response.error_code,
            response.error_message.as_deref(),
            context,
        )?;
        return Ok(BrokerAddress {
            node_id: response.node_id.0,
            host: response.host.as_str().to_owned(),
            port: response.port,
        });
    }
    let coordinator = response
        .coordinators
        .iter()
        .find(|coordinator| coordinator.key.as_str() == group_id)
        .ok_or_else(|| {
            ClientError::protocol(format!(
                "FindCoordinator response has no entry for group {group_id:?}"
            ))
        })?;
    check_code(
        coordinator.error_code,
        coordinator.error_message.as_deref(),
        context,
    )?;
    Ok(BrokerAddress {
        node_id: coordinator.node_id.0,
        host: coordinator.host.as_str().to_owned(),
        port: coordinator.port,
    })
}

/// Static membership (`group_instance_id`) needs v5; an older version fails to encode rather
/// than silently joining as a dynamic member. The reason is informational and dropped before v8.
pub fn join_group_request(params: &JoinGroupParams, version: i16) -> JoinGroupRequest {
    let mut request = JoinGroupRequest::default();
    request.group_id = group_name(&params.group_id);
    request.session_timeout_ms = params.session_timeout_ms;
    if version >= 1 {
        request.rebalance_timeout_ms = params.rebalance_timeout_ms;
    }
    request.member_id = string(&params.member_id);
    request.group_instance_id = optional(&params.group_instance_id);
    request.protocol_type = string(&params.protocol_type);
    request.protocols = params
        .protocols
        .iter()
        .map(|protocol| {
            let mut entry = JoinGroupRequestProtocol::default();
            entry.name = string(&protocol.name);
            entry.metadata = protocol.metadata.clone();
            entry
        })
        .collect();
    if version >= 8 {
        request.reason = optional(&params.reason);
    }
    request
}

/// MEMBER_ID_REQUIRED is an outcome, not an error: the member joins again with the id given.
pub fn parse_join_group(response: JoinGroupResponse, group_id: &str) -> Result<JoinOutcome> {
    if response.error_code == ResponseError::MemberIdRequired.code() {
        return Ok(JoinOutcome::MemberIdRequired {
            member_id: response.member_id.as_str().to_owned(),
        });
    }
    check_code(response.error_code, None, || {
        format!("join group {group_id:?}")
    })?;
    let members = response
        .members
        .into_iter()
        .map(|member| JoinedMember {
            member_id: member.member_id.as_str().to_owned(),
            group_instance_id: owned(&member.group_instance_id),
            metadata: member.metadata,
        })
        .collect();
    Ok(JoinOutcome::Joined(JoinedGroup {
        generation_id: response.generation_id,
        protocol_type: owned(&response.protocol_type),
        protocol_name: owned(&response.protocol_name),
        leader_id: response.leader.as_str().to_owned(),
        member_id: response.member_id.as_str().to_owned(),
        skip_assignment: response.skip_assignment,
        members,
    }))
}

pub struct SyncGroupParams<'a> {
    pub membership: &'a GroupMembership,
    pub protocol_type: &'a str,
    pub protocol_name: &'a str,
    /// (member id, assignment bytes); only the leader sends any.
    pub assignments: &'a [(String, Bytes)],
}

pub fn sync_group_request(params: &SyncGroupParams<'_>, version: i16) -> SyncGroupRequest {
    let membership = params.membership;
    let mut request = SyncGroupRequest::default();
    request.group_id = group_name(&membership.group_id);
    request.generation_id = membership.generation_id;
    request.member_id = string(&membership.member_id);
    request.group_instance_id = optional(&membership.group_instance_id);
    if version >= 5 {
        request.protocol_type = Some(string(params.protocol_type));
        request.protocol_name = Some(string(params.protocol_name));
    }
    request.assignments = params
        .assignments
        .iter()
        .map(|(member_id, assignment)| {
            let mut entry = SyncGroupRequestAssignment::default();
            entry.member_id = string(member_id);
            entry.assignment = assignment.clone();
            entry
        })
        .collect();
    request
}

/// Returns this member's assignment bytes (empty when it was assigned nothing).
pub fn parse_sync_group(response: SyncGroupResponse, group_id: &str) -> Result<Bytes> {
    check_code(response.error_code, None, || {
        format!("sync group {group_id:?}")
    })?;
    Ok(response.assignment)
}

pub fn heartbeat_request(membership: &GroupMembership) -> HeartbeatRequest {
    let mut request = HeartbeatRequest::default();
    request.group_id = group_name(&membership.group_id);
    request.generation_id = membership.generation_id;
    request.member_id = string(&membership.member_id);
    request.group_instance_id = optional(&membership.group_instance_id);
    request
}

pub fn parse_heartbeat(response: &HeartbeatResponse, group_id: &str) -> Result<()> {
    check_code(response.error_code, None, || {
        format!("heartbeat to group {group_id:?}")
    })
}

/// Before v3 one member leaves by its member id; from v3 on, a list of members does (static
/// members by instance id), each with an optional reason from v5.
pub fn leave_group_request(
    membership: &GroupMembership,
    reason: Option<&str>,
    version: i16,
) -> LeaveGroupRequest {
    let mut request = LeaveGroupRequest::default();
    request.group_id = group_name(&membership.group_id);
    if version < 3 {
        request.member_id = string(&membership.member_id);
        return request;
    }
    let mut member = MemberIdentity::default();
    member.member_id = string(&membership.member_id);
    member.group_instance_id = optional(&membership.group_instance_id);
    if version >= 5 {
        member.reason = reason.map(string);
    }
    request.members = vec![member];
    request
}

pub fn parse_leave_group(response: &LeaveGroupResponse, group_id: &str) -> Result<()> {
    let context = || format!("leave group {group_id:?}");
    check_code(response.error_code, None, context)?;
    for member in &response.members {
        check_code(member.error_code, None, || {
            format!(
                "leave group {group_id:?} as member {:?}",
                member.member_id.as_str()
            )
        })?;
    }
    Ok(())
}

/// Commits `offsets` (the offset of the next record to consume, by Kafka's convention).
pub fn offset_commit_request(
    membership: &GroupMembership,
    offsets: &[PartitionOffset],
) -> OffsetCommitRequest {
    let topics = by_topic(offsets.iter().map(|entry| (entry.topic.as_str(), entry)));
    let mut request = OffsetCommitRequest::default();
    request.group_id = group_name(&membership.group_id);
    request.generation_id_or_member_epoch = membership.generation_id;
    request.member_id = string(&membership.member_id);
    request.group_instance_id = optional(&membership.group_instance_id);
    request.topics = topics
        .into_iter()
        .map(|(topic, entries)| {
            let mut topic_request = OffsetCommitRequestTopic::default();
            topic_request.name = topic_name(topic);
            topic_request.partitions = entries
                .into_iter()
                .map(|entry| {
                    let mut partition = OffsetCommitRequestPartition::default();
                    partition.partition_index = entry.partition;
                    partition.committed_offset = entry.offset;
                    partition
                })
                .collect();
            topic_request
        })
        .collect();
    request
}

/// Fails with the first partition's error; every partition of a commit normally shares the
/// group-level causes (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS).
pub fn parse_offset_commit(
    response: &OffsetCommitResponse,
    group_id: &str,
    offsets: &[PartitionOffset],
) -> Result<()> {
    for entry in offsets {
        let result = response
            .topics
            .iter()
            .filter(|topic| topic.name.as_str() == entry.topic)
            .flat_map(|topic| topic.partitions.iter())
            .find(|partition| partition.partition_index == entry.partition)
            .ok_or_else(|| {
                ClientError::protocol(format!(
                    "OffsetCommit response has no entry for {}-{}",
                    entry.topic, entry.partition
                ))
            })?;
        check_code(result.error_code, None, || {
            format!(
                "commit offset {} of {}-{} for group {group_id:?}",
                entry.offset, entry.topic, entry.partition
            )
        })?;
    }
    Ok(())
}

/// Committed offsets of `partitions` (topic, partition), or of every partition the group has
/// committed when `None`.
pub fn offset_fetch_request(
    group_id: &str,
    partitions: Option<&[(String, i32)]>,
    version: i16,
) -> OffsetFetchRequest {
    let topics = partitions.map(|partitions| {
        by_topic(
            partitions
                .iter()
                .map(|(topic, partition)| (topic.as_str(), *partition)),
        )
    });
    let mut request = OffsetFetchRequest::default();
    if version < 8 {
        request.group_id = group_name(group_id);
        request.topics = topics.map(|topics| {
            topics
                .into_iter()
                .map(|(topic, partition_indexes)| {
                    let mut entry = OffsetFetchRequestTopic::default();
                    entry.name = topic_name(topic);
                    entry.partition_indexes = partition_indexes;
                    entry
                })
                .collect()
        });
        return request;
    }
    let mut group = OffsetFetchRequestGroup::default();
    group.group_id = group_name(group_id);
    group.topics = topics.map(|topics| {
        topics
            .into_iter()
            .map(|(topic, partition_indexes)| {
                let mut entry = OffsetFetchRequestTopics::default();
                entry.name = topic_name(topic);
                entry.partition_indexes = partition_indexes;
                entry
            })
            .collect()
    });
    request.groups = vec![group];
    request
}

/// Sorted by topic and partition. An offset of -1 (nothing committed) becomes `None`.
pub fn parse_offset_fetch(
    response: OffsetFetchResponse,
    group_id: &str,
    version: i16,
) -> Result<Vec<CommittedOffset>> {
    let context = || format!("fetch committed offsets of group {group_id:?}");
    // (topic, partition, offset, metadata, error code)
    let mut rows: Vec<(String, i32, i64, Option<StrBytes>, i16)> = Vec::new();
    if version < 8 {
        check_code(response.error_code, None, context)?;
        for topic in response.topics {
            for partition in topic.partitions {
                rows.push((
                    topic.name.as_str().to_owned(),
                    partition.partition_index,
                    partition.committed_offset,
                    partition.metadata,
                    partition.error_code,
                ));
            }
        }
    } else {
        let group = response
            .groups
            .into_iter()
            .find(|group| group.group_id.as_str() == group_id)
            .ok_or_else(|| {
                ClientError::protocol(format!(
                    "OffsetFetch response has no entry for group {group_id:?}"
                ))
            })?;
        check_code(group.error_code, None, context)?;
        for topic in group.topics {
            for partition in topic.partitions {
                rows.push((
                    topic.name.as_str().to_owned(),
                    partition.partition_index,
                    partition.committed_offset,
                    partition.metadata,
                    partition.error_code,
                ));
            }
        }
    }
    let mut offsets = Vec::with_capacity(rows.len());
    for (topic, partition, offset, metadata, error_code) in rows {
        check_code(error_code, None, || {
            format!("committed offset of {topic}-{partition} in group {group_id:?}")
        })?;
        offsets.push(CommittedOffset {
            topic,
            partition,
            offset: (offset >= 0).then_some(offset),
            metadata: owned(&metadata),
        });
    }
    offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(offsets)
}

pub fn list_groups_request() -> ListGroupsRequest {
    ListGroupsRequest::default()
}

/// Sorted by group id; `state` is set from v4 on.
pub fn parse_list_groups(response: ListGroupsResponse, version: i16) -> Result<Vec<ListedGroup>> {
    check_code(response.error_code, None, || "list groups".to_owned())?;
    let mut groups: Vec<ListedGroup> = response
        .groups
        .into_iter()
        .map(|group| ListedGroup {
            group_id: group.group_id.as_str().to_owned(),
            protocol_type: group.protocol_type.as_str().to_owned(),
            state: (version >= 4).then(|| group.group_state.as_str().to_owned()),
        })
        .collect();
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    Ok(groups)
}

pub fn describe_groups_request(group_ids: &[&str]) -> DescribeGroupsRequest {
    let mut request = DescribeGroupsRequest::default();
    request.groups = group_ids.iter().map(|id| group_name(id)).collect();
    request
}

/// One description per requested group, in request order. A group the broker does not know is
/// described (state "Dead", no members), not an error, as Kafka does.
pub fn parse_describe_groups(
    response: DescribeGroupsResponse,
    group_ids: &[&str],
) -> Result<Vec<GroupDescription>> {
    let mut groups = response.groups;
    let mut descriptions = Vec::with_capacity(group_ids.len());
    for group_id in group_ids {
        let index = groups
            .iter()
            .position(|group| group.group_id.as_str() == *group_id)
            .ok_or_else(|| {
                ClientError::protocol(format!(
                    "DescribeGroups response has no entry for group {group_id:?}"
                ))
            })?;
        let group = groups.swap_remove(index);
        check_code(group.error_code, group.error_message.as_deref(), || {
            format!("describe group {group_id:?}")
        })?;
        let members = group
            .members
            .into_iter()
            .map(|member| MemberDescription {
                member_id: member.member_id.as_str().to_owned(),
                group_instance_id: owned(&member.group_instance_id),
                client_id: member.client_id.as_str().to_owned(),
                client_host: member.client_host.as_str().to_owned(),
                metadata: member.member_metadata,
                assignment: member.member_assignment,
            })
            .collect();
        descriptions.push(GroupDescription {
            group_id: group_id.to_string(),
            state: group.group_state.as_str().to_owned(),
            protocol_type: group.protocol_type.as_str().to_owned(),
            protocol: group.protocol_data.as_str().to_owned(),
            members,
        });
    }
    Ok(descriptions)
}

pub fn delete_groups_request(group_ids: &[&str]) -> DeleteGroupsRequest {
    let mut request = DeleteGroupsRequest::default();
    request.groups_names = group_ids.iter().map(|id| group_name(id)).collect();
    request
}

/// Fails with the first group that could not be deleted, e.g. NON_EMPTY_GROUP.
pub fn parse_delete_groups(response: &DeleteGroupsResponse, group_ids: &[&str]) -> Result<()> {
    for group_id in group_ids {
        let result = response
            .results
            .iter()
            .find(|result| result.group_id.as_str() == *group_id)
            .ok_or_else(|| {
                ClientError::protocol(format!(
                    "DeleteGroups response has no entry for group {group_id:?}"
                ))
            })?;
        check_code(result.error_code, None, || {
            format!("delete group {group_id:?}")
        })?;
    }
    Ok(())
}

/// Deletes the committed offsets of `partitions` (topic, partition) from a group.
pub fn offset_delete_request(group_id: &str, partitions: &[(String, i32)]) -> OffsetDeleteRequest {
    let topics = by_topic(
        partitions
            .iter()
            .map(|(topic, partition)| (topic.as_str(), *partition)),
    );
    let mut request = OffsetDeleteRequest::default();
    request.group_id = group_name(group_id);
    request.topics = topics
        .into_iter()
        .map(|(topic, partition_indexes)| {
            let mut entry = OffsetDeleteRequestTopic::default();
            entry.name = topic_name(topic);
            entry.partitions = partition_indexes
                .into_iter()
                .map(|index| {
                    let mut partition = OffsetDeleteRequestPartition::default();
                    partition.partition_index = index;
                    partition
                })
                .collect();
            entry
        })
        .collect();
    request
}

/// Fails on the group-level error (e.g. GROUP_SUBSCRIBED_TO_TOPIC is per partition) or the
/// first partition's error.
pub fn parse_offset_delete(
    response: &OffsetDeleteResponse,
    group_id: &str,
    partitions: &[(String, i32)],
) -> Result<()> {
    check_code(response.error_code, None, || {
        format!("delete offsets of group {group_id:?}")
    })?;
    for (topic, partition) in partitions {
        let result = response
            .topics
            .iter()
            .filter(|entry| entry.name.as_str() == topic)
            .flat_map(|entry| entry.partitions.iter())
            .find(|entry| entry.partition_index == *partition)
            .ok_or_else(|| {
                ClientError::protocol(format!(
                    "OffsetDelete response has no entry for {topic}-{partition}"
                ))
            })?;
        check_code(result.error_code, None, || {
            format!("delete offset of {topic}-{partition} in group {group_id:?}")
        })?;
    }
    Ok(())
}
