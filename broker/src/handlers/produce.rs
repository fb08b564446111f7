//! Produce: append RecordBatch v2 batches to partitions.
//!
//! Versions 3–9 (RecordBatch v2 only). A partition another broker leads gets
//! NOT_LEADER_OR_FOLLOWER (v9 has no leader hint fields). Batches are validated (framing, magic, CRC-32C, then every
//! record as `storage::records` describes, compressed ones decompressed within the topic's
//! `max.message.bytes`) on the shard that received the request, then appended by each
//! partition's owner shard. acks=0 gets
//! no response (and a failed acks=0 request closes the connection), acks=1 is answered once the write completed, acks=all once it is fdatasync'd.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use storage::records::{RecordPolicy, TimestampWindow};
use storage::{BatchError, ValidatedBatches};

use super::RequestContext;
use crate::clock::now_ms;
use crate::cluster::metadata::{MetadataSnapshot, TopicMeta};
use crate::cluster::routing::leader_route;
use crate::config::ServeArgs;
use crate::errors::{batch_error, code};
use crate::partition::{Appended, Replication, ACKS_ALL};
use crate::shard::admin;
use crate::shard::message::{Reply, Request};
use crate::shard::Shard;

pub const VERSION_MIN: i16 = 3;
pub const VERSION_MAX: i16 = 9;
/// The lowest Produce version ApiVersions lists, below VERSION_MIN as in Kafka 4.0
/// (KAFKA-18659): librdkafka before the fix of its issue #4956 (Debian's kcat, with librdkafka
/// 2.0.2, among them) compresses with gzip, snappy or lz4 only if the broker lists Produce v0,
/// and otherwise sends those batches uncompressed. Versions below VERSION_MIN are still refused
/// like any unsupported version; clients send the highest version both sides list, which is at
/// least 3 for every client that writes RecordBatch v2.
pub const VERSION_MIN_ADVERTISED: i16 = 0;
const _: () = assert!(VERSION_MIN_ADVERTISED <= VERSION_MIN);
/// Longest an acks=all produce waits for the ISR, whatever the client asks: bounds how long a
/// request holds its place (and its bytes) in the connection's pipeline.
pub const PRODUCE_TIMEOUT_MS_MAX: u64 = 120_000;
/// The first Produce version that may carry zstd batches (KIP-110).
const VERSION_ZSTD_MIN: i16 = 7;

/// A partition's batch as appended, with the timestamp a LogAppendTime topic gave it (-1 else).
struct Produced {
    appended: Appended,
    log_append_time_ms: i64,
}

/// Why a partition's batch was refused: the error, and Kafka's per-record errors (Produce v8+)
/// as (batch index, message) with the partition's error message.
struct Refused {
    error: ResponseError,
    record_errors: Vec<(i32, String)>,
    error_message: Option<String>,
}

impl From<ResponseError> for Refused {
    fn from(error: ResponseError) -> Refused {
        Refused {
            error,
            record_errors: Vec::new(),
            error_message: None,
        }
    }
}

/// The answer to a Produce: a response (acks 1 or all), none (acks=0), or, for an acks=0 request
/// a partition of which failed, closing the connection, as Kafka does: the client has no other
/// way to learn of the error, and reconnecting makes it refresh its metadata (after a
/// NOT_LEADER_OR_FOLLOWER, the usual one, it then finds the new leader).
pub type Answer = Result<Option<ProduceResponse>, String>;

pub async fn handle(ctx: &RequestContext, request: ProduceRequest) -> Answer {
    let acks = request.acks;
    let timeout =
        Duration::from_millis((request.timeout_ms.max(0) as u64).min(PRODUCE_TIMEOUT_MS_MAX));
    let acks_valid = matches!(acks, 0 | 1 | ACKS_ALL);
    let mut pending = Vec::new();
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let partitions = topic
            .partition_data
            .into_iter()
            .map(|data| {
                let index = data.index;
                let task = acks_valid.then(|| {
                    glommio::spawn_local(produce_partition(
                        ctx.shard.clone(),
                        name.clone(),
                        index,
                        data.records,
                        acks,
                        ctx.version,
                        timeout,
                    ))
                });
                (index, task)
            })
            .collect::<Vec<_>>();
        pending.push((topic.name, partitions));
    }
    // Every task is awaited even after an acks=0 failure: dropping a glommio Task cancels it,
    // and Kafka appends every valid partition of a request before it closes the connection.
    let mut acks0_failure = None;
    let mut responses = Vec::with_capacity(pending.len());
    for (name, partitions) in pending {
        let mut partition_responses = Vec::with_capacity(partitions.len());
        for (index, task) in partitions {
            let result = match task {
                Some(task) => task.await,
                None => Err(Refused::from(ResponseError::InvalidRequiredAcks)),
            };
            if let (0, Err(refused), None) = (acks, &result, &acks0_failure) {
                acks0_failure = Some(format!(
                    "acks=0 produce to {}-{index} failed: {:?}",
                    name.0, refused.error
                ));
            }
            partition_responses.push(partition_response(index, result));
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partition_responses),
        );
    }
    if let Some(failure) = acks0_failure {
        return Err(failure);
    }
    Ok((acks != 0).then(|| ProduceResponse::default().with_responses(responses)))
}

fn partition_response(index: i32, result: Result<Produced, Refused>) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default().with_index(index);
    match result {
        Ok(produced) => response
            .with_base_offset(produced.appended.base_offset)
            .with_log_start_offset(produced.appended.log_start_offset)
            .with_log_append_time_ms(produced.log_append_time_ms),
        Err(refused) => {
            let response = response
                .with_error_code(code(Some(refused.error)))
                .with_base_offset(-1)
                .with_log_start_offset(-1)
                .with_log_append_time_ms(-1);
            if refused.record_errors.is_empty() {
                return response;
            }
            let record_errors = refused
                .record_errors
                .into_iter()
                .map(|(batch_index, message)| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(batch_index)
                        .with_batch_index_error_message(Some(StrBytes::from_string(message)))
                })
                .collect();
            response
                .with_record_errors(record_errors)
                .with_error_message(refused.error_message.map(StrBytes::from_string))
        }
    }
}

/// The `min.insync.replicas` an acks=all produce to a topic needs: the topic's own (parsed
/// once into its `TopicConfig`), else the broker's dynamic config (this broker's, then the
/// cluster-wide default), else `--min-insync-replicas`. An unreadable value counts as 1, the
/// default. acks=0 and acks=1 never look it up: the one-node data path does not pay for it.
fn min_insync_replicas(snapshot: &MetadataSnapshot, meta: &TopicMeta, config: &ServeArgs) -> i32 {
    const KEY: &str = "min.insync.replicas";
    if let Some(topic_value) = meta.config.min_insync_replicas {
        return topic_value;
    }
    let dynamic = (snapshot.broker_configs_of(config.node_id))
        .and_then(|configs| configs.get(KEY))
        .or_else(|| snapshot.broker_default_configs.get(KEY));
    match dynamic {
        Some(text) => text.parse::<i32>().unwrap_or(1),
        None => config.min_insync_replicas,
    }
}

/// What the topic and the request version require of the records of a produced batch.
fn record_policy(meta: &TopicMeta, version: i16) -> RecordPolicy {
    let max_message_bytes = meta.config.max_message_bytes;
    let log_append_time = meta.config.log_append_time;
    RecordPolicy {
        decompressed_bytes_max: usize::try_from(max_message_bytes.max(0)).unwrap_or(usize::MAX),
        zstd_allowed: version >= VERSION_ZSTD_MIN,
        key_required: meta.config.cleanup_compact,
        log_append_time_ms: log_append_time.then(now_ms),
        create_time_window: (!log_append_time)
            .then(|| create_time_window(meta))
            .flatten(),
    }
}

/// The record timestamps a CreateTime topic accepts; `None` when both bounds are Kafka's
/// default (`Long.MAX_VALUE`), so that the common case checks nothing.
fn create_time_window(meta: &TopicMeta) -> Option<TimestampWindow> {
    let before_max_ms = meta.config.timestamp_before_max_ms;
    let after_max_ms = meta.config.timestamp_after_max_ms;
    (before_max_ms < i64::MAX || after_max_ms < i64::MAX).then(|| TimestampWindow {
        now_ms: now_ms(),
        before_max_ms,
        after_max_ms,
    })
}

/// The refusal of a batch that failed validation, with Kafka's per-record errors and wording,
/// so that clients and tools show the familiar messages.
fn refused(error: BatchError, topic: &str, partition: i32) -> Refused {
    let response_error = batch_error(&error);
    let (record_errors, error_message) = match error {
        BatchError::KeylessRecordsInCompactedTopic(keyless_records) => {
            let message = format!(
                "Compacted topic cannot accept message without key in topic partition \
                 {topic}-{partition}."
            );
            let errors = keyless_records
                .into_iter()
                .map(|index| (index, message.clone()))
                .collect();
            (errors, "One or more records have been rejected")
        }
        BatchError::TimestampOutOfRange {
            records,
            low_ms,
            high_ms,
        } => {
            let errors = records
                .into_iter()
                .map(|(index, timestamp)| {
                    let message = format!(
                        "Timestamp {timestamp} of message with offset {index} is out of range. \
                         The timestamp should be within [{low_ms}, {high_ms}]"
                    );
                    (index, message)
                })
                .collect();
            (
                errors,
                "One or more records have been rejected due to invalid timestamp",
            )
        }
        _ => return Refused::from(response_error),
    };
    Refused {
        error: response_error,
        record_errors,
        error_message: Some(error_message.to_string()),
    }
}

async fn produce_partition(
    shard: Rc<Shard>,
    topic: String,
    partition: i32,
    records: Option<Bytes>,
    acks: i16,
    version: i16,
    timeout: Duration,
) -> Result<Produced, Refused> {
    // Hold the snapshot rather than cloning the topic's metadata on every produce.
    let mut snapshot = shard.metadata();
    let mut refusals = admin::AutoCreateRefusals::new();
    if !snapshot.topics.contains_key(&topic) {
        refusals = admin::auto_create(&shard, vec![topic.clone()]).await;
        snapshot = shard.metadata();
    }
    let meta = snapshot.topics.get(&topic).ok_or_else(|| {
        let refusal = refusals.remove(&topic);
        Refused::from(refusal.unwrap_or(ResponseError::UnknownTopicOrPartition))
    })?;
    if topic == crate::groups::store::OFFSETS_TOPIC {
        // Only the group coordinator writes the internal topic.
        return Err(ResponseError::InvalidTopicException.into());
    }
    leader_route(&snapshot, &topic, partition, shard.config.node_id)
        .map_err(|refused| Refused::from(refused.error))?;
    let records = records.ok_or(Refused::from(ResponseError::CorruptMessage))?;
    if records.len() as i64 > meta.config.max_message_bytes {
        return Err(ResponseError::MessageTooLarge.into());
    }
    let policy = record_policy(meta, version);
    let batches = ValidatedBatches::validate_produced(records, &policy)
        .map_err(|error| refused(error, &topic, partition))?;
    let replication = Replication {
        min_insync_replicas: match acks {
            ACKS_ALL => min_insync_replicas(&snapshot, meta, &shard.config),
            _ => Replication::MIN_INSYNC_REPLICAS_UNUSED,
        },
        timeout,
    };
    let owner = shard.owner(&topic, partition);
    let request = Request::Append {
        topic,
        partition,
        batches,
        acks,
        replication,
    };
    let appended = shard.call(owner, request).await;
    let Reply::Append(appended) = appended else {
        appended.mismatch("Append")
    };
    let appended = appended?;
    Ok(Produced {
        appended,
        log_append_time_ms: policy.log_append_time_ms.unwrap_or(-1),
    })
}
