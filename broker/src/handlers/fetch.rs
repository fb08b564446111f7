//! Fetch: read stored batches, long-polling until enough data or the deadline.
//!
//! Versions 4–12 (topics by name; no fetch sessions: every response carries session id 0, which
//! tells clients to send full fetches). Partitions are read on their owner shards in parallel and
//! the stored batch bytes are returned as they are, never decoded.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};

use super::RequestContext;
use crate::errors::code;
use crate::ops::{first_of, PartitionRead, ReadSpec};
use crate::shard::Shard;

pub const VERSION_MIN: i16 = 4;
pub const VERSION_MAX: i16 = 12;

/// Longest a fetch may wait for data, whatever the client asks; bounds how long a request holds
/// its place in the connection's pipeline.
pub const FETCH_WAIT_MS_MAX: u64 = 30_000;

/// Most bytes one fetch response carries, whatever the client asks (Kafka's
/// `fetch.max.bytes` default is 50 MiB; this also bounds the response buffer).
pub const FETCH_RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;

pub async fn handle(ctx: &RequestContext, request: FetchRequest) -> FetchResponse {
    if request.session_id != 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code());
    }
    let mut specs = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            specs.push(ReadSpec {
                topic: topic.topic.0.to_string(),
                partition: partition.partition,
                offset: partition.fetch_offset,
                max_bytes: partition
                    .partition_max_bytes
                    .clamp(0, FETCH_RESPONSE_BYTES_MAX as i32) as usize,
            });
        }
    }
    let response_bytes_max = request.max_bytes.clamp(0, FETCH_RESPONSE_BYTES_MAX as i32) as usize;
    let wait = Duration::from_millis((request.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MS_MAX));
    let deadline = Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let mut reads = read_all(&ctx.shard, &specs).await;
    if !enough(&reads, min_bytes) && Instant::now() < deadline {
        wait_any(&ctx.shard, &specs, deadline).await;
        reads = read_all(&ctx.shard, &specs).await;
    }
    respond(&request, reads, response_bytes_max)
}

fn enough(reads: &[PartitionRead], min_bytes: usize) -> bool {
    let bytes: usize = reads.iter().map(|r| r.records.len()).sum();
    bytes >= min_bytes.max(1) || reads.iter().any(|r| r.error.is_some())
}

/// Reads every partition on its owner shard, all shards in parallel; results in `specs` order.
async fn read_all(shard: &Rc<Shard>, specs: &[ReadSpec]) -> Vec<PartitionRead> {
    let mut by_owner: BTreeMap<usize, (Vec<usize>, Vec<ReadSpec>)> = BTreeMap::new();
    for (index, spec) in specs.iter().enumerate() {
        let entry = by_owner
            .entry(shard.owner(&spec.topic, spec.partition.max(0)))
            .or_default();
        entry.0.push(index);
        entry.1.push(spec.clone());
    }
    let tasks: Vec<_> = by_owner
        .into_iter()
        .map(|(owner, (indexes, group))| {
            let shard = shard.clone();
            (
                indexes,
                glommio::spawn_local(async move {
                    shard.call(owner, move |s| s.read_local(group)).await
                }),
            )
        })
        .collect();
    let mut reads = vec![PartitionRead::default(); specs.len()];
    for (indexes, task) in tasks {
        for (index, read) in indexes.into_iter().zip(task.await) {
            reads[index] = read;
        }
    }
    reads
}

/// Waits until any partition gets data past its fetch offset, or the deadline passes.
async fn wait_any(shard: &Rc<Shard>, specs: &[ReadSpec], deadline: Instant) {
    let mut by_owner: BTreeMap<usize, Vec<(String, i32, i64)>> = BTreeMap::new();
    for spec in specs {
        by_owner
            .entry(shard.owner(&spec.topic, spec.partition.max(0)))
            .or_default()
            .push((spec.topic.clone(), spec.partition, spec.offset));
    }
    let waits: Vec<Pin<Box<dyn Future<Output = ()>>>> = by_owner
        .into_iter()
        .map(|(owner, waits)| {
            let shard = shard.clone();
            Box::pin(async move {
                shard
                    .call(owner, move |s| s.wait_local(waits, deadline))
                    .await
            }) as Pin<Box<dyn Future<Output = ()>>>
        })
        .collect();
    first_of(waits).await;
}

/// Builds the response in request order, keeping the total under `response_bytes_max` but
/// always returning the first non-empty partition whole (KIP-74), so a large batch can progress.
fn respond(
    request: &FetchRequest,
    reads: Vec<PartitionRead>,
    response_bytes_max: usize,
) -> FetchResponse {
    let mut reads = reads.into_iter();
    let mut total_bytes = 0usize;
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let read = reads.next().expect("one read per requested partition");
            let mut records = read.records;
            if total_bytes > 0 && total_bytes + records.len() > response_bytes_max {
                records = Bytes::new();
            }
            total_bytes += records.len();
            partitions.push(
                PartitionData::default()
                    .with_partition_index(partition.partition)
                    .with_error_code(code(read.error))
                    .with_high_watermark(read.high_watermark)
                    .with_last_stable_offset(read.high_watermark)
                    .with_log_start_offset(read.log_start_offset)
                    .with_records(Some(records)),
            );
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(topic.topic.0.clone()))
                .with_partitions(partitions),
        );
    }
    FetchResponse::default().with_responses(responses)
}
