//! Tests of the codec layers against kafka-protocol's own decoders and encoders, plus a loopback
//! fake broker that exercises the blocking transport.

use std::net::TcpListener;
use std::thread;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{decode_request_header_from_buffer, Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use super::apis::*;
use super::codec::*;
use super::records::encode_record_batch;
use super::*;

fn record(value: &'static str) -> ProduceRecord {
    ProduceRecord {
        key: Some(Bytes::from_static(b"key")),
        value: Some(Bytes::from_static(value.as_bytes())),
        headers: vec![],
        timestamp_ms: 1_700_000_000_000,
    }
}

fn batch_at(base_offset: i64, values: &[&'static str]) -> Bytes {
    let records: Vec<_> = values.iter().map(|value| record(value)).collect();
    let mut batch = BytesMut::from(&encode_record_batch(&records, Compression::None).unwrap()[..]);
    record_batch::set_base_offset(&mut batch, base_offset);
    batch.freeze()
}

/// What a broker would send: length prefix, ResponseHeader, body; returned without the prefix.
fn response_frame<R: Encodable>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &R,
) -> Bytes {
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    let mut frame = BytesMut::new();
    header
        .encode(&mut frame, api_key.response_header_version(version))
        .unwrap();
    body.encode(&mut frame, version).unwrap();
    frame.freeze()
}

fn topic(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

#[test]
fn produce_request_frame_decodes_with_kafka_protocol() {
    let batch = encode_record_batch(&[record("a"), record("b")], Compression::None).unwrap();
    for version in 3..=9 {
        let request = produce_request("orders", 2, batch.clone(), -1, 30_000);
        let mut frame =
            encode_request_frame(ApiKey::Produce, version, 7, "test", &request).unwrap();
        let size = frame.get_i32() as usize;
        assert_eq!(size, frame.len());
        let header = decode_request_header_from_buffer(&mut frame).unwrap();
        assert_eq!(
            (header.request_api_key, header.request_api_version),
            (0, version)
        );
        assert_eq!(header.correlation_id, 7);
        assert_eq!(header.client_id.as_deref(), Some("test"));
        let decoded = ProduceRequest::decode(&mut frame, version).unwrap();
        assert!(!frame.has_remaining());
        assert_eq!(decoded.acks, -1);
        assert_eq!(decoded.topic_data[0].name.as_str(), "orders");
        let partition = &decoded.topic_data[0].partition_data[0];
        assert_eq!(partition.index, 2);
        let mut records = partition.records.clone().unwrap();
        let set = RecordBatchDecoder::decode(&mut records).unwrap();
        let values: Vec<_> = set
            .records
            .iter()
            .map(|r| r.value.clone().unwrap())
            .collect();
        assert_eq!(values, vec!["a", "b"]);
    }
}

#[test]
fn every_request_encodes_at_every_negotiable_version() {
    let check = |api_key: ApiKey, encode: &dyn Fn(i16) -> Result<Bytes>| {
        let range = client_versions(api_key);
        for version in range.min..=range.max {
            encode(version).unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
        }
    };
    let configs = [("cleanup.policy".to_owned(), "compact".to_owned())];
    let create = CreateTopicParams {
        name: "t",
        partitions: 3,
        replication_factor: 1,
        configs: &configs,
        timeout_ms: 1000,
    };
    let positions = [
        FetchPosition {
            topic: "t",
            partition: 0,
            offset: 5,
        },
        FetchPosition {
            topic: "u",
            partition: 2,
            offset: 0,
        },
    ];
    let fetch = FetchParams {
        positions: &positions,
        max_wait_ms: 500,
        max_bytes: 1 << 20,
        partition_max_bytes: 1 << 18,
    };
    check(ApiKey::ApiVersions, &|v| {
        encode_request_frame(ApiKey::ApiVersions, v, 1, "c", &api_versions_request(v))
    });
    check(ApiKey::Metadata, &|v| {
        encode_request_frame(
            ApiKey::Metadata,
            v,
            1,
            "c",
            &metadata_request(Some(&["t"]), v),
        )
    });
    check(ApiKey::Metadata, &|v| {
        encode_request_frame(ApiKey::Metadata, v, 1, "c", &metadata_request(None, v))
    });
    check(ApiKey::CreateTopics, &|v| {
        encode_request_frame(
            ApiKey::CreateTopics,
            v,
            1,
            "c",
            &create_topics_request(&create),
        )
    });
    check(ApiKey::DeleteTopics, &|v| {
        encode_request_frame(
            ApiKey::DeleteTopics,
            v,
            1,
            "c",
            &delete_topics_request("t", 1000, v),
        )
    });
    check(ApiKey::DescribeConfigs, &|v| {
        encode_request_frame(
            ApiKey::DescribeConfigs,
            v,
            1,
            "c",
            &describe_configs_request("t"),
        )
    });
    check(ApiKey::ListOffsets, &|v| {
        encode_request_frame(
            ApiKey::ListOffsets,
            v,
            1,
            "c",
            &list_offsets_request("t", 0, -2),
        )
    });
    check(ApiKey::Fetch, &|v| {
        encode_request_frame(ApiKey::Fetch, v, 1, "c", &fetch_request(&fetch))
    });
}

#[test]
fn delete_topics_request_uses_the_field_of_its_version() {
    for version in 1..=6 {
        let mut frame = encode_request_frame(
            ApiKey::DeleteTopics,
            version,
            1,
            "c",
            &delete_topics_request("gone", 1000, version),
        )
        .unwrap();
        frame.advance(4);
        decode_request_header_from_buffer(&mut frame).unwrap();
        let decoded = DeleteTopicsRequest::decode(&mut frame, version).unwrap();
        let names: Vec<String> = if version >= 6 {
            decoded
                .topics
                .iter()
                .map(|t| t.name.as_ref().unwrap().as_str().to_owned())
                .collect()
        } else {
            decoded
                .topic_names
                .iter()
                .map(|t| t.as_str().to_owned())
                .collect()
        };
        assert_eq!(names, vec!["gone"], "v{version}");
    }
}

fn fetch_partition_data(
    partition_index: i32,
    error: Option<ResponseError>,
    records: Bytes,
) -> PartitionData {
    let mut partition = PartitionData::default();
    partition.partition_index = partition_index;
    partition.error_code = error.map_or(0, |error| error.code());
    partition.high_watermark = 46;
    partition.last_stable_offset = 46;
    partition.log_start_offset = 10;
    partition.records = Some(records);
    partition
}

fn fetch_topic_response(name: &str, partitions: Vec<PartitionData>) -> FetchableTopicResponse {
    let mut topic_response = FetchableTopicResponse::default();
    topic_response.topic = topic(name);
    topic_response.partitions = partitions;
    topic_response
}

#[test]
fn fetch_request_groups_partitions_by_topic() {
    let positions = [
        FetchPosition {
            topic: "t",
            partition: 0,
            offset: 5,
        },
        FetchPosition {
            topic: "u",
            partition: 0,
            offset: 6,
        },
        FetchPosition {
            topic: "t",
            partition: 1,
            offset: 7,
        },
    ];
    let params = FetchParams {
        positions: &positions,
        max_wait_ms: 500,
        max_bytes: 1000,
        partition_max_bytes: 100,
    };
    let mut frame =
        encode_request_frame(ApiKey::Fetch, 12, 1, "c", &fetch_request(&params)).unwrap();
    frame.advance(4);
    decode_request_header_from_buffer(&mut frame).unwrap();
    let request = FetchRequest::decode(&mut frame, 12).unwrap();
    assert_eq!(
        (request.max_wait_ms, request.min_bytes, request.max_bytes),
        (500, 1, 1000)
    );
    assert_eq!((request.session_id, request.session_epoch), (0, -1));
    assert_eq!(request.replica_id, BrokerId(-1));
    /// (topic, [(partition, fetch offset, partition max bytes)])
    type Layout = Vec<(String, Vec<(i32, i64, i32)>)>;
    let layout: Layout = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| (p.partition, p.fetch_offset, p.partition_max_bytes))
                .collect();
            (t.topic.as_str().to_owned(), partitions)
        })
        .collect();
    assert_eq!(
        layout,
        vec![
            ("t".to_owned(), vec![(0, 5, 100), (1, 7, 100)]),
            ("u".to_owned(), vec![(0, 6, 100)]),
        ]
    );
}

#[test]
fn fetch_response_with_truncated_tail_parses_complete_batches() {
    let mut records = BytesMut::new();
    records.extend_from_slice(&batch_at(40, &["a", "b", "c"]));
    records.extend_from_slice(&batch_at(43, &["d"]));
    let tail = batch_at(44, &["e", "f"]);
    records.extend_from_slice(&tail[..tail.len() / 2]);
    let records = records.freeze();
    let positions = [
        FetchPosition {
            topic: "t",
            partition: 1,
            offset: 41,
        },
        FetchPosition {
            topic: "u",
            partition: 0,
            offset: 7,
        },
    ];
    let params = FetchParams {
        positions: &positions,
        max_wait_ms: 0,
        max_bytes: 1 << 20,
        partition_max_bytes: 1 << 20,
    };
    for version in 4..=12 {
        let mut response = FetchResponse::default();
        // Answered in a different order than asked.
        response.responses = vec![
            fetch_topic_response("u", vec![fetch_partition_data(0, None, Bytes::new())]),
            fetch_topic_response("t", vec![fetch_partition_data(1, None, records.clone())]),
        ];
        let frame = response_frame(ApiKey::Fetch, version, 9, &response);
        let decoded: FetchResponse =
            decode_response_frame(ApiKey::Fetch, version, 9, frame).unwrap();
        let results = parse_fetch(decoded, &params).unwrap();
        assert_eq!(results.len(), 2);
        let result = &results[0];
        assert_eq!(result.error, None);
        assert_eq!(result.high_watermark, 46);
        // log_start_offset exists from Fetch v5 on.
        let log_start_offset = if version >= 5 { 10 } else { -1 };
        assert_eq!(result.log_start_offset, log_start_offset);
        let got: Vec<_> = result
            .records
            .iter()
            .map(|r| (r.offset, r.value.clone().unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                (41, Bytes::from("b")),
                (42, Bytes::from("c")),
                (43, Bytes::from("d"))
            ],
            "v{version}"
        );
        assert_eq!(result.next_offset, 44);
        assert!(results[1].records.is_empty());
        assert_eq!(results[1].next_offset, 7);
    }
}

#[test]
fn fetch_partition_error_is_reported_not_raised() {
    let mut response = FetchResponse::default();
    let partition = fetch_partition_data(0, Some(ResponseError::OffsetOutOfRange), Bytes::new());
    response.responses = vec![fetch_topic_response("t", vec![partition])];
    let positions = [FetchPosition {
        topic: "t",
        partition: 0,
        offset: 99,
    }];
    let params = FetchParams {
        positions: &positions,
        max_wait_ms: 0,
        max_bytes: 1024,
        partition_max_bytes: 1024,
    };
    let results = parse_fetch(response.clone(), &params).unwrap();
    assert_eq!(results[0].error, Some(ResponseError::OffsetOutOfRange));
    assert!(results[0].records.is_empty());
    assert_eq!(results[0].next_offset, 99);
    let other_positions = [FetchPosition {
        topic: "t",
        partition: 5,
        offset: 0,
    }];
    let other = FetchParams {
        positions: &other_positions,
        ..params
    };
    assert!(matches!(
        parse_fetch(response, &other),
        Err(ClientError::Protocol(_))
    ));
}

#[test]
fn frame_size_is_checked_before_allocation() {
    assert_eq!(frame_body_bytes(16i32.to_be_bytes()).unwrap(), 16);
    assert!(frame_body_bytes((-1i32).to_be_bytes()).is_err());
    assert!(frame_body_bytes(((FRAME_BYTES_MAX + 1) as i32).to_be_bytes()).is_err());
    assert_eq!(
        frame_body_bytes((FRAME_BYTES_MAX as i32).to_be_bytes()).unwrap(),
        FRAME_BYTES_MAX
    );
}

#[test]
fn response_with_wrong_correlation_id_is_rejected() {
    let frame = response_frame(ApiKey::Metadata, 12, 5, &MetadataResponse::default());
    let result: Result<MetadataResponse> = decode_response_frame(ApiKey::Metadata, 12, 6, frame);
    assert!(matches!(result, Err(ClientError::Protocol(_))));
}

fn api_versions_response(ranges: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.api_keys = ranges
        .iter()
        .map(|(key, min, max)| {
            let mut entry = ApiVersion::default();
            entry.api_key = *key as i16;
            entry.min_version = *min;
            entry.max_version = *max;
            entry
        })
        .collect();
    response
}

#[test]
fn negotiation_picks_highest_common_version() {
    let response = api_versions_response(&[
        (ApiKey::ApiVersions, 0, 4),
        (ApiKey::Metadata, 0, 13),
        (ApiKey::Produce, 0, 5),
        (ApiKey::Fetch, 13, 18), // No overlap with our 4..=12.
    ]);
    let versions = NegotiatedVersions::negotiate(&response);
    assert_eq!(versions.get(ApiKey::ApiVersions), Some(3));
    assert_eq!(versions.get(ApiKey::Metadata), Some(12));
    assert_eq!(versions.get(ApiKey::Produce), Some(5));
    assert_eq!(versions.get(ApiKey::Fetch), None);
    assert!(matches!(
        versions.require(ApiKey::ListOffsets),
        Err(ClientError::UnsupportedApi { .. })
    ));
}

#[test]
fn api_versions_unsupported_answer_is_decoded_as_v0() {
    let mut response = api_versions_response(&[(ApiKey::ApiVersions, 0, 2)]);
    response.error_code = UNSUPPORTED_VERSION;
    let frame = response_frame(ApiKey::ApiVersions, 0, 1, &response);
    let decoded = decode_api_versions_frame(3, 1, frame).unwrap();
    assert_eq!(decoded.error_code, UNSUPPORTED_VERSION);
    assert_eq!(decoded.api_keys[0].max_version, 2);
}

#[test]
fn metadata_response_is_flattened_at_every_version() {
    for version in 1..=12 {
        let mut broker = MetadataResponseBroker::default();
        broker.node_id = BrokerId(1);
        broker.host = StrBytes::from_static_str("localhost");
        broker.port = 9092;
        let mut partitions = Vec::new();
        for index in [1, 0] {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = index;
            partition.leader_id = BrokerId(1);
            partition.replica_nodes = vec![BrokerId(1)];
            partition.isr_nodes = vec![BrokerId(1)];
            partitions.push(partition);
        }
        let mut topic_metadata = MetadataResponseTopic::default();
        topic_metadata.name = Some(topic("t"));
        topic_metadata.partitions = partitions;
        let mut response = MetadataResponse::default();
        response.brokers = vec![broker];
        response.controller_id = BrokerId(1);
        response.topics = vec![topic_metadata];
        let frame = response_frame(ApiKey::Metadata, version, 3, &response);
        let decoded = decode_response_frame(ApiKey::Metadata, version, 3, frame).unwrap();
        let metadata = parse_metadata(decoded);
        assert_eq!(metadata.brokers[0].host, "localhost");
        let t = metadata.topic("t").unwrap();
        assert_eq!(
            t.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(),
            vec![0, 1]
        );
        assert_eq!(t.partitions[0].leader_id, 1);
    }
}

#[test]
fn produce_and_create_errors_carry_kafka_names() {
    let mut partition = PartitionProduceResponse::default();
    partition.index = 0;
    partition.error_code = ResponseError::NotLeaderOrFollower.code();
    let mut topic_response = TopicProduceResponse::default();
    topic_response.name = topic("t");
    topic_response.partition_responses = vec![partition];
    let mut response = ProduceResponse::default();
    response.responses = vec![topic_response];
    let error = parse_produce(&response, "t", 0).unwrap_err();
    assert_eq!(
        error.kafka_error(),
        Some(ResponseError::NotLeaderOrFollower)
    );
    assert!(
        error.to_string().contains("NOT_LEADER_OR_FOLLOWER"),
        "{error}"
    );

    let mut result = CreatableTopicResult::default();
    result.name = topic("t");
    result.error_code = ResponseError::TopicAlreadyExists.code();
    let mut response = CreateTopicsResponse::default();
    response.topics = vec![result];
    let error = parse_create_topics(&response, "t").unwrap_err();
    assert!(
        error.to_string().contains("TOPIC_ALREADY_EXISTS"),
        "{error}"
    );
}

/// Answers requests on one connection: ApiVersions rejects v3 like an old broker, CreateTopics
/// reports TOPIC_ALREADY_EXISTS, Produce assigns base offset 100.
fn fake_broker(listener: TcpListener) {
    use std::io::{Read, Write};
    let (mut stream, _) = listener.accept().unwrap();
    loop {
        let mut prefix = [0u8; 4];
        if stream.read_exact(&mut prefix).is_err() {
            return;
        }
        let mut body = vec![0u8; frame_body_bytes(prefix).unwrap()];
        stream.read_exact(&mut body).unwrap();
        let mut body = Bytes::from(body);
        let header = decode_request_header_from_buffer(&mut body).unwrap();
        let (key, version, id) = (
            header.request_api_key,
            header.request_api_version,
            header.correlation_id,
        );
        let frame = match ApiKey::try_from(key).unwrap() {
            ApiKey::ApiVersions if version >= 3 => {
                let mut response = api_versions_response(&[(ApiKey::ApiVersions, 0, 2)]);
                response.error_code = UNSUPPORTED_VERSION;
                response_frame(ApiKey::ApiVersions, 0, id, &response)
            }
            ApiKey::ApiVersions => {
                let response = api_versions_response(&[
                    (ApiKey::ApiVersions, 0, 2),
                    (ApiKey::Produce, 3, 7),
                    (ApiKey::CreateTopics, 2, 5),
                ]);
                response_frame(ApiKey::ApiVersions, version, id, &response)
            }
            ApiKey::CreateTopics => {
                let request = CreateTopicsRequest::decode(&mut body, version).unwrap();
                let mut result = CreatableTopicResult::default();
                result.name = request.topics[0].name.clone();
                result.error_code = ResponseError::TopicAlreadyExists.code();
                let mut response = CreateTopicsResponse::default();
                response.topics = vec![result];
                response_frame(ApiKey::CreateTopics, version, id, &response)
            }
            ApiKey::Produce => {
                let request = ProduceRequest::decode(&mut body, version).unwrap();
                if request.acks == 0 {
                    continue;
                }
                let mut partition = PartitionProduceResponse::default();
                partition.index = request.topic_data[0].partition_data[0].index;
                partition.base_offset = 100;
                let mut topic_response = TopicProduceResponse::default();
                topic_response.name = request.topic_data[0].name.clone();
                topic_response.partition_responses = vec![partition];
                let mut response = ProduceResponse::default();
                response.responses = vec![topic_response];
                response_frame(ApiKey::Produce, version, id, &response)
            }
            other => panic!("fake broker does not answer {other:?}"),
        };
        let mut out = BytesMut::new();
        out.put_i32(frame.len() as i32);
        out.extend_from_slice(&frame);
        stream.write_all(&out).unwrap();
    }
}

#[test]
fn client_talks_to_a_loopback_broker() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let broker = thread::spawn(move || fake_broker(listener));
    let mut client = Client::connect(&address).unwrap();
    assert_eq!(client.versions().get(ApiKey::ApiVersions), Some(2));
    assert_eq!(client.versions().get(ApiKey::Produce), Some(7));
    assert_eq!(client.versions().get(ApiKey::Metadata), None);
    assert!(matches!(
        client.metadata(None),
        Err(ClientError::UnsupportedApi { .. })
    ));
    let error = client.create_topic("t", 1, 1, &[]).unwrap_err();
    assert_eq!(error.kafka_error(), Some(ResponseError::TopicAlreadyExists));
    assert_eq!(client.produce("t", 0, &[record("x")], 0).unwrap(), -1);
    assert_eq!(client.produce("t", 3, &[record("y")], -1).unwrap(), 100);
    drop(client);
    broker.join().unwrap();
}

/// What the idempotence fake broker does with the Produce requests of one connection.
#[derive(Clone, Copy)]
enum ProduceAnswer {
    /// Reads the request, keeps its batch, then closes the connection without answering.
    Drop,
    /// Answers with this error code (0 for success at base offset 7).
    Code(i16),
}

/// Serves one connection per entry of `answers`; returns the Produce batches it received.
fn idempotence_broker(listener: TcpListener, answers: Vec<ProduceAnswer>) -> Vec<Bytes> {
    use std::io::{Read, Write};
    let mut batches = Vec::new();
    for answer in answers {
        let (mut stream, _) = listener.accept().unwrap();
        loop {
            let mut prefix = [0u8; 4];
            if stream.read_exact(&mut prefix).is_err() {
                break;
            }
            let mut body = vec![0u8; frame_body_bytes(prefix).unwrap()];
            stream.read_exact(&mut body).unwrap();
            let mut body = Bytes::from(body);
            let header = decode_request_header_from_buffer(&mut body).unwrap();
            let (version, id) = (header.request_api_version, header.correlation_id);
            let frame = match ApiKey::try_from(header.request_api_key).unwrap() {
                ApiKey::ApiVersions => {
                    let response = api_versions_response(&[
                        (ApiKey::ApiVersions, 0, 3),
                        (ApiKey::Produce, 3, 9),
                        (ApiKey::InitProducerId, 0, 4),
                    ]);
                    response_frame(ApiKey::ApiVersions, version, id, &response)
                }
                ApiKey::InitProducerId => {
                    let request = InitProducerIdRequest::decode(&mut body, version).unwrap();
                    assert_eq!(request.transactional_id, None);
                    let mut response = InitProducerIdResponse::default();
                    response.producer_id = ProducerId(77);
                    response.producer_epoch = 0;
                    response_frame(ApiKey::InitProducerId, version, id, &response)
                }
                ApiKey::Produce => {
                    let request = ProduceRequest::decode(&mut body, version).unwrap();
                    assert_eq!(request.acks, -1);
                    let data = &request.topic_data[0].partition_data[0];
                    batches.push(data.records.clone().unwrap());
                    let code = match answer {
                        ProduceAnswer::Drop => break,
                        ProduceAnswer::Code(code) => code,
                    };
                    let mut partition = PartitionProduceResponse::default();
                    partition.index = data.index;
                    partition.error_code = code;
                    partition.base_offset = if code == 0 { 7 } else { -1 };
                    let mut topic_response = TopicProduceResponse::default();
                    topic_response.name = request.topic_data[0].name.clone();
                    topic_response.partition_responses = vec![partition];
                    let mut response = ProduceResponse::default();
                    response.responses = vec![topic_response];
                    response_frame(ApiKey::Produce, version, id, &response)
                }
                other => panic!("fake broker does not answer {other:?}"),
            };
            let mut out = BytesMut::new();
            out.put_i32(frame.len() as i32);
            out.extend_from_slice(&frame);
            stream.write_all(&out).unwrap();
        }
    }
    batches
}

#[test]
fn idempotent_resend_after_broken_connection_reuses_the_same_bytes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let answers = vec![ProduceAnswer::Drop, ProduceAnswer::Code(0)];
    let broker = thread::spawn(move || idempotence_broker(listener, answers));
    let mut producer = IdempotentProducer::connect(&address, ClientConfig::default()).unwrap();
    assert_eq!(producer.identity().producer_id, 77);
    assert!(matches!(
        producer.produce("t", 1, &[record("a")], 1),
        Err(ClientError::Config(_))
    ));
    let records = [record("a"), record("b"), record("c")];
    assert_eq!(producer.produce("t", 1, &records, -1).unwrap(), 7);
    assert_eq!(producer.sequence_next("t", 1), 3);
    drop(producer);
    let batches = broker.join().unwrap();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0], batches[1], "the resend carries identical bytes");
    let infos = RecordBatchDecoder::decode_batch_info(&mut batches[0].clone()).unwrap();
    assert_eq!(
        (
            infos[0].producer_id,
            infos[0].producer_epoch,
            infos[0].base_sequence
        ),
        (77, 0, 0)
    );
}

#[test]
fn idempotent_sequence_errors_are_final() {
    for code in [
        ResponseError::OutOfOrderSequenceNumber.code(),
        ResponseError::InvalidProducerEpoch.code(),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let answers = vec![ProduceAnswer::Code(code)];
        let broker = thread::spawn(move || idempotence_broker(listener, answers));
        let mut producer = IdempotentProducer::connect(&address, ClientConfig::default()).unwrap();
        let error = producer.produce("t", 0, &[record("a")], -1).unwrap_err();
        assert_eq!(error.kafka_error().map(|e| e.code()), Some(code));
        assert_eq!(producer.sequence_next("t", 0), 0);
        drop(producer);
        assert_eq!(broker.join().unwrap().len(), 1, "not resent");
    }
}

#[test]
fn init_producer_id_request_has_no_transactional_id() {
    for version in 0..=4 {
        let request = init_producer_id_request(None, i32::MAX, version);
        let mut frame =
            encode_request_frame(ApiKey::InitProducerId, version, 1, "test", &request).unwrap();
        frame.advance(4);
        decode_request_header_from_buffer(&mut frame).unwrap();
        let decoded = InitProducerIdRequest::decode(&mut frame, version).unwrap();
        assert_eq!(decoded.transactional_id, None);
        assert_eq!(decoded.producer_id.0, -1);
    }
    let bump = ProducerIdentity {
        producer_id: 5,
        producer_epoch: 2,
    };
    let request = init_producer_id_request(Some(bump), i32::MAX, 4);
    assert_eq!((request.producer_id.0, request.producer_epoch), (5, 2));
    let mut response = InitProducerIdResponse::default();
    response.error_code = ResponseError::ProducerFenced.code();
    assert!(parse_init_producer_id(&response).is_err());
}
