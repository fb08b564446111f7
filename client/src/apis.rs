//! Request builders and response parsers for each API the client uses. Pure functions over
//! kafka-protocol message types; the transport lives in `client::Client`.

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, FetchRequest, FetchResponse,
    InitProducerIdRequest, InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse,
    MetadataRequest, MetadataResponse, ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::error::{check_code, ClientError, Result};
use super::records::decode_record_batches;
use super::types::{
    BrokerMetadata, ClusterMetadata, ConfigEntry, FetchResult, PartitionMetadata, TopicMetadata,
};

/// DescribeConfigs resource type of a topic.
const RESOURCE_TYPE_TOPIC: i8 = 2;
/// DescribeConfigs config_source meaning "the broker's built-in default".
const CONFIG_SOURCE_DEFAULT: i8 = 5;
/// ListOffsets timestamp asking for the log start offset.
pub const TIMESTAMP_EARLIEST: i64 = -2;
/// ListOffsets timestamp asking for the log end offset (the high watermark).
pub const TIMESTAMP_LATEST: i64 = -1;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

fn optional_string(value: &Option<StrBytes>) -> Option<String> {
    value.as_ref().map(|value| value.as_str().to_owned())
}

fn missing(what: &str, topic: &str, partition: Option<i32>) -> ClientError {
    match partition {
        Some(partition) => ClientError::protocol(format!(
            "{what} response has no entry for {topic}-{partition}"
        )),
        None => ClientError::protocol(format!("{what} response has no entry for topic {topic}")),
    }
}

/// `topics: None` asks for every topic. Never creates topics as a side effect.
pub fn metadata_request(topics: Option<&[&str]>, version: i16) -> MetadataRequest {
    let mut request = MetadataRequest::default();
    request.topics = topics.map(|topics| {
        topics
            .iter()
            .map(|name| {
                let mut topic = MetadataRequestTopic::default();
                topic.name = Some(topic_name(name));
                topic
            })
            .collect()
    });
    if version >= 4 {
        request.allow_auto_topic_creation = false;
    }
    request
}

pub fn parse_metadata(response: MetadataResponse) -> ClusterMetadata {
    let brokers = response
        .brokers
        .into_iter()
        .map(|broker| BrokerMetadata {
            node_id: broker.node_id.0,
            host: broker.host.as_str().to_owned(),
            port: broker.port,
            rack: optional_string(&broker.rack),
        })
        .collect();
    let topics = response
        .topics
        .into_iter()
        .map(|topic| {
            let mut partitions: Vec<PartitionMetadata> = topic
                .partitions
                .into_iter()
                .map(|partition| PartitionMetadata {
                    partition: partition.partition_index,
                    error_code: partition.error_code,
                    leader_id: partition.leader_id.0,
                    leader_epoch: partition.leader_epoch,
                    replica_nodes: partition.replica_nodes.iter().map(|id| id.0).collect(),
                    isr_nodes: partition.isr_nodes.iter().map(|id| id.0).collect(),
                    offline_replicas: (partition.offline_replicas.iter()).map(|id| id.0).collect(),
                })
                .collect();
            partitions.sort_by_key(|partition| partition.partition);
            TopicMetadata {
                name: topic
                    .name
                    .map(|name| name.0.as_str().to_owned())
                    .unwrap_or_default(),
                topic_id: (!topic.topic_id.is_nil()).then(|| topic.topic_id.to_string()),
                error_code: topic.error_code,
                is_internal: topic.is_internal,
                partitions,
            }
        })
        .collect();
    ClusterMetadata {
        cluster_id: optional_string(&response.cluster_id),
        controller_id: response.controller_id.0,
        brokers,
        topics,
    }
}

pub struct CreateTopicParams<'a> {
    pub name: &'a str,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: &'a [(String, String)],
    pub timeout_ms: i32,
}

pub fn create_topics_request(params: &CreateTopicParams<'_>) -> CreateTopicsRequest {
    let mut topic = CreatableTopic::default();
    topic.name = topic_name(params.name);
    topic.num_partitions = params.partitions;
    topic.replication_factor = params.replication_factor;
    topic.configs = params
        .configs
        .iter()
        .map(|(name, value)| {
            let mut config = CreatableTopicConfig::default();
            config.name = StrBytes::from_string(name.clone());
            config.value = Some(StrBytes::from_string(value.clone()));
            config
        })
        .collect();
    let mut request = CreateTopicsRequest::default();
    request.topics = vec![topic];
    request.timeout_ms = params.timeout_ms;
    request
}

pub fn parse_create_topics(response: &CreateTopicsResponse, name: &str) -> Result<()> {
    let result = response
        .topics
        .iter()
        .find(|topic| topic.name.as_str() == name)
        .ok_or_else(|| missing("CreateTopics", name, None))?;
    check_code(result.error_code, result.error_message.as_deref(), || {
        format!("create topic {name:?}")
    })
}

pub fn delete_topics_request(name: &str, timeout_ms: i32, version: i16) -> DeleteTopicsRequest {
    let mut request = DeleteTopicsRequest::default();
    if version >= 6 {
        let mut topic = DeleteTopicState::default();
        topic.name = Some(topic_name(name));
        request.topics = vec![topic];
    } else {
        request.topic_names = vec![topic_name(name)];
    }
    request.timeout_ms = timeout_ms;
    request
}

pub fn parse_delete_topics(response: &DeleteTopicsResponse, name: &str) -> Result<()> {
    let result = response
        .responses
        .iter()
        .find(|topic| topic.name.as_ref().map(|n| n.as_str()) == Some(name))
        .ok_or_else(|| missing("DeleteTopics", name, None))?;
    check_code(result.error_code, result.error_message.as_deref(), || {
        format!("delete topic {name:?}")
    })
}

pub fn describe_configs_request(topic: &str) -> DescribeConfigsRequest {
    let mut resource = DescribeConfigsResource::default();
    resource.resource_type = RESOURCE_TYPE_TOPIC;
    resource.resource_name = StrBytes::from_string(topic.to_owned());
    resource.configuration_keys = None; // All of them.
    let mut request = DescribeConfigsRequest::default();
    request.resources = vec![resource];
    request
}

pub fn parse_describe_configs(
    response: &DescribeConfigsResponse,
    topic: &str,
) -> Result<Vec<ConfigEntry>> {
    let result = response
        .results
        .iter()
        .find(|result| {
            result.resource_type == RESOURCE_TYPE_TOPIC && result.resource_name.as_str() == topic
        })
        .ok_or_else(|| missing("DescribeConfigs", topic, None))?;
    check_code(result.error_code, result.error_message.as_deref(), || {
        format!("describe configs of topic {topic:?}")
    })?;
    let mut entries: Vec<ConfigEntry> = result
        .configs
        .iter()
        .map(|config| ConfigEntry {
            name: config.name.as_str().to_owned(),
            value: optional_string(&config.value),
            read_only: config.read_only,
            is_default: config.config_source == CONFIG_SOURCE_DEFAULT,
            is_sensitive: config.is_sensitive,
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

pub fn produce_request(
    topic: &str,
    partition: i32,
    batch: Bytes,
    acks: i16,
    timeout_ms: i32,
) -> ProduceRequest {
    assert!(matches!(acks, -1..=1), "acks is -1 (all), 0 or 1");
    let mut partition_data = PartitionProduceData::default();
    partition_data.index = partition;
    partition_data.records = Some(batch);
    let mut topic_data = TopicProduceData::default();
    topic_data.name = topic_name(topic);
    topic_data.partition_data = vec![partition_data];
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = timeout_ms;
    request.topic_data = vec![topic_data];
    request
}

/// Returns the base offset the broker assigned to the batch.
pub fn parse_produce(response: &ProduceResponse, topic: &str, partition: i32) -> Result<i64> {
    let result = response
        .responses
        .iter()
        .filter(|entry| entry.name.as_str() == topic)
        .flat_map(|entry| entry.partition_responses.iter())
        .find(|entry| entry.index == partition)
        .ok_or_else(|| missing("Produce", topic, Some(partition)))?;
    check_code(result.error_code, result.error_message.as_deref(), || {
        format!("produce to {topic}-{partition}")
    })?;
    Ok(result.base_offset)
}

/// One batch of a Produce request that carries several partitions.
#[derive(Debug, Clone)]
pub struct PartitionBatch<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub batch: Bytes,
}

/// A Produce request with one batch for each of several partitions (at most one per partition:
/// brokers refuse two batches of one partition in one request). Topics keep their first order.
pub fn produce_request_many(
    batches: &[PartitionBatch<'_>],
    acks: i16,
    timeout_ms: i32,
) -> ProduceRequest {
    assert!(matches!(acks, -1..=1), "acks is -1 (all), 0 or 1");
    assert!(!batches.is_empty(), "a produce request carries a batch");
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for entry in batches {
        let mut partition_data = PartitionProduceData::default();
        partition_data.index = entry.partition;
        partition_data.records = Some(entry.batch.clone());
        match topics
            .iter_mut()
            .find(|topic| topic.name.as_str() == entry.topic)
        {
            Some(topic) => {
                assert!(
                    topic
                        .partition_data
                        .iter()
                        .all(|data| data.index != entry.partition),
                    "one batch per partition and request"
                );
                topic.partition_data.push(partition_data);
            }
            None => {
                let mut topic = TopicProduceData::default();
                topic.name = topic_name(entry.topic);
                topic.partition_data = vec![partition_data];
                topics.push(topic);
            }
        }
    }
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = timeout_ms;
    request.topic_data = topics;
    request
}

/// The base offset of each batch of `produce_request_many`, in the order of `batches`; a batch
/// the response does not mention is a protocol error.
pub fn parse_produce_many(
    response: &ProduceResponse,
    batches: &[PartitionBatch<'_>],
) -> Vec<Result<i64>> {
    batches
        .iter()
        .map(|entry| parse_produce(response, entry.topic, entry.partition))
        .collect()
}

/// An idempotent producer's id and epoch, as InitProducerId hands them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

/// InitProducerId without a transactional id. `current`: the identity to bump (KIP-360, v3+);
/// `None` asks for a fresh producer id.
pub fn init_producer_id_request(
    current: Option<ProducerIdentity>,
    transaction_timeout_ms: i32,
    version: i16,
) -> InitProducerIdRequest {
    assert!(
        current.is_none() || version >= 3,
        "bumping an epoch needs InitProducerId v3+"
    );
    let mut request = InitProducerIdRequest::default();
    // The default is Some(""), which a broker takes for a (refused) transactional id.
    request.transactional_id = None;
    request.transaction_timeout_ms = transaction_timeout_ms;
    let current = current.unwrap_or(ProducerIdentity {
        producer_id: -1,
        producer_epoch: -1,
    });
    if version >= 3 {
        request.producer_id = ProducerId(current.producer_id);
        request.producer_epoch = current.producer_epoch;
    }
    request
}

pub fn parse_init_producer_id(response: &InitProducerIdResponse) -> Result<ProducerIdentity> {
    check_code(response.error_code, None, || "init producer id".to_owned())?;
    if response.producer_id.0 < 0 || response.producer_epoch < 0 {
        return Err(ClientError::protocol(format!(
            "InitProducerId returned producer id {} epoch {}",
            response.producer_id.0, response.producer_epoch
        )));
    }
    Ok(ProducerIdentity {
        producer_id: response.producer_id.0,
        producer_epoch: response.producer_epoch,
    })
}

/// `timestamp` is TIMESTAMP_EARLIEST, TIMESTAMP_LATEST or a time in ms since the epoch.
pub fn list_offsets_request(topic: &str, partition: i32, timestamp: i64) -> ListOffsetsRequest {
    let mut partition_request = ListOffsetsPartition::default();
    partition_request.partition_index = partition;
    partition_request.timestamp = timestamp;
    let mut topic_request = ListOffsetsTopic::default();
    topic_request.name = topic_name(topic);
    topic_request.partitions = vec![partition_request];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1); // A consumer, not a follower.
    request.topics = vec![topic_request];
    request
}

/// Returns the offset found; -1 when no record has a timestamp at or after the one asked for.
pub fn parse_list_offsets(
    response: &ListOffsetsResponse,
    topic: &str,
    partition: i32,
) -> Result<i64> {
    let result = response
        .topics
        .iter()
        .filter(|entry| entry.name.as_str() == topic)
        .flat_map(|entry| entry.partitions.iter())
        .find(|entry| entry.partition_index == partition)
        .ok_or_else(|| missing("ListOffsets", topic, Some(partition)))?;
    check_code(result.error_code, None, || {
        format!("list offsets of {topic}-{partition}")
    })?;
    Ok(result.offset)
}

/// Where to read one partition from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchPosition<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

#[derive(Debug, Clone, Copy)]
pub struct FetchParams<'a> {
    pub positions: &'a [FetchPosition<'a>],
    pub max_wait_ms: i32,
    /// Bounds the whole response; the broker still returns at least one batch even if larger.
    pub max_bytes: i32,
    /// Bounds each partition's records bytes.
    pub partition_max_bytes: i32,
}

/// A sessionless fetch (session id 0, epoch -1), read_uncommitted, min_bytes 1: the broker
/// answers as soon as any partition has data, or after max_wait_ms.
pub fn fetch_request(params: &FetchParams<'_>) -> FetchRequest {
    assert!(
        !params.positions.is_empty(),
        "a fetch reads at least one partition"
    );
    let mut topics: Vec<FetchTopic> = Vec::new();
    for position in params.positions {
        let mut partition = FetchPartition::default();
        partition.partition = position.partition;
        partition.fetch_offset = position.offset;
        partition.partition_max_bytes = params.partition_max_bytes;
        match topics
            .iter_mut()
            .find(|topic| topic.topic.as_str() == position.topic)
        {
            Some(topic) => topic.partitions.push(partition),
            None => {
                let mut topic = FetchTopic::default();
                topic.topic = topic_name(position.topic);
                topic.partitions = vec![partition];
                topics.push(topic);
            }
        }
    }
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(-1);
    request.max_wait_ms = params.max_wait_ms;
    request.min_bytes = 1;
    request.max_bytes = params.max_bytes;
    request.session_id = 0;
    request.session_epoch = -1;
    request.topics = topics;
    request
}

/// One result per `params.positions` entry, in the same order. Partition-level errors are
/// returned in `FetchResult::error` so a consumer can react (e.g. to OFFSET_OUT_OF_RANGE); a
/// request-level error or a missing partition is an `Err`.
pub fn parse_fetch(response: FetchResponse, params: &FetchParams<'_>) -> Result<Vec<FetchResult>> {
    check_code(response.error_code, None, || "fetch".to_owned())?;
    let mut partitions: Vec<(TopicName, PartitionData)> = response
        .responses
        .into_iter()
        .flat_map(|entry| {
            let topic = entry.topic;
            entry
                .partitions
                .into_iter()
                .map(move |partition| (topic.clone(), partition))
        })
        .collect();
    let mut results = Vec::with_capacity(params.positions.len());
    for position in params.positions {
        let index = partitions
            .iter()
            .position(|(topic, partition)| {
                topic.as_str() == position.topic && partition.partition_index == position.partition
            })
            .ok_or_else(|| missing("Fetch", position.topic, Some(position.partition)))?;
        let (_, partition) = partitions.swap_remove(index);
        results.push(fetch_result(partition, position.offset)?);
    }
    Ok(results)
}

fn fetch_result(partition: PartitionData, offset: i64) -> Result<FetchResult> {
    let error = ResponseError::try_from_code(partition.error_code);
    let decoded = match (&error, partition.records) {
        (None, Some(records)) => decode_record_batches(records, offset)?,
        _ => Default::default(),
    };
    Ok(FetchResult {
        high_watermark: partition.high_watermark,
        log_start_offset: partition.log_start_offset,
        records: decoded.records,
        next_offset: decoded.next_offset.unwrap_or(offset).max(offset),
        error,
    })
}
