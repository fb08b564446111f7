//! Produce: append RecordBatch v2 batches to partitions.
//!
//! Versions 3–9 (RecordBatch v2 only). Batches are validated (framing, magic, CRC-32C) on the
//! shard that received the request, then appended by each partition's owner shard. acks=0 gets
//! no response, acks=1 is answered once the write completed, acks=all once it is fdatasync'd.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use storage::ValidatedBatches;

use super::RequestContext;
use crate::controller;
use crate::errors::{batch_error, code};
use crate::ops::{Appended, ACKS_ALL};
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

pub async fn handle(ctx: &RequestContext, request: ProduceRequest) -> Option<ProduceResponse> {
    let acks = request.acks;
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
                    ))
                });
                (index, task)
            })
            .collect::<Vec<_>>();
        pending.push((topic.name, partitions));
    }
    let mut responses = Vec::with_capacity(pending.len());
    for (name, partitions) in pending {
        let mut partition_responses = Vec::with_capacity(partitions.len());
        for (index, task) in partitions {
            let result = match task {
                Some(task) => task.await,
                None => Err(ResponseError::InvalidRequiredAcks),
            };
            partition_responses.push(partition_response(index, result));
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partition_responses),
        );
    }
    (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
}

fn partition_response(
    index: i32,
    result: Result<Appended, ResponseError>,
) -> PartitionProduceResponse {
    let response = PartitionProduceResponse::default()
        .with_index(index)
        .with_log_append_time_ms(-1);
    match result {
        Ok(appended) => response
            .with_base_offset(appended.base_offset)
            .with_log_start_offset(appended.log_start_offset),
        Err(error) => response
            .with_error_code(code(Some(error)))
            .with_base_offset(-1)
            .with_log_start_offset(-1),
    }
}

async fn produce_partition(
    shard: Rc<Shard>,
    topic: String,
    partition: i32,
    records: Option<Bytes>,
    acks: i16,
) -> Result<Appended, ResponseError> {
    // Hold the snapshot rather than cloning the topic's metadata on every produce.
    let mut snapshot = shard.metadata();
    let mut refusals = controller::AutoCreateRefusals::new();
    if !snapshot.topics.contains_key(&topic) {
        refusals = controller::auto_create(&shard, vec![topic.clone()]).await;
        snapshot = shard.metadata();
    }
    let meta = snapshot.topics.get(&topic).ok_or_else(|| {
        let refusal = refusals.remove(&topic);
        refusal.unwrap_or(ResponseError::UnknownTopicOrPartition)
    })?;
    if topic == crate::groups::store::OFFSETS_TOPIC {
        // Only the group coordinator writes the internal topic.
        return Err(ResponseError::InvalidTopicException);
    }
    if partition < 0 || partition >= meta.partitions {
        return Err(ResponseError::UnknownTopicOrPartition);
    }
    let records = records.ok_or(ResponseError::CorruptMessage)?;
    let max_message_bytes = meta.config_i64("max.message.bytes").unwrap_or(i64::MAX);
    if records.len() as i64 > max_message_bytes {
        return Err(ResponseError::MessageTooLarge);
    }
    let batches = ValidatedBatches::validate(records).map_err(|e| batch_error(&e))?;
    let owner = shard.owner(&topic, partition);
    shard
        .call(owner, move |s| {
            s.append_local(topic, partition, batches, acks)
        })
        .await
}
