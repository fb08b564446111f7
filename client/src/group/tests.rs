//! `GroupConsumer` against a loopback fake broker that is a one-member group coordinator: the
//! MEMBER_ID_REQUIRED round, the leader's range assignment, committed offsets and the reset
//! policy, a heartbeat-reported rebalance, commits and leaving.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;

use super::*;
use crate::codec::frame_body_bytes;
use crate::records::encode_record_batch;
use crate::ProduceRecord;

/// Records 0, 1 and 2 in every partition.
const LOG_END_OFFSET: i64 = 3;
const MEMBER_ID: &str = "member-1";

#[derive(Debug, Default)]
struct FakeGroup {
    address: (String, i32),
    join_requests: u32,
    generation_id: i32,
    /// Assignment bytes the leader sent for MEMBER_ID in the current generation.
    assignment: Bytes,
    committed: BTreeMap<(String, i32), i64>,
    heartbeats: u32,
    /// Heartbeat number that answers REBALANCE_IN_PROGRESS.
    rebalance_at_heartbeat: u32,
    left: bool,
}

type Shared = Arc<Mutex<FakeGroup>>;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn frame<R: Encodable>(api_key: ApiKey, version: i16, correlation_id: i32, body: &R) -> Bytes {
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let mut frame = BytesMut::new();
    frame.put_i32(0);
    header
        .encode(&mut frame, api_key.response_header_version(version))
        .unwrap();
    body.encode(&mut frame, version).unwrap();
    let size = (frame.len() - 4) as i32;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    frame.freeze()
}

fn api_versions() -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    for (api_key, max) in [
        (ApiKey::ApiVersions, 3),
        (ApiKey::Metadata, 12),
        (ApiKey::Fetch, 12),
        (ApiKey::ListOffsets, 7),
        (ApiKey::FindCoordinator, 4),
        (ApiKey::JoinGroup, 9),
        (ApiKey::SyncGroup, 5),
        (ApiKey::Heartbeat, 4),
        (ApiKey::LeaveGroup, 5),
        (ApiKey::OffsetCommit, 8),
        (ApiKey::OffsetFetch, 8),
    ] {
        let mut entry = ApiVersion::default();
        entry.api_key = api_key as i16;
        entry.max_version = max;
        response.api_keys.push(entry);
    }
    response
}

fn metadata() -> MetadataResponse {
    let mut topic = MetadataResponseTopic::default();
    topic.name = Some(TopicName(text("t")));
    for index in [0, 1] {
        let mut partition = MetadataResponsePartition::default();
        partition.partition_index = index;
        topic.partitions.push(partition);
    }
    let mut response = MetadataResponse::default();
    response.topics = vec![topic];
    response
}

fn join(shared: &Shared, request: JoinGroupRequest) -> JoinGroupResponse {
    let mut state = shared.lock().unwrap();
    state.join_requests += 1;
    let mut response = JoinGroupResponse::default();
    if request.member_id.is_empty() {
        response.error_code = ResponseError::MemberIdRequired.code();
        response.member_id = text(MEMBER_ID);
        return response;
    }
    assert_eq!(request.member_id.as_str(), MEMBER_ID);
    assert_eq!(request.protocol_type.as_str(), "consumer");
    state.generation_id += 1;
    let mut member = JoinGroupResponseMember::default();
    member.member_id = text(MEMBER_ID);
    member.metadata = request.protocols[0].metadata.clone();
    response.generation_id = state.generation_id;
    response.protocol_type = Some(text("consumer"));
    response.protocol_name = Some(request.protocols[0].name.clone());
    response.leader = text(MEMBER_ID);
    response.member_id = text(MEMBER_ID);
    response.members = vec![member];
    response
}

fn sync(shared: &Shared, request: SyncGroupRequest) -> SyncGroupResponse {
    let mut state = shared.lock().unwrap();
    assert_eq!(request.generation_id, state.generation_id);
    if let Some(entry) = request
        .assignments
        .iter()
        .find(|a| a.member_id.as_str() == MEMBER_ID)
    {
        state.assignment = entry.assignment.clone();
    }
    let mut response = SyncGroupResponse::default();
    response.assignment = state.assignment.clone();
    response
}

fn heartbeat(shared: &Shared, request: HeartbeatRequest) -> HeartbeatResponse {
    let mut state = shared.lock().unwrap();
    let mut response = HeartbeatResponse::default();
    if request.generation_id != state.generation_id {
        response.error_code = ResponseError::IllegalGeneration.code();
        return response;
    }
    state.heartbeats += 1;
    if state.heartbeats == state.rebalance_at_heartbeat {
        response.error_code = ResponseError::RebalanceInProgress.code();
    }
    response
}

fn offset_fetch(shared: &Shared, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let state = shared.lock().unwrap();
    let mut group = OffsetFetchResponseGroup::default();
    group.group_id = request.groups[0].group_id.clone();
    for topic_request in request.groups[0].topics.as_ref().unwrap() {
        let mut topic = OffsetFetchResponseTopics::default();
        topic.name = topic_request.name.clone();
        for index in &topic_request.partition_indexes {
            let key = (topic_request.name.as_str().to_owned(), *index);
            let mut partition = OffsetFetchResponsePartitions::default();
            partition.partition_index = *index;
            partition.committed_offset = state.committed.get(&key).copied().unwrap_or(-1);
            topic.partitions.push(partition);
        }
        group.topics.push(topic);
    }
    let mut response = OffsetFetchResponse::default();
    response.groups = vec![group];
    response
}

fn offset_commit(shared: &Shared, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let mut state = shared.lock().unwrap();
    assert_eq!(request.generation_id_or_member_epoch, state.generation_id);
    let mut response = OffsetCommitResponse::default();
    for topic_request in request.topics {
        let mut topic = OffsetCommitResponseTopic::default();
        topic.name = topic_request.name.clone();
        for partition_request in topic_request.partitions {
            let key = (
                topic_request.name.as_str().to_owned(),
                partition_request.partition_index,
            );
            state
                .committed
                .insert(key, partition_request.committed_offset);
            let mut partition = OffsetCommitResponsePartition::default();
            partition.partition_index = partition_request.partition_index;
            topic.partitions.push(partition);
        }
        response.topics.push(topic);
    }
    response
}

fn list_offsets(request: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut response = ListOffsetsResponse::default();
    for topic_request in request.topics {
        let mut topic = ListOffsetsTopicResponse::default();
        topic.name = topic_request.name;
        for partition_request in topic_request.partitions {
            let mut partition = ListOffsetsPartitionResponse::default();
            partition.partition_index = partition_request.partition_index;
            partition.offset = match partition_request.timestamp {
                TIMESTAMP_EARLIEST => 0,
                _ => LOG_END_OFFSET,
            };
            topic.partitions.push(partition);
        }
        response.topics.push(topic);
    }
    response
}

fn fetch(request: FetchRequest) -> FetchResponse {
    let records: Vec<ProduceRecord> = ["a", "b", "c"]
        .iter()
        .map(|value| ProduceRecord {
            value: Some(Bytes::from_static(value.as_bytes())),
            ..ProduceRecord::default()
        })
        .collect();
    let batch = encode_record_batch(&records, Compression::None).unwrap();
    let mut response = FetchResponse::default();
    for topic_request in request.topics {
        let mut topic = FetchableTopicResponse::default();
        topic.topic = topic_request.topic;
        for partition_request in topic_request.partitions {
            let mut partition = PartitionData::default();
            partition.partition_index = partition_request.partition;
            partition.high_watermark = LOG_END_OFFSET;
            let unread = partition_request.fetch_offset < LOG_END_OFFSET;
            partition.records = Some(if unread { batch.clone() } else { Bytes::new() });
            topic.partitions.push(partition);
        }
        response.responses.push(topic);
    }
    response
}

fn answer(shared: &Shared, api_key: ApiKey, version: i16, id: i32, body: &mut Bytes) -> Bytes {
    macro_rules! decode {
        ($request:ty) => {
            <$request>::decode(body, version).unwrap()
        };
    }
    match api_key {
        ApiKey::ApiVersions => frame(api_key, version, id, &api_versions()),
        ApiKey::Metadata => frame(api_key, version, id, &metadata()),
        ApiKey::FindCoordinator => {
            let (host, port) = shared.lock().unwrap().address.clone();
            let mut coordinator = Coordinator::default();
            coordinator.key = decode!(FindCoordinatorRequest).coordinator_keys[0].clone();
            coordinator.host = text(&host);
            coordinator.port = port;
            let mut response = FindCoordinatorResponse::default();
            response.coordinators = vec![coordinator];
            frame(api_key, version, id, &response)
        }
        ApiKey::JoinGroup => frame(
            api_key,
            version,
            id,
            &join(shared, decode!(JoinGroupRequest)),
        ),
        ApiKey::SyncGroup => frame(
            api_key,
            version,
            id,
            &sync(shared, decode!(SyncGroupRequest)),
        ),
        ApiKey::Heartbeat => {
            let response = heartbeat(shared, decode!(HeartbeatRequest));
            frame(api_key, version, id, &response)
        }
        ApiKey::OffsetFetch => {
            let response = offset_fetch(shared, decode!(OffsetFetchRequest));
            frame(api_key, version, id, &response)
        }
        ApiKey::OffsetCommit => {
            let response = offset_commit(shared, decode!(OffsetCommitRequest));
            frame(api_key, version, id, &response)
        }
        ApiKey::LeaveGroup => {
            let request = decode!(LeaveGroupRequest);
            assert_eq!(request.members[0].member_id.as_str(), MEMBER_ID);
            shared.lock().unwrap().left = true;
            frame(api_key, version, id, &LeaveGroupResponse::default())
        }
        ApiKey::ListOffsets => frame(
            api_key,
            version,
            id,
            &list_offsets(decode!(ListOffsetsRequest)),
        ),
        ApiKey::Fetch => frame(api_key, version, id, &fetch(decode!(FetchRequest))),
        other => panic!("fake coordinator does not answer {other:?}"),
    }
}

fn serve_connection(shared: Shared, mut stream: TcpStream) {
    loop {
        let mut prefix = [0u8; 4];
        if stream.read_exact(&mut prefix).is_err() {
            return;
        }
        let mut body = vec![0u8; frame_body_bytes(prefix).unwrap()];
        stream.read_exact(&mut body).unwrap();
        let mut body = Bytes::from(body);
        let header = decode_request_header_from_buffer(&mut body).unwrap();
        let api_key = ApiKey::try_from(header.request_api_key).unwrap();
        let response = answer(
            &shared,
            api_key,
            header.request_api_version,
            header.correlation_id,
            &mut body,
        );
        if stream.write_all(&response).is_err() {
            return;
        }
    }
}

fn start_fake_coordinator(rebalance_at_heartbeat: u32) -> (String, Shared) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let shared: Shared = Arc::new(Mutex::new(FakeGroup {
        address: ("127.0.0.1".to_owned(), i32::from(address.port())),
        rebalance_at_heartbeat,
        ..FakeGroup::default()
    }));
    let accept_shared = Arc::clone(&shared);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let connection_shared = Arc::clone(&accept_shared);
            let stream = stream.unwrap();
            thread::spawn(move || serve_connection(connection_shared, stream));
        }
    });
    (address.to_string(), shared)
}

fn consumer_config(bootstrap: &str) -> GroupConsumerConfig {
    let mut config = GroupConsumerConfig::new(bootstrap, "g", vec!["t".to_owned()]);
    config.heartbeat_interval = Duration::from_millis(20);
    config.auto_commit_interval = None;
    config.offset_reset = OffsetReset::Earliest;
    config.fetch_max_wait = Duration::from_millis(10);
    config
}

fn values(records: &[GroupRecord]) -> Vec<(i32, i64)> {
    records
        .iter()
        .map(|record| (record.partition, record.record.offset))
        .collect()
}

#[test]
fn consumer_joins_reads_commits_rejoins_and_leaves() {
    let (bootstrap, shared) = start_fake_coordinator(2);
    shared
        .lock()
        .unwrap()
        .committed
        .insert(("t".to_owned(), 0), 1);
    let mut consumer = GroupConsumer::new(consumer_config(&bootstrap)).unwrap();
    assert!(!consumer.is_caught_up());

    // Joins as leader after the MEMBER_ID_REQUIRED round; t-0 resumes at its committed offset,
    // t-1 has none and starts at the earliest.
    let records = consumer.poll(Duration::from_millis(100)).unwrap();
    assert_eq!(consumer.member_id(), MEMBER_ID);
    assert_eq!(consumer.generation_id(), Some(1));
    assert_eq!(shared.lock().unwrap().join_requests, 2);
    assert_eq!(
        consumer.assignment(),
        vec![("t".to_owned(), 0), ("t".to_owned(), 1)]
    );
    assert_eq!(
        values(&records),
        vec![(0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    );
    assert!(consumer.is_caught_up());

    consumer.commit().unwrap();
    let committed = shared.lock().unwrap().committed.clone();
    assert_eq!(committed.values().copied().collect::<Vec<_>>(), vec![3, 3]);

    // The second heartbeat answers REBALANCE_IN_PROGRESS; polls pick the flag up and rejoin.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while consumer.generation_id() != Some(2) {
        assert!(
            std::time::Instant::now() < deadline,
            "no rejoin within 10 s"
        );
        assert!(consumer.poll(Duration::from_millis(10)).unwrap().is_empty());
    }
    assert_eq!(
        shared.lock().unwrap().join_requests,
        3,
        "rejoined with its id"
    );
    assert_eq!(consumer.position("t", 0), Some(3), "resumed at the commit");

    // Stopping short of the end leaves the rest for the next poll.
    assert!(consumer.seek("t", 1, 0));
    let records = consumer.poll_at_most(Duration::from_millis(10), 2).unwrap();
    assert_eq!(values(&records), vec![(1, 0), (1, 1)]);
    assert_eq!(consumer.position("t", 1), Some(2));
    assert!(!consumer.is_caught_up());

    consumer.close().unwrap();
    assert!(shared.lock().unwrap().left);
}

#[test]
fn heartbeat_errors_map_to_signals() {
    use heartbeat::signal_for;
    assert_eq!(
        signal_for(ResponseError::RebalanceInProgress),
        Some(HeartbeatSignal::Rejoin)
    );
    for error in [
        ResponseError::UnknownMemberId,
        ResponseError::IllegalGeneration,
        ResponseError::FencedInstanceId,
    ] {
        assert_eq!(signal_for(error), Some(HeartbeatSignal::Reset));
    }
    assert_eq!(
        signal_for(ResponseError::NotCoordinator),
        Some(HeartbeatSignal::CoordinatorLost)
    );
    assert_eq!(signal_for(ResponseError::CoordinatorLoadInProgress), None);
}
