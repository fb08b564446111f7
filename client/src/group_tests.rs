//! Tests of the consumer group builders and parsers against kafka-protocol's own decoders and
//! encoders, of the ConsumerProtocol formats, and of the range assignor.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup as WireListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};

use super::codec::*;
use super::consumer_protocol::*;
use super::group_apis::*;
use super::*;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// Encodes `body` as a request frame and decodes it back with kafka-protocol.
fn round_trip<Q: Encodable, R: Decodable>(api_key: ApiKey, version: i16, body: &Q) -> R {
    let mut frame = encode_request_frame(api_key, version, 1, "c", body)
        .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
    frame.advance(4);
    let header = decode_request_header_from_buffer(&mut frame).unwrap();
    assert_eq!(
        (header.request_api_key, header.request_api_version),
        (api_key as i16, version)
    );
    let decoded = R::decode(&mut frame, version).unwrap();
    assert!(!frame.has_remaining(), "{api_key:?} v{version} left bytes");
    decoded
}

/// Encodes `body` as a broker would and decodes it as the client does.
fn response<R: Encodable + Decodable>(api_key: ApiKey, version: i16, body: &R) -> R {
    let mut header = ResponseHeader::default();
    header.correlation_id = 4;
    let mut frame = BytesMut::new();
    header
        .encode(&mut frame, api_key.response_header_version(version))
        .unwrap();
    body.encode(&mut frame, version).unwrap();
    decode_response_frame(api_key, version, 4, frame.freeze()).unwrap()
}

fn versions(api_key: ApiKey) -> std::ops::RangeInclusive<i16> {
    let range = client_versions(api_key);
    range.min..=range.max
}

fn membership() -> GroupMembership {
    GroupMembership {
        group_id: "g".into(),
        member_id: "m-1".into(),
        generation_id: 7,
        group_instance_id: None,
    }
}

fn join_params() -> JoinGroupParams {
    JoinGroupParams {
        group_id: "g".into(),
        member_id: "".into(),
        group_instance_id: None,
        session_timeout_ms: 45_000,
        rebalance_timeout_ms: 60_000,
        protocol_type: PROTOCOL_TYPE_CONSUMER.into(),
        protocols: vec![GroupProtocol {
            name: ASSIGNOR_RANGE.into(),
            metadata: encode_subscription(&["t".into()]),
        }],
        reason: Some("first join".into()),
    }
}

#[test]
fn find_coordinator_uses_key_before_v4_and_key_list_after() {
    for version in versions(ApiKey::FindCoordinator) {
        let request: FindCoordinatorRequest = round_trip(
            ApiKey::FindCoordinator,
            version,
            &find_coordinator_request("g", version),
        );
        assert_eq!(request.key_type, 0, "group");
        if version >= 4 {
            assert_eq!(request.coordinator_keys, vec![text("g")]);
        } else {
            assert_eq!(request.key.as_str(), "g");
        }
        let mut body = FindCoordinatorResponse::default();
        if version >= 4 {
            let mut coordinator = Coordinator::default();
            coordinator.key = text("g");
            coordinator.node_id = BrokerId(1);
            coordinator.host = text("localhost");
            coordinator.port = 9093;
            body.coordinators = vec![coordinator];
        } else {
            body.node_id = BrokerId(1);
            body.host = text("localhost");
            body.port = 9093;
        }
        let decoded = response(ApiKey::FindCoordinator, version, &body);
        let address = parse_find_coordinator(&decoded, "g", version).unwrap();
        assert_eq!(address.address(), "localhost:9093", "v{version}");
        assert_eq!(address.node_id, 1);
    }
}

#[test]
fn find_coordinator_errors_are_raised_per_version() {
    let mut old = FindCoordinatorResponse::default();
    old.error_code = ResponseError::CoordinatorNotAvailable.code();
    let error = parse_find_coordinator(&old, "g", 2).unwrap_err();
    assert_eq!(
        error.kafka_error(),
        Some(ResponseError::CoordinatorNotAvailable)
    );
    let mut coordinator = Coordinator::default();
    coordinator.key = text("g");
    coordinator.error_code = ResponseError::CoordinatorLoadInProgress.code();
    let mut new = FindCoordinatorResponse::default();
    new.coordinators = vec![coordinator];
    let error = parse_find_coordinator(&new, "g", 4).unwrap_err();
    assert!(error.kafka_error().unwrap().is_retriable());
    assert!(matches!(
        parse_find_coordinator(&new, "other", 4),
        Err(ClientError::Protocol(_))
    ));
    assert_eq!(
        BrokerAddress {
            node_id: 0,
            host: "::1".into(),
            port: 9092
        }
        .address(),
        "[::1]:9092"
    );
}

#[test]
fn join_group_request_carries_the_fields_of_its_version() {
    for version in versions(ApiKey::JoinGroup) {
        let request: JoinGroupRequest = round_trip(
            ApiKey::JoinGroup,
            version,
            &join_group_request(&join_params(), version),
        );
        assert_eq!(request.group_id.as_str(), "g");
        assert_eq!(request.session_timeout_ms, 45_000);
        let rebalance = if version >= 1 { 60_000 } else { -1 };
        assert_eq!(request.rebalance_timeout_ms, rebalance, "v{version}");
        assert_eq!(request.protocol_type.as_str(), "consumer");
        assert_eq!(request.protocols.len(), 1);
        assert_eq!(request.protocols[0].name.as_str(), "range");
        let subscription = decode_subscription(request.protocols[0].metadata.clone()).unwrap();
        assert_eq!(subscription.topics, vec!["t".to_owned()]);
        let reason = (version >= 8).then(|| text("first join"));
        assert_eq!(request.reason, reason, "v{version}");
    }
    // Static membership must not silently degrade to dynamic on an old broker.
    let mut params = join_params();
    params.group_instance_id = Some("instance-1".into());
    let request = join_group_request(&params, 4);
    assert!(encode_request_frame(ApiKey::JoinGroup, 4, 1, "c", &request).is_err());
    let request: JoinGroupRequest =
        round_trip(ApiKey::JoinGroup, 5, &join_group_request(&params, 5));
    assert_eq!(request.group_instance_id, Some(text("instance-1")));
}

#[test]
fn join_group_member_id_required_is_an_outcome() {
    let mut body = JoinGroupResponse::default();
    body.error_code = ResponseError::MemberIdRequired.code();
    body.member_id = text("m-assigned");
    let decoded = response(ApiKey::JoinGroup, 9, &body);
    assert_eq!(
        parse_join_group(decoded, "g").unwrap(),
        JoinOutcome::MemberIdRequired {
            member_id: "m-assigned".into()
        }
    );
    let mut body = JoinGroupResponse::default();
    body.error_code = ResponseError::InconsistentGroupProtocol.code();
    let error = parse_join_group(body, "g").unwrap_err();
    assert!(
        error.to_string().contains("INCONSISTENT_GROUP_PROTOCOL"),
        "{error}"
    );
}

#[test]
fn join_group_response_lists_members_to_the_leader() {
    for version in versions(ApiKey::JoinGroup) {
        let mut member = JoinGroupResponseMember::default();
        member.member_id = text("m-1");
        member.metadata = encode_subscription(&["t".into()]);
        let mut body = JoinGroupResponse::default();
        body.generation_id = 3;
        body.protocol_name = Some(text("range"));
        if version >= 7 {
            body.protocol_type = Some(text("consumer"));
        }
        body.leader = text("m-1");
        body.member_id = text("m-1");
        body.members = vec![member];
        let decoded = response(ApiKey::JoinGroup, version, &body);
        let JoinOutcome::Joined(joined) = parse_join_group(decoded, "g").unwrap() else {
            panic!("v{version}: not joined");
        };
        assert!(joined.is_leader());
        assert_eq!(joined.generation_id, 3);
        assert_eq!(joined.protocol_name.as_deref(), Some("range"));
        let protocol_type = (version >= 7).then(|| "consumer".to_owned());
        assert_eq!(joined.protocol_type, protocol_type, "v{version}");
        assert_eq!(joined.members.len(), 1);
        assert_eq!(joined.members[0].member_id, "m-1");
    }
}

#[test]
fn sync_group_request_sends_assignments_and_protocol_from_v5() {
    let assignment = encode_assignment(&Assignment {
        partitions: vec![("t".into(), vec![0, 1])],
        user_data: None,
    });
    let assignments = vec![("m-1".to_owned(), assignment.clone())];
    let membership = membership();
    let params = SyncGroupParams {
        membership: &membership,
        protocol_type: "consumer",
        protocol_name: "range",
        assignments: &assignments,
    };
    for version in versions(ApiKey::SyncGroup) {
        let request: SyncGroupRequest = round_trip(
            ApiKey::SyncGroup,
            version,
            &sync_group_request(&params, version),
        );
        assert_eq!(
            (request.generation_id, request.member_id.as_str()),
            (7, "m-1")
        );
        assert_eq!(request.assignments.len(), 1);
        assert_eq!(request.assignments[0].assignment, assignment);
        let protocol = (version >= 5).then(|| text("range"));
        assert_eq!(request.protocol_name, protocol, "v{version}");

        let mut body = SyncGroupResponse::default();
        body.assignment = assignment.clone();
        let decoded = response(ApiKey::SyncGroup, version, &body);
        let mine = decode_assignment(parse_sync_group(decoded, "g").unwrap()).unwrap();
        assert_eq!(mine.pairs(), vec![("t".into(), 0), ("t".into(), 1)]);
    }
    let mut body = SyncGroupResponse::default();
    body.error_code = ResponseError::RebalanceInProgress.code();
    let error = parse_sync_group(body, "g").unwrap_err();
    assert_eq!(
        error.kafka_error(),
        Some(ResponseError::RebalanceInProgress)
    );
}

#[test]
fn heartbeat_round_trips_and_reports_rebalances() {
    for version in versions(ApiKey::Heartbeat) {
        let request: HeartbeatRequest = round_trip(
            ApiKey::Heartbeat,
            version,
            &heartbeat_request(&membership()),
        );
        assert_eq!(request.group_id.as_str(), "g");
        assert_eq!(
            (request.generation_id, request.member_id.as_str()),
            (7, "m-1")
        );
        let mut body = HeartbeatResponse::default();
        assert!(parse_heartbeat(&response(ApiKey::Heartbeat, version, &body), "g").is_ok());
        body.error_code = ResponseError::RebalanceInProgress.code();
        let decoded = response(ApiKey::Heartbeat, version, &body);
        let error = parse_heartbeat(&decoded, "g").unwrap_err();
        assert_eq!(
            error.kafka_error(),
            Some(ResponseError::RebalanceInProgress)
        );
    }
}

#[test]
fn leave_group_names_the_member_by_version() {
    for version in versions(ApiKey::LeaveGroup) {
        let request: LeaveGroupRequest = round_trip(
            ApiKey::LeaveGroup,
            version,
            &leave_group_request(&membership(), Some("closing"), version),
        );
        if version >= 3 {
            assert_eq!(request.member_id.as_str(), "");
            assert_eq!(request.members.len(), 1);
            assert_eq!(request.members[0].member_id.as_str(), "m-1");
            let reason = (version >= 5).then(|| text("closing"));
            assert_eq!(request.members[0].reason, reason);
        } else {
            assert_eq!(request.member_id.as_str(), "m-1");
            assert!(request.members.is_empty());
        }
    }
    let mut member = MemberResponse::default();
    member.member_id = text("m-1");
    member.error_code = ResponseError::UnknownMemberId.code();
    let mut body = LeaveGroupResponse::default();
    body.members = vec![member];
    let decoded = response(ApiKey::LeaveGroup, 5, &body);
    let error = parse_leave_group(&decoded, "g").unwrap_err();
    assert_eq!(error.kafka_error(), Some(ResponseError::UnknownMemberId));
}

fn offsets() -> Vec<PartitionOffset> {
    vec![
        PartitionOffset {
            topic: "t".into(),
            partition: 0,
            offset: 10,
        },
        PartitionOffset {
            topic: "u".into(),
            partition: 3,
            offset: 0,
        },
        PartitionOffset {
            topic: "t".into(),
            partition: 1,
            offset: 11,
        },
    ]
}

#[test]
fn offset_commit_groups_offsets_by_topic() {
    for version in versions(ApiKey::OffsetCommit) {
        let request: OffsetCommitRequest = round_trip(
            ApiKey::OffsetCommit,
            version,
            &offset_commit_request(&membership(), &offsets()),
        );
        assert_eq!(request.generation_id_or_member_epoch, 7);
        assert_eq!(request.member_id.as_str(), "m-1");
        let layout: Vec<(String, Vec<(i32, i64)>)> = request
            .topics
            .iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|p| (p.partition_index, p.committed_offset))
                    .collect();
                (topic.name.as_str().to_owned(), partitions)
            })
            .collect();
        assert_eq!(
            layout,
            vec![
                ("t".to_owned(), vec![(0, 10), (1, 11)]),
                ("u".to_owned(), vec![(3, 0)])
            ],
            "v{version}"
        );
    }
    let admin: OffsetCommitRequest = round_trip(
        ApiKey::OffsetCommit,
        8,
        &offset_commit_request(&GroupMembership::admin("g"), &offsets()),
    );
    assert_eq!(
        (
            admin.generation_id_or_member_epoch,
            admin.member_id.as_str()
        ),
        (-1, "")
    );
}

fn commit_response(error: Option<ResponseError>) -> OffsetCommitResponse {
    let mut body = OffsetCommitResponse::default();
    for (name, partitions) in [("t", vec![0, 1]), ("u", vec![3])] {
        let mut topic = OffsetCommitResponseTopic::default();
        topic.name = TopicName(text(name));
        topic.partitions = partitions
            .into_iter()
            .map(|index| {
                let mut partition = OffsetCommitResponsePartition::default();
                partition.partition_index = index;
                if index == 1 {
                    partition.error_code = error.map_or(0, |error| error.code());
                }
                partition
            })
            .collect();
        body.topics.push(topic);
    }
    body
}

#[test]
fn offset_commit_partition_errors_are_raised() {
    for version in versions(ApiKey::OffsetCommit) {
        let decoded = response(ApiKey::OffsetCommit, version, &commit_response(None));
        parse_offset_commit(&decoded, "g", &offsets()).unwrap();
        let body = commit_response(Some(ResponseError::IllegalGeneration));
        let decoded = response(ApiKey::OffsetCommit, version, &body);
        let error = parse_offset_commit(&decoded, "g", &offsets()).unwrap_err();
        assert_eq!(error.kafka_error(), Some(ResponseError::IllegalGeneration));
        assert!(error.to_string().contains("t-1"), "{error}");
    }
    let mut partial = commit_response(None);
    partial.topics.pop();
    assert!(matches!(
        parse_offset_commit(&partial, "g", &offsets()),
        Err(ClientError::Protocol(_))
    ));
}

#[test]
fn offset_fetch_request_batches_groups_from_v8() {
    let partitions = vec![
        ("t".to_owned(), 0),
        ("u".to_owned(), 3),
        ("t".to_owned(), 1),
    ];
    for version in versions(ApiKey::OffsetFetch) {
        let request: OffsetFetchRequest = round_trip(
            ApiKey::OffsetFetch,
            version,
            &offset_fetch_request("g", Some(&partitions), version),
        );
        let layout: Vec<(String, Vec<i32>)> = if version >= 8 {
            assert_eq!(request.groups.len(), 1);
            assert_eq!(request.groups[0].group_id.as_str(), "g");
            let topics = request.groups[0].topics.as_ref().unwrap();
            topics
                .iter()
                .map(|t| (t.name.as_str().to_owned(), t.partition_indexes.clone()))
                .collect()
        } else {
            assert_eq!(request.group_id.as_str(), "g");
            let topics = request.topics.as_ref().unwrap();
            topics
                .iter()
                .map(|t| (t.name.as_str().to_owned(), t.partition_indexes.clone()))
                .collect()
        };
        assert_eq!(
            layout,
            vec![("t".to_owned(), vec![0, 1]), ("u".to_owned(), vec![3])],
            "v{version}"
        );
        let all: OffsetFetchRequest = round_trip(
            ApiKey::OffsetFetch,
            version,
            &offset_fetch_request("g", None, version),
        );
        if version >= 8 {
            assert_eq!(all.groups[0].topics, None);
        } else {
            assert_eq!(all.topics, None);
        }
    }
}

/// t-0 committed at 42 with metadata, t-1 with nothing committed.
fn offset_fetch_response(version: i16, partition_error: i16) -> OffsetFetchResponse {
    let mut body = OffsetFetchResponse::default();
    let rows = [(1, -1, None, partition_error), (0, 42, Some(text("m")), 0)];
    if version < 8 {
        let mut topic = OffsetFetchResponseTopic::default();
        topic.name = TopicName(text("t"));
        for (index, offset, metadata, error_code) in rows {
            let mut partition = OffsetFetchResponsePartition::default();
            partition.partition_index = index;
            partition.committed_offset = offset;
            partition.metadata = metadata;
            partition.error_code = error_code;
            topic.partitions.push(partition);
        }
        body.topics = vec![topic];
        return body;
    }
    let mut topic = OffsetFetchResponseTopics::default();
    topic.name = TopicName(text("t"));
    for (index, offset, metadata, error_code) in rows {
        let mut partition = OffsetFetchResponsePartitions::default();
        partition.partition_index = index;
        partition.committed_offset = offset;
        partition.metadata = metadata;
        partition.error_code = error_code;
        topic.partitions.push(partition);
    }
    let mut group = OffsetFetchResponseGroup::default();
    group.group_id = GroupId(text("g"));
    group.topics = vec![topic];
    body.groups = vec![group];
    body
}

#[test]
fn offset_fetch_response_is_flattened_at_every_version() {
    for version in versions(ApiKey::OffsetFetch) {
        let decoded = response(
            ApiKey::OffsetFetch,
            version,
            &offset_fetch_response(version, 0),
        );
        let offsets = parse_offset_fetch(decoded, "g", version).unwrap();
        assert_eq!(
            offsets,
            vec![
                CommittedOffset {
                    topic: "t".into(),
                    partition: 0,
                    offset: Some(42),
                    metadata: Some("m".into()),
                },
                CommittedOffset {
                    topic: "t".into(),
                    partition: 1,
                    offset: None,
                    metadata: None,
                },
            ],
            "v{version}"
        );
        let code = ResponseError::UnstableOffsetCommit.code();
        let decoded = response(
            ApiKey::OffsetFetch,
            version,
            &offset_fetch_response(version, code),
        );
        let error = parse_offset_fetch(decoded, "g", version).unwrap_err();
        assert_eq!(
            error.kafka_error(),
            Some(ResponseError::UnstableOffsetCommit)
        );
    }
    let mut group_error = offset_fetch_response(8, 0);
    group_error.groups[0].error_code = ResponseError::GroupAuthorizationFailed.code();
    assert!(parse_offset_fetch(group_error, "g", 8).is_err());
    let mut top_error = offset_fetch_response(5, 0);
    top_error.error_code = ResponseError::CoordinatorLoadInProgress.code();
    assert!(parse_offset_fetch(top_error, "g", 5).is_err());
    assert!(matches!(
        parse_offset_fetch(offset_fetch_response(8, 0), "other", 8),
        Err(ClientError::Protocol(_))
    ));
}

#[test]
fn list_groups_reports_state_from_v4() {
    for version in versions(ApiKey::ListGroups) {
        round_trip::<_, ListGroupsRequest>(ApiKey::ListGroups, version, &list_groups_request());
        let mut body = ListGroupsResponse::default();
        for name in ["b", "a"] {
            let mut group = WireListedGroup::default();
            group.group_id = GroupId(text(name));
            group.protocol_type = text("consumer");
            if version >= 4 {
                group.group_state = text("Stable");
            }
            body.groups.push(group);
        }
        let decoded = response(ApiKey::ListGroups, version, &body);
        let groups = parse_list_groups(decoded, version).unwrap();
        let ids: Vec<&str> = groups.iter().map(|g| g.group_id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b"]);
        let state = (version >= 4).then(|| "Stable".to_owned());
        assert_eq!(groups[0].state, state, "v{version}");
        assert_eq!(groups[0].protocol_type, "consumer");
    }
}

#[test]
fn describe_groups_returns_members_with_their_assignments() {
    let assignment = encode_assignment(&Assignment {
        partitions: vec![("t".into(), vec![2])],
        user_data: None,
    });
    for version in versions(ApiKey::DescribeGroups) {
        let request: DescribeGroupsRequest = round_trip(
            ApiKey::DescribeGroups,
            version,
            &describe_groups_request(&["g"]),
        );
        assert_eq!(request.groups, vec![GroupId(text("g"))]);
        let mut member = DescribedGroupMember::default();
        member.member_id = text("m-1");
        member.client_id = text("cli");
        member.client_host = text("/127.0.0.1");
        member.member_metadata = encode_subscription(&["t".into()]);
        member.member_assignment = assignment.clone();
        let mut group = DescribedGroup::default();
        group.group_id = GroupId(text("g"));
        group.group_state = text("Stable");
        group.protocol_type = text("consumer");
        group.protocol_data = text("range");
        group.members = vec![member];
        let mut body = DescribeGroupsResponse::default();
        body.groups = vec![group];
        let decoded = response(ApiKey::DescribeGroups, version, &body);
        let described = parse_describe_groups(decoded, &["g"]).unwrap();
        assert_eq!(described.len(), 1);
        let group = &described[0];
        assert_eq!(
            (group.state.as_str(), group.protocol.as_str()),
            ("Stable", "range")
        );
        let member = &group.members[0];
        assert_eq!(
            (member.client_id.as_str(), member.client_host.as_str()),
            ("cli", "/127.0.0.1")
        );
        let pairs = decode_assignment(member.assignment.clone())
            .unwrap()
            .pairs();
        assert_eq!(pairs, vec![("t".to_owned(), 2)]);
    }
    let mut group = DescribedGroup::default();
    group.group_id = GroupId(text("g"));
    group.error_code = ResponseError::CoordinatorNotAvailable.code();
    let mut body = DescribeGroupsResponse::default();
    body.groups = vec![group];
    assert!(parse_describe_groups(body.clone(), &["g"]).is_err());
    assert!(matches!(
        parse_describe_groups(body, &["h"]),
        Err(ClientError::Protocol(_))
    ));
}

#[test]
fn delete_groups_reports_non_empty_groups() {
    for version in versions(ApiKey::DeleteGroups) {
        let request: DeleteGroupsRequest = round_trip(
            ApiKey::DeleteGroups,
            version,
            &delete_groups_request(&["g", "h"]),
        );
        assert_eq!(
            request.groups_names,
            vec![GroupId(text("g")), GroupId(text("h"))]
        );
        let mut body = DeleteGroupsResponse::default();
        for (name, code) in [("g", 0), ("h", ResponseError::NonEmptyGroup.code())] {
            let mut result = delete_groups_response::DeletableGroupResult::default();
            result.group_id = GroupId(text(name));
            result.error_code = code;
            body.results.push(result);
        }
        let decoded = response(ApiKey::DeleteGroups, version, &body);
        parse_delete_groups(&decoded, &["g"]).unwrap();
        let error = parse_delete_groups(&decoded, &["g", "h"]).unwrap_err();
        assert_eq!(error.kafka_error(), Some(ResponseError::NonEmptyGroup));
        assert!(error.to_string().contains("NON_EMPTY_GROUP"), "{error}");
    }
}

#[test]
fn offset_delete_round_trips_and_reports_subscribed_topics() {
    let partitions = vec![("t".to_owned(), 0), ("t".to_owned(), 1)];
    let request: OffsetDeleteRequest = round_trip(
        ApiKey::OffsetDelete,
        0,
        &offset_delete_request("g", &partitions),
    );
    assert_eq!(request.group_id.as_str(), "g");
    assert_eq!(request.topics.len(), 1);
    let indexes: Vec<i32> = request.topics[0]
        .partitions
        .iter()
        .map(|p| p.partition_index)
        .collect();
    assert_eq!(indexes, vec![0, 1]);
    let mut topic = OffsetDeleteResponseTopic::default();
    topic.name = TopicName(text("t"));
    for (index, code) in [(0, 0), (1, ResponseError::GroupSubscribedToTopic.code())] {
        let mut partition = OffsetDeleteResponsePartition::default();
        partition.partition_index = index;
        partition.error_code = code;
        topic.partitions.push(partition);
    }
    let mut body = OffsetDeleteResponse::default();
    body.topics = vec![topic];
    let decoded = response(ApiKey::OffsetDelete, 0, &body);
    parse_offset_delete(&decoded, "g", &partitions[..1]).unwrap();
    let error = parse_offset_delete(&decoded, "g", &partitions).unwrap_err();
    assert_eq!(
        error.kafka_error(),
        Some(ResponseError::GroupSubscribedToTopic)
    );
    body.error_code = ResponseError::GroupIdNotFound.code();
    assert!(parse_offset_delete(&body, "g", &partitions[..1]).is_err());
}

#[test]
fn every_group_api_is_negotiated() {
    let response = {
        let mut body = ApiVersionsResponse::default();
        for (api_key, min, max) in [
            (ApiKey::FindCoordinator, 0, 4),
            (ApiKey::JoinGroup, 0, 9),
            (ApiKey::OffsetCommit, 0, 8),
            (ApiKey::OffsetFetch, 0, 8),
            (ApiKey::OffsetDelete, 0, 0),
            (ApiKey::ListGroups, 0, 5),
        ] {
            let mut entry = api_versions_response::ApiVersion::default();
            entry.api_key = api_key as i16;
            entry.min_version = min;
            entry.max_version = max;
            body.api_keys.push(entry);
        }
        body
    };
    let negotiated = NegotiatedVersions::negotiate(&response);
    assert_eq!(negotiated.get(ApiKey::FindCoordinator), Some(4));
    assert_eq!(negotiated.get(ApiKey::JoinGroup), Some(9));
    assert_eq!(negotiated.get(ApiKey::OffsetCommit), Some(8));
    assert_eq!(negotiated.get(ApiKey::OffsetFetch), Some(8));
    assert_eq!(negotiated.get(ApiKey::OffsetDelete), Some(0));
    assert_eq!(negotiated.get(ApiKey::ListGroups), Some(4));
    assert_eq!(negotiated.get(ApiKey::Heartbeat), None);
}

fn versioned<M: Encodable>(message: &M, version: i16) -> Bytes {
    let mut buffer = BytesMut::new();
    buffer.put_i16(version);
    message.encode(&mut buffer, version).unwrap();
    buffer.freeze()
}

#[test]
fn subscriptions_of_every_version_decode() {
    let ours = encode_subscription(&["a".into(), "b".into()]);
    assert_eq!(&ours[..2], &SUBSCRIPTION_VERSION.to_be_bytes());
    let decoded = decode_subscription(ours).unwrap();
    assert_eq!(decoded.topics, vec!["a".to_owned(), "b".to_owned()]);
    for version in 0..=3 {
        let mut message = ConsumerProtocolSubscription::default();
        message.topics = vec![text("t")];
        message.user_data = Some(Bytes::from_static(b"u"));
        if version >= 1 {
            let mut owned = consumer_protocol_subscription::TopicPartition::default();
            owned.topic = TopicName(text("t"));
            owned.partitions = vec![2, 0];
            message.owned_partitions = vec![owned];
        }
        if version >= 2 {
            message.generation_id = 5;
        }
        let decoded = decode_subscription(versioned(&message, version)).unwrap();
        assert_eq!(decoded.topics, vec!["t".to_owned()]);
        assert_eq!(decoded.user_data, Some(Bytes::from_static(b"u")));
        let owned = if version >= 1 {
            vec![("t".to_owned(), vec![0, 2])]
        } else {
            vec![]
        };
        assert_eq!(decoded.owned_partitions, owned, "v{version}");
    }
    // A version from the future is read at the highest we know, its extra fields ignored.
    let mut message = ConsumerProtocolSubscription::default();
    message.topics = vec![text("t")];
    let mut future = BytesMut::from(&versioned(&message, 3)[..]);
    future[..2].copy_from_slice(&7i16.to_be_bytes());
    future.extend_from_slice(b"new fields");
    let decoded = decode_subscription(future.freeze()).unwrap();
    assert_eq!(decoded.topics, vec!["t".to_owned()]);
}

#[test]
fn malformed_consumer_protocol_bytes_are_errors() {
    let valid = encode_subscription(&["topic".into()]);
    for cut in 0..valid.len() {
        assert!(
            decode_subscription(valid.slice(..cut)).is_err(),
            "cut at {cut}"
        );
    }
    assert!(decode_subscription(Bytes::from_static(&[0xff, 0xff, 0, 0])).is_err());
    let assignment = encode_assignment(&Assignment {
        partitions: vec![("t".into(), vec![0])],
        user_data: None,
    });
    for cut in 1..assignment.len() {
        assert!(
            decode_assignment(assignment.slice(..cut)).is_err(),
            "cut at {cut}"
        );
    }
}

#[test]
fn assignments_round_trip_and_empty_means_nothing() {
    let assignment = Assignment {
        partitions: vec![("a".into(), vec![0, 1]), ("b".into(), vec![3])],
        user_data: Some(Bytes::from_static(b"x")),
    };
    let bytes = encode_assignment(&assignment);
    assert_eq!(&bytes[..2], &ASSIGNMENT_VERSION.to_be_bytes());
    assert_eq!(decode_assignment(bytes).unwrap(), assignment);
    assert_eq!(
        decode_assignment(Bytes::new()).unwrap(),
        Assignment::default()
    );
    // What another client's leader may send: v0, unsorted, a topic twice.
    let mut message = ConsumerProtocolAssignment::default();
    for (topic, partitions) in [("b", vec![1]), ("a", vec![2, 0]), ("b", vec![0])] {
        let mut entry = consumer_protocol_assignment::TopicPartition::default();
        entry.topic = TopicName(text(topic));
        entry.partitions = partitions;
        message.assigned_partitions.push(entry);
    }
    let decoded = decode_assignment(versioned(&message, 0)).unwrap();
    assert_eq!(
        decoded.pairs(),
        vec![
            ("a".to_owned(), 0),
            ("a".to_owned(), 2),
            ("b".to_owned(), 0),
            ("b".to_owned(), 1)
        ]
    );
}

fn subscriptions(members: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    members
        .iter()
        .map(|(member, topics)| {
            let topics = topics.iter().map(|topic| topic.to_string()).collect();
            (member.to_string(), topics)
        })
        .collect()
}

fn topics(entries: &[(&str, i32)]) -> BTreeMap<String, Vec<i32>> {
    entries
        .iter()
        .map(|(topic, count)| (topic.to_string(), (0..*count).collect()))
        .collect()
}

fn assigned(assignments: &BTreeMap<String, Assignment>, member: &str) -> Vec<(String, i32)> {
    assignments[member].pairs()
}

fn pairs(entries: &[(&str, i32)]) -> Vec<(String, i32)> {
    entries
        .iter()
        .map(|(topic, partition)| (topic.to_string(), *partition))
        .collect()
}

#[test]
fn range_assignor_matches_kafkas_example() {
    // From Kafka's RangeAssignor documentation: two consumers, two topics of three partitions.
    let members = subscriptions(&[("C1", &["t1", "t0"]), ("C0", &["t0", "t1"])]);
    let result = range_assign(&members, &topics(&[("t0", 3), ("t1", 3)]));
    assert_eq!(
        assigned(&result, "C0"),
        pairs(&[("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)])
    );
    assert_eq!(assigned(&result, "C1"), pairs(&[("t0", 2), ("t1", 2)]));
}

#[test]
fn range_assignor_handles_uneven_subscriptions() {
    let members = subscriptions(&[
        ("a", &["t", "missing"]),
        ("b", &["t", "u"]),
        ("c", &["u"]),
        ("d", &["t"]),
    ]);
    let result = range_assign(
        &members,
        &topics(&[("t", 2), ("u", 5), ("unsubscribed", 4)]),
    );
    assert_eq!(result.len(), 4, "every member gets an entry");
    assert_eq!(assigned(&result, "a"), pairs(&[("t", 0)]));
    assert_eq!(
        assigned(&result, "b"),
        pairs(&[("t", 1), ("u", 0), ("u", 1), ("u", 2)])
    );
    assert_eq!(assigned(&result, "c"), pairs(&[("u", 3), ("u", 4)]));
    assert!(
        assigned(&result, "d").is_empty(),
        "more members than partitions"
    );
}

#[test]
fn range_assignor_assigns_each_partition_once() {
    // Deterministic pseudo-random cases; the seed is in the failure message.
    let mut seed: u64 = 0x5eed;
    for case in 0..200 {
        let case_seed = seed;
        let mut next = |bound: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % bound
        };
        let topic_count = 1 + next(4);
        let partitions: BTreeMap<String, Vec<i32>> = (0..topic_count)
            .map(|t| (format!("t{t}"), (0..next(9) as i32).collect()))
            .collect();
        let member_count = 1 + next(6);
        let members: Vec<(String, Vec<String>)> = (0..member_count)
            .map(|m| {
                let topics = (0..topic_count)
                    .filter(|_| next(3) > 0)
                    .map(|t| format!("t{t}"))
                    .collect();
                (format!("m{m}"), topics)
            })
            .collect();
        let result = range_assign(&members, &partitions);
        let mut seen: Vec<(String, i32)> = result.values().flat_map(|a| a.pairs()).collect();
        seen.sort();
        let mut expected: Vec<(String, i32)> = partitions
            .iter()
            .filter(|(topic, _)| members.iter().any(|(_, topics)| topics.contains(topic)))
            .flat_map(|(topic, list)| list.iter().map(move |p| (topic.clone(), *p)))
            .collect();
        expected.sort();
        assert_eq!(seen, expected, "case {case}, seed {case_seed:#x}");
        for (member, assignment) in &result {
            let subscribed = &members.iter().find(|(m, _)| m == member).unwrap().1;
            for (topic, _) in &assignment.partitions {
                assert!(
                    subscribed.contains(topic),
                    "case {case}, seed {case_seed:#x}"
                );
            }
        }
    }
}
