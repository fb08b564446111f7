//! The real broker binary over real TCP: protocol negotiation, hostile frames, produce/fetch
//! across shards, restart after kill -9.

mod common;

use bytes::Bytes;
use common::{batch, records, Broker};
use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn create_topic(wire: &mut common::Wire, name: &str, partitions: i32) -> i16 {
    let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    let response: CreateTopicsResponse = wire.request(ApiKey::CreateTopics, 7, &request);
    response.topics[0].error_code
}

fn produce(
    wire: &mut common::Wire,
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> (i16, i64) {
    let request = produce_request(topic, partition, records, acks);
    let response: ProduceResponse = wire.request(ApiKey::Produce, 9, &request);
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

fn fetch(
    wire: &mut common::Wire,
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
) -> (i16, i64, Bytes) {
    let request = fetch_request(topic, partition, offset, max_wait_ms);
    let response: FetchResponse = wire.request(ApiKey::Fetch, 12, &request);
    fetched(&response)
}

fn fetched(response: &FetchResponse) -> (i16, i64, Bytes) {
    let p = &response.responses[0].partitions[0];
    (
        p.error_code,
        p.high_watermark,
        p.records.clone().unwrap_or_default(),
    )
}

fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

#[test]
fn api_versions_negotiation() {
    let broker = Broker::start("apiversions", 1);
    let mut wire = broker.connect();
    let response: ApiVersionsResponse =
        wire.request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
    let produce = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .unwrap();
    // Produce lists v0 like Kafka 4.0, so old librdkafka compresses, but serves v3 and up.
    assert_eq!((produce.min_version, produce.max_version), (0, 9));
    let mut old_produce = broker.connect();
    // Produce v2: api key 0, version 2, correlation id 7, null client id, then nothing.
    old_produce.send_raw(&[0, 0, 0, 10, 0, 0, 0, 2, 0, 0, 0, 7, 0xff, 0xff]);
    assert!(
        old_produce.closed_by_broker(),
        "Produce below v3 is refused"
    );
    // An unknown future version gets a v0 answer with UNSUPPORTED_VERSION and the real list.
    let response: ApiVersionsResponse =
        wire.request(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
    let mut frame = vec![0, 0, 0, 10, 0, 18, 0, 99, 0, 0, 0, 42, 0xff, 0xff];
    wire.send_raw(&frame);
    let mut answer = wire.read_frame().expect("an answer to ApiVersions v99");
    assert_eq!(&answer[..4], &42i32.to_be_bytes());
    answer = answer.slice(4..);
    let decoded =
        <ApiVersionsResponse as kafka_protocol::protocol::Decodable>::decode(&mut answer, 0)
            .unwrap();
    assert_eq!(decoded.error_code, 35);
    assert!(!decoded.api_keys.is_empty());
    frame.clear();
}

#[test]
fn hostile_frames_close_only_their_connection() {
    let broker = Broker::start("hostile", 2);
    let mut healthy = broker.connect();
    let cases: Vec<Vec<u8>> = vec![
        // Length prefix claiming 2 GiB.
        vec![0x7f, 0xff, 0xff, 0xff, 1, 2, 3],
        // Negative length.
        vec![0xff, 0xff, 0xff, 0xfe],
        // Unknown API key 9999.
        vec![0, 0, 0, 10, 0x27, 0x0f, 0, 0, 0, 0, 0, 1, 0, 0],
        // Produce v9 with a body of garbage.
        [
            vec![0, 0, 0, 24, 0, 0, 0, 9, 0, 0, 0, 1, 0, 0, 0],
            vec![0xee; 15],
        ]
        .concat(),
        // Metadata v12 whose topic array claims 2^31 entries.
        vec![
            0, 0, 0, 16, 0, 3, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x07,
        ],
        // Frame shorter than a request header.
        vec![0, 0, 0, 3, 0, 1, 2],
    ];
    for (i, case) in cases.iter().enumerate() {
        let mut wire = broker.connect();
        wire.send_raw(case);
        assert!(
            wire.closed_by_broker(),
            "case {i}: broker closes the connection"
        );
        // Other connections, old and new, keep working.
        let response: MetadataResponse =
            healthy.request(ApiKey::Metadata, 12, &MetadataRequest::default());
        assert_eq!(response.brokers.len(), 1, "case {i}");
        let mut fresh = broker.connect();
        let response: ApiVersionsResponse =
            fresh.request(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        assert_eq!(response.error_code, 0, "case {i}");
    }
}

#[test]
fn produce_validation_errors() {
    let broker = Broker::start("produce-errors", 2);
    let mut wire = broker.connect();
    assert_eq!(create_topic(&mut wire, "checked", 2), 0);
    assert_eq!(
        create_topic(&mut wire, "checked", 2),
        36,
        "TOPIC_ALREADY_EXISTS"
    );
    assert_eq!(
        create_topic(&mut wire, "bad/name", 1),
        17,
        "INVALID_TOPIC_EXCEPTION"
    );
    let good = batch(&["a", "b"], 1_000);
    let mut corrupt = good.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    assert_eq!(
        produce(&mut wire, "checked", 0, Bytes::from(corrupt), 1).0,
        2,
        "CORRUPT_MESSAGE"
    );
    assert_eq!(
        produce(&mut wire, "checked", 0, good.slice(..good.len() - 3), 1).0,
        2,
        "truncated batch"
    );
    assert_eq!(
        produce(&mut wire, "checked", 7, good.clone(), 1).0,
        3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        produce(&mut wire, "checked", 0, good.clone(), 5).0,
        21,
        "INVALID_REQUIRED_ACKS"
    );
    // Nothing above was stored; the next good batch gets offset 0.
    assert_eq!(produce(&mut wire, "checked", 0, good, -1), (0, 0));
    let (error, _, _) = fetch(&mut wire, "checked", 0, 99, 0);
    assert_eq!(error, 1, "OFFSET_OUT_OF_RANGE");
    let (error, _, _) = fetch(&mut wire, "missing", 0, 0, 0);
    assert_eq!(error, 3, "fetch from a missing topic");
}

#[test]
fn partitions_on_both_shards_survive_kill_9() {
    let mut broker = Broker::start("roundtrip", 2);
    let mut wire = broker.connect();
    assert_eq!(create_topic(&mut wire, "events", 4), 0);
    let mut expected = Vec::new();
    for partition in 0..4 {
        for round in 0..3 {
            let values: Vec<String> = (0..5)
                .map(|i| format!("p{partition}-r{round}-{i}"))
                .collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            let (error, base) = produce(
                &mut wire,
                "events",
                partition,
                batch(&refs, 1_000 * round),
                -1,
            );
            assert_eq!(
                (error, base),
                (0, round * 5),
                "dense offsets on partition {partition}"
            );
        }
        let (_, hw, bytes) = fetch(&mut wire, "events", partition, 0, 0);
        assert_eq!(hw, 15);
        expected.push(records(bytes));
        assert_eq!(expected[partition as usize].len(), 15);
    }
    broker.kill_and_restart();
    let mut wire = broker.connect();
    let metadata: MetadataResponse = wire.request(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name("events")))
        ])),
    );
    assert_eq!(metadata.topics[0].partitions.len(), 4);
    for partition in 0..4 {
        let (error, hw, bytes) = fetch(&mut wire, "events", partition, 0, 0);
        assert_eq!((error, hw), (0, 15));
        assert_eq!(
            records(bytes),
            expected[partition as usize],
            "partition {partition} after kill -9"
        );
        // A fetch from an offset returns the batch that holds it first.
        let (_, _, bytes) = fetch(&mut wire, "events", partition, 7, 0);
        let got = records(bytes);
        assert!(
            got[0].0 <= 7 && got.iter().any(|r| r.0 == 7),
            "fetch at 7 starts with the batch holding 7"
        );
    }
    let offsets: ListOffsetsResponse = wire.request(
        ApiKey::ListOffsets,
        6,
        &ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name("events"))
            .with_partitions(vec![
                ListOffsetsPartition::default()
                    .with_partition_index(1)
                    .with_timestamp(-2),
                ListOffsetsPartition::default()
                    .with_partition_index(2)
                    .with_timestamp(-1),
                ListOffsetsPartition::default()
                    .with_partition_index(3)
                    .with_timestamp(1_002),
            ])]),
    );
    let found: Vec<i64> = offsets.topics[0]
        .partitions
        .iter()
        .map(|p| p.offset)
        .collect();
    assert_eq!(found, vec![0, 15, 7]);
}

#[test]
fn long_poll_wakes_on_append() {
    let broker = Broker::start("longpoll", 2);
    let mut setup = broker.connect();
    assert_eq!(create_topic(&mut setup, "tail", 2), 0);
    // Partitions on both shards: the one that reads the requests and the other.
    for partition in 0..2 {
        let mut wire = broker.connect();
        let started = std::time::Instant::now();
        // Pipelined on one connection, the fetch is handled before the produce behind it (each
        // request starts in arrival order, and forwarded requests reach the owner shard in
        // order), so it finds the partition empty and parks: only the append can wake it
        // before its 20 s deadline.
        let fetch = fetch_request("tail", partition, 0, 20_000);
        let fetch_id = wire.send(ApiKey::Fetch, 12, &fetch);
        let produce = produce_request("tail", partition, batch(&["wake"], 5), 1);
        let produce_id = wire.send(ApiKey::Produce, 9, &produce);
        let response: FetchResponse = wire.receive(ApiKey::Fetch, 12, fetch_id);
        let waited = started.elapsed();
        let (error, hw, bytes) = fetched(&response);
        assert_eq!((error, hw), (0, 1));
        assert_eq!(records(bytes)[0].2, "wake");
        assert!(
            waited < std::time::Duration::from_secs(10),
            "woken by the append, not the deadline"
        );
        let produced: ProduceResponse = wire.receive(ApiKey::Produce, 9, produce_id);
        let p = &produced.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, 0));
    }
}

#[test]
fn idempotent_retries_are_deduplicated_across_kill_9() {
    use common::idempotent_batch;
    // A snapshot after every append: the restart below rebuilds from the snapshot plus the tail.
    let mut broker = Broker::start_with(
        "idempotent",
        2,
        &["--producer-snapshot-interval-bytes", "1"],
    );
    let mut wire = broker.connect();
    assert_eq!(create_topic(&mut wire, "once", 2), 0);
    let init: InitProducerIdResponse = wire.request(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_timeout_ms(60_000),
    );
    assert_eq!(init.error_code, 0);
    let (pid, epoch) = (init.producer_id.0, init.producer_epoch);
    assert!(pid >= 0);
    let first = idempotent_batch(&["a", "b", "c"], 10, pid, epoch, 0);
    let second = idempotent_batch(&["d", "e"], 20, pid, epoch, 3);
    assert_eq!(produce(&mut wire, "once", 1, first.clone(), -1), (0, 0));
    assert_eq!(produce(&mut wire, "once", 1, second.clone(), -1), (0, 3));
    // A retry of either batch gets its original offset and stores nothing.
    assert_eq!(produce(&mut wire, "once", 1, first.clone(), -1), (0, 0));
    assert_eq!(fetch(&mut wire, "once", 1, 0, 0).1, 5);

    let snapshot = broker.data_dir.join("once-1").join("producer-state.json");
    let covering_five = std::fs::read(&snapshot).expect("a producer-state snapshot was written");
    let covered: serde_json::Value = serde_json::from_slice(&covering_five).unwrap();
    assert_eq!(covered["next_offset"], 5, "{covered}");
    // One more batch; the newer snapshot it leaves is replaced by the one above while the
    // broker is down, so the restart rebuilds from a snapshot and then scans the tail.
    let tail = idempotent_batch(&["t"], 25, pid, epoch, 5);
    assert_eq!(produce(&mut wire, "once", 1, tail.clone(), -1), (0, 5));
    broker.kill_and_restart_with(|_| std::fs::write(&snapshot, &covering_five).unwrap());
    let mut wire = broker.connect();
    // The producer state was rebuilt from the snapshot and the log: retries are still recognised.
    assert_eq!(produce(&mut wire, "once", 1, tail, -1), (0, 5));
    assert_eq!(produce(&mut wire, "once", 1, second.clone(), -1), (0, 3));
    assert_eq!(produce(&mut wire, "once", 1, first, -1), (0, 0));
    assert_eq!(
        fetch(&mut wire, "once", 1, 0, 0).1,
        6,
        "no record was stored twice"
    );
    // A gap in the sequence and a stale epoch are refused.
    let gap = idempotent_batch(&["x"], 30, pid, epoch, 9);
    assert_eq!(
        produce(&mut wire, "once", 1, gap, -1).0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    let next = idempotent_batch(&["f"], 30, pid, epoch, 6);
    assert_eq!(produce(&mut wire, "once", 1, next, -1), (0, 6));
    let bumped: InitProducerIdResponse = wire.request(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_transaction_timeout_ms(60_000),
    );
    assert_eq!(
        (bumped.producer_id.0, bumped.producer_epoch),
        (pid, epoch + 1)
    );
    let fresh_epoch = idempotent_batch(&["g"], 40, pid, epoch + 1, 0);
    assert_eq!(produce(&mut wire, "once", 1, fresh_epoch, -1), (0, 7));
    let stale = idempotent_batch(&["h"], 50, pid, epoch, 7);
    assert_eq!(
        produce(&mut wire, "once", 1, stale, -1).0,
        47,
        "INVALID_PRODUCER_EPOCH"
    );
    // Producer ids stay unique across restarts.
    let other: InitProducerIdResponse = wire.request(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
            .with_transaction_timeout_ms(60_000),
    );
    assert!(other.producer_id.0 > pid);
}

/// Fetches every partition of `topic` from offset 0 with a 20 MB partition limit and the given
/// request-wide limit; returns each partition's record bytes in request order.
fn fetch_all_partitions(
    wire: &mut common::Wire,
    topic: &str,
    partitions: i32,
    max_bytes: i32,
) -> Vec<Bytes> {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(max_bytes)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(
                (0..partitions)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(20_000_000)
                    })
                    .collect(),
            )]);
    let response: FetchResponse = wire.request(ApiKey::Fetch, 12, &request);
    response.responses[0]
        .partitions
        .iter()
        .map(|p| p.records.clone().unwrap_or_default())
        .collect()
}

/// KIP-74: the request-wide `max_bytes` bounds the whole response (whole batches, partitions
/// filled in turn), except that the first batch of the first non-empty partition is always
/// returned even when it alone is larger; the partition filled first rotates between requests.
#[test]
fn fetch_honours_the_request_wide_max_bytes() {
    let broker = Broker::start("fetchmaxbytes", 2);
    let mut wire = broker.connect();
    assert_eq!(create_topic(&mut wire, "wide", 3), 0);
    let value = "v".repeat(100_000);
    for partition in 0..3 {
        for _ in 0..4 {
            let (error, _) = produce(&mut wire, "wide", partition, batch(&[&value], 1), 1);
            assert_eq!(error, 0);
        }
    }
    let batch_bytes = batch(&[&value], 1).len();

    let got = fetch_all_partitions(&mut wire, "wide", 3, 250_000);
    let total: usize = got.iter().map(Bytes::len).sum();
    assert_eq!(total, 2 * batch_bytes, "two whole batches fit in 250 kB");
    let filled: Vec<usize> = (0..3).filter(|&p| !got[p].is_empty()).collect();
    assert_eq!(filled.len(), 1, "only the partition filled first has data");

    let got = fetch_all_partitions(&mut wire, "wide", 3, 1000);
    let sizes: Vec<usize> = got.iter().map(Bytes::len).collect();
    assert_eq!(
        sizes.iter().sum::<usize>(),
        batch_bytes,
        "one batch, although over the limit"
    );
    assert_eq!(
        records(got.into_iter().find(|b| !b.is_empty()).unwrap()).len(),
        1
    );

    let mut first_filled = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let got = fetch_all_partitions(&mut wire, "wide", 3, 1000);
        first_filled.insert(got.iter().position(|b| !b.is_empty()).unwrap());
    }
    assert_eq!(first_filled.len(), 3, "each partition comes first in turn");
}

/// Every operation Kafka reports without an authoriser (AclOperation codes as bits).
const TOPIC_OPERATIONS_ALL: i32 = 3576;
const CLUSTER_OPERATIONS_ALL: i32 = 8096;
const GROUP_OPERATIONS_ALL: i32 = 328;
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;

/// DescribeCluster v0–v2 names this broker as the only broker and the controller, with the
/// metadata's cluster id; only the BROKERS endpoint type is served.
#[test]
fn describe_cluster_lists_this_broker() {
    let broker = Broker::start("describecluster", 1);
    let mut wire = broker.connect();
    let metadata: MetadataResponse =
        wire.request(ApiKey::Metadata, 12, &MetadataRequest::default());
    for version in 0..=2 {
        let response: DescribeClusterResponse = wire.request(
            ApiKey::DescribeCluster,
            version,
            &DescribeClusterRequest::default().with_include_fenced_brokers(version == 2),
        );
        assert_eq!(response.error_code, 0);
        assert_eq!(Some(response.cluster_id), metadata.cluster_id);
        assert_eq!(response.controller_id, metadata.brokers[0].node_id);
        assert_eq!(response.brokers.len(), 1);
        let described = &response.brokers[0];
        assert_eq!(described.broker_id, metadata.brokers[0].node_id);
        assert_eq!(described.host, metadata.brokers[0].host);
        assert_eq!(described.port, i32::from(broker.addr.port()));
        assert!(!described.is_fenced);
        assert_eq!(
            response.cluster_authorized_operations,
            OPERATIONS_NOT_REQUESTED
        );
    }
    let controllers = DescribeClusterRequest::default().with_endpoint_type(2);
    let response: DescribeClusterResponse = wire.request(ApiKey::DescribeCluster, 1, &controllers);
    assert_eq!(response.error_code, 115, "UNSUPPORTED_ENDPOINT_TYPE");
}

/// KIP-430: with no authoriser, Metadata, DescribeCluster and DescribeGroups report every
/// operation when asked, and Kafka's "not requested" value otherwise.
#[test]
fn authorized_operations_are_every_operation() {
    let broker = Broker::start("authorizedops", 1);
    let mut wire = broker.connect();
    assert_eq!(create_topic(&mut wire, "ops", 1), 0);
    let topics = Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name("ops")))
    ]);
    for version in [8, 10, 12] {
        let asked = MetadataRequest::default()
            .with_topics(topics.clone())
            .with_include_cluster_authorized_operations(version <= 10)
            .with_include_topic_authorized_operations(true);
        let response: MetadataResponse = wire.request(ApiKey::Metadata, version, &asked);
        assert_eq!(
            response.topics[0].topic_authorized_operations,
            TOPIC_OPERATIONS_ALL
        );
        if version <= 10 {
            assert_eq!(
                response.cluster_authorized_operations,
                CLUSTER_OPERATIONS_ALL
            );
        }
        let not_asked = MetadataRequest::default().with_topics(topics.clone());
        let response: MetadataResponse = wire.request(ApiKey::Metadata, version, &not_asked);
        assert_eq!(
            response.topics[0].topic_authorized_operations,
            OPERATIONS_NOT_REQUESTED
        );
    }
    let asked = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
    let response: DescribeClusterResponse = wire.request(ApiKey::DescribeCluster, 1, &asked);
    assert_eq!(
        response.cluster_authorized_operations,
        CLUSTER_OPERATIONS_ALL
    );
    let groups = vec![GroupId(StrBytes::from_static_str("nobody"))];
    let asked = DescribeGroupsRequest::default()
        .with_groups(groups.clone())
        .with_include_authorized_operations(true);
    let response: DescribeGroupsResponse = wire.request(ApiKey::DescribeGroups, 5, &asked);
    assert_eq!(
        response.groups[0].authorized_operations,
        GROUP_OPERATIONS_ALL
    );
    let not_asked = DescribeGroupsRequest::default().with_groups(groups);
    let response: DescribeGroupsResponse = wire.request(ApiKey::DescribeGroups, 5, &not_asked);
    assert_eq!(
        response.groups[0].authorized_operations,
        OPERATIONS_NOT_REQUESTED
    );
}

/// One IncrementalAlterConfigs operation on BROKER `broker`: (error code, error message).
fn alter_broker_config(
    wire: &mut common::Wire,
    broker: &str,
    name: &str,
    operation: i8,
    value: &str,
) -> (i16, Option<StrBytes>) {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_string(broker.to_string()))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_string(name.to_string()))
                .with_config_operation(operation)
                .with_value(Some(StrBytes::from_string(value.to_string())))]),
    ]);
    let response: IncrementalAlterConfigsResponse =
        wire.request(ApiKey::IncrementalAlterConfigs, 1, &request);
    let answer = &response.responses[0];
    (answer.error_code, answer.error_message.clone())
}

/// DescribeConfigs of BROKER `broker`: name -> (value, source, read-only).
fn describe_broker(
    wire: &mut common::Wire,
    broker: &str,
) -> std::collections::BTreeMap<String, (String, i8, bool)> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_string(broker.to_string()))
            .with_configuration_keys(None)]);
    let response: DescribeConfigsResponse = wire.request(ApiKey::DescribeConfigs, 4, &request);
    assert_eq!(response.results[0].error_code, 0);
    response.results[0]
        .configs
        .iter()
        .map(|c| {
            let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            (c.name.to_string(), (value, c.config_source, c.read_only))
        })
        .collect()
}

/// Dynamic broker configs: set per broker (resource "0") or cluster-wide (resource ""),
/// validated, reported with their source, kept across a restart; read-only, unknown, per-broker
/// only (at cluster level) and out-of-range ones, and other brokers' ids, are refused with
/// INVALID_REQUEST as Kafka refuses them.
#[test]
fn broker_configs_are_dynamic_validated_and_persisted() {
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    const APPEND: i8 = 2;
    const INVALID_REQUEST: i16 = 42;
    const DYNAMIC_BROKER: i8 = 1;
    const DYNAMIC_DEFAULT_BROKER: i8 = 2;
    const STATIC_BROKER: i8 = 4;
    const DEFAULT: i8 = 5;
    let mut broker = Broker::start("brokerconfigs", 1);
    let mut wire = broker.connect();
    assert_eq!(
        alter_broker_config(&mut wire, "0", "background.threads", SET, "9").0,
        0
    );
    assert_eq!(
        alter_broker_config(&mut wire, "0", "log.cleanup.policy", APPEND, "compact").0,
        0
    );
    assert_eq!(
        alter_broker_config(&mut wire, "", "num.io.threads", SET, "4").0,
        0
    );
    let relogin = "sasl.kerberos.min.time.before.relogin";
    assert_eq!(
        alter_broker_config(&mut wire, "0", relogin, SET, "58000").0,
        0
    );
    for (resource, name, value) in [
        ("", relogin, "58000"),
        ("0", "broker.id", "5"),
        ("0", "no.such.config", "1"),
        ("0", "background.threads", "0"),
        ("0", "log.cleanup.policy", "shred"),
        ("7", "background.threads", "9"),
    ] {
        let (error, message) = alter_broker_config(&mut wire, resource, name, SET, value);
        assert_eq!(
            error, INVALID_REQUEST,
            "{resource:?} {name}={value}: {message:?}"
        );
    }

    for round in ["before restart", "after restart"] {
        let described = describe_broker(&mut wire, "0");
        let entry = |name: &str| described.get(name).cloned().expect(name);
        assert_eq!(
            entry("background.threads"),
            ("9".into(), DYNAMIC_BROKER, false),
            "{round}"
        );
        assert_eq!(entry("log.cleanup.policy").0, "delete,compact", "{round}");
        assert_eq!(
            entry("num.io.threads"),
            ("4".into(), DYNAMIC_DEFAULT_BROKER, false)
        );
        assert_eq!(entry(relogin), ("58000".into(), DYNAMIC_BROKER, false));
        assert_eq!(entry("num.network.threads"), ("3".into(), DEFAULT, false));
        assert_eq!(entry("broker.id"), ("0".into(), STATIC_BROKER, true));
        let cluster = describe_broker(&mut wire, "");
        assert_eq!(
            cluster.keys().collect::<Vec<_>>(),
            ["num.io.threads"],
            "{round}"
        );
        broker.kill_and_restart();
        wire = broker.connect();
    }
    assert_eq!(
        alter_broker_config(&mut wire, "0", "background.threads", DELETE, "").0,
        0
    );
    let described = describe_broker(&mut wire, "0");
    assert_eq!(
        described["background.threads"],
        ("10".into(), DEFAULT, false)
    );
}
