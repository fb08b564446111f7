//! Fetch: read stored batches, long-polling until enough data or the deadline.
//!
//! Versions 4–12 (topics by name; no fetch sessions: every response carries session id 0, which
//! tells clients to send full fetches). Partitions are read on their owner shards in parallel and
//! the stored batch bytes are returned as they are, never decoded. A follower's fetch, or a
//! consumer's before v11, of a partition another broker leads gets NOT_LEADER_OR_FOLLOWER (with
//! the current leader from v12) and does not wait. From v11 on (KIP-392) any replica serves a
//! consumer, a follower up to its own high watermark; with `--replica-selector-class` rack-aware,
//! a leader answers a consumer that names its rack with `preferred_read_replica`, a live in-sync
//! replica in that rack (the leader when it is there itself), and no records.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};

use super::RequestContext;
use crate::cluster::routing::{leader_route, replica_route, NotHere};
use crate::errors::code;
use crate::partition::{first_of, PartitionRead, ReadSpec, WaitFor, WaitSpec};
use crate::shard::message::{Reply, Request};
use crate::shard::Shard;

pub const VERSION_MIN: i16 = 4;
pub const VERSION_MAX: i16 = 12;
/// The first Fetch version whose partitions carry the current leader (KIP-951's hint).
const CURRENT_LEADER_VERSION_MIN: i16 = 12;
/// The first Fetch version with the consumer's rack and `preferred_read_replica` (KIP-392).
const RACK_VERSION_MIN: i16 = 11;

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
    let response_bytes_max = request.max_bytes.clamp(0, FETCH_RESPONSE_BYTES_MAX as i32) as usize;
    let mut specs = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            // No partition can contribute more than the whole response may hold.
            specs.push(ReadSpec {
                topic: topic.topic.0.to_string(),
                partition: partition.partition,
                offset: partition.fetch_offset,
                max_bytes: (partition.partition_max_bytes.max(0) as usize).min(response_bytes_max),
                current_leader_epoch: partition.current_leader_epoch,
            });
        }
    }
    let wait = Duration::from_millis((request.max_wait_ms.max(0) as u64).min(FETCH_WAIT_MS_MAX));
    let deadline = Instant::now() + wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let read_as = ReadAs::of(ctx, &request);
    let from_any_replica = read_as.replica_id == -1 && ctx.version >= RACK_VERSION_MIN;
    // The common case, every partition served here, reads `specs` as they are; only a fetch
    // with a refused partition builds the list of the served ones and merges the refusals back.
    let refusals = route(ctx, &specs, from_any_replica);
    let served = match &refusals {
        None => specs,
        Some(refusals) => (specs.into_iter().zip(refusals))
            .filter(|(_, refused)| refused.is_none())
            .map(|(spec, _)| spec)
            .collect(),
    };
    let mut reads = read_all(&ctx.shard, &served, &read_as).await;
    if !enough(&reads, min_bytes) && refusals.is_none() && Instant::now() < deadline {
        let wait_for = match read_as.replica_id {
            -1 => WaitFor::HighWatermark,
            _ => WaitFor::LogEnd,
        };
        wait_any(&ctx.shard, &served, &reads, wait_for, deadline).await;
        reads = read_all(&ctx.shard, &served, &read_as).await;
    }
    let reads = match &refusals {
        None => reads,
        Some(refusals) => merge(reads, refusals),
    };
    let answered = ctx.shard.fetches_answered.get();
    ctx.shard.fetches_answered.set(answered.wrapping_add(1));
    let first = if reads.is_empty() {
        0
    } else {
        (answered % reads.len() as u64) as usize
    };
    respond(
        ctx.version,
        &request,
        fit(reads, first, response_bytes_max),
        refusals.as_deref(),
    )
}

/// Why each spec is not served here (None: it is), or None when every spec is served here, the
/// common case, which allocates nothing. Only a partition's leader serves a follower's fetch
/// (replica id >= 0), which is read up to the log end and records its position in the leader's
/// replica table (`partition/replicas.rs`), and a consumer's unless it may read
/// `from_any_replica` (Fetch v11+), when any replica serves it.
fn route(
    ctx: &RequestContext,
    specs: &[ReadSpec],
    from_any_replica: bool,
) -> Option<Vec<Option<NotHere>>> {
    let snapshot = ctx.shard.metadata();
    let node = ctx.shard.config.node_id;
    let refused = |spec: &ReadSpec| match from_any_replica {
        true => replica_route(&snapshot, &spec.topic, spec.partition, node).err(),
        false => leader_route(&snapshot, &spec.topic, spec.partition, node).err(),
    };
    if specs.iter().all(|spec| refused(spec).is_none()) {
        return None;
    }
    Some(specs.iter().map(refused).collect())
}

/// The reads of the served specs, in order, with an error read in the place of each refused one.
fn merge(reads: Vec<PartitionRead>, refusals: &[Option<NotHere>]) -> Vec<PartitionRead> {
    let mut reads = reads.into_iter();
    let merged = (refusals.iter())
        .map(|refused| match refused {
            Some(refused) => PartitionRead::refused(refused.error),
            None => reads.next().expect("one read per served spec"),
        })
        .collect();
    assert!(reads.next().is_none(), "every read is placed");
    merged
}

/// Trims the reads to whole batches within `response_bytes_max` in total, filling partitions
/// in request order starting at `first` and wrapping around (KIP-74). The first non-empty
/// partition keeps at least its first batch, however large, so that a consumer can progress
/// past a batch larger than its limits.
fn fit(
    mut reads: Vec<PartitionRead>,
    first: usize,
    response_bytes_max: usize,
) -> Vec<PartitionRead> {
    let count = reads.len();
    let mut total_bytes = 0usize;
    for index in (0..count).map(|i| (first + i) % count) {
        let read = &mut reads[index];
        let room = response_bytes_max.saturating_sub(total_bytes);
        let kept = batches_within(&read.records, room, total_bytes == 0);
        read.records = read.records.slice(..kept);
        total_bytes += kept;
    }
    reads
}

/// Length of the longest run of whole batches at the start of `records` that fits in
/// `bytes_max`; with `at_least_one`, never less than the first batch.
fn batches_within(records: &Bytes, bytes_max: usize, at_least_one: bool) -> usize {
    // A batch starts with baseOffset (8 bytes) and batchLength (4 bytes): the bytes that follow.
    const BATCH_LENGTH_END: usize = 12;
    let mut kept = 0usize;
    while records.len() - kept >= BATCH_LENGTH_END {
        let length_bytes: [u8; 4] = records[kept + 8..kept + BATCH_LENGTH_END]
            .try_into()
            .expect("four bytes");
        let batch_bytes = BATCH_LENGTH_END + i32::from_be_bytes(length_bytes) as usize;
        assert!(
            kept + batch_bytes <= records.len(),
            "storage returns whole batches"
        );
        if kept + batch_bytes > bytes_max && !(at_least_one && kept == 0) {
            break;
        }
        kept += batch_bytes;
    }
    kept
}

/// Whether the reads answer the fetch without waiting: enough bytes, an error, a consumer sent
/// to another replica (which Kafka also answers at once), or a follower whose fetch moved the
/// high watermark (it learns it only from this answer).
fn enough(reads: &[PartitionRead], min_bytes: usize) -> bool {
    let bytes: usize = reads.iter().map(|r| r.records.len()).sum();
    bytes >= min_bytes.max(1)
        || (reads.iter()).any(|r| {
            r.error.is_some() || r.preferred_read_replica.is_some() || r.high_watermark_moved
        })
}

/// Who reads: a consumer (`replica_id` -1), with its rack when a leader may send it to a replica
/// there, or a follower.
struct ReadAs {
    replica_id: i32,
    client_rack: Option<String>,
}

impl ReadAs {
    fn of(ctx: &RequestContext, request: &FetchRequest) -> ReadAs {
        // A follower (replica id >= 0) reads up to the log end and waits for any new record.
        // Any id but a live broker's other than this one is a consumer's fetch (the owner shard
        // checks that it is a replica of each partition, `shard::dispatch`).
        let replica_id = request.replica_id.0;
        let replica_id = match replica_id >= 0
            && replica_id != ctx.shard.config.node_id
            && ctx.shard.metadata().is_live(replica_id)
        {
            true => replica_id,
            false => -1,
        };
        // The rack goes to the owner shard only when a leader may act on it.
        let client_rack = (replica_id == -1
            && ctx.version >= RACK_VERSION_MIN
            && ctx.shard.config.rack_aware_reads()
            && !request.rack_id.is_empty())
        .then(|| request.rack_id.to_string());
        ReadAs {
            replica_id,
            client_rack,
        }
    }
}

/// Reads every partition on its owner shard, all shards in parallel; results in `specs` order.
async fn read_all(shard: &Rc<Shard>, specs: &[ReadSpec], read_as: &ReadAs) -> Vec<PartitionRead> {
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
            let (replica_id, client_rack) = (read_as.replica_id, read_as.client_rack.clone());
            (
                indexes,
                glommio::spawn_local(async move {
                    let request = Request::Read {
                        specs: group,
                        replica_id,
                        client_rack,
                    };
                    match shard.call(owner, request).await {
                        Reply::Read(reads) => reads,
                        other => other.mismatch("Read"),
                    }
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

/// Waits until any partition gets data past its fetch offset (committed data, or any for a
/// follower), for a follower also until the high watermark passes the one `reads` answered (so
/// it learns it at once), or the deadline passes.
async fn wait_any(
    shard: &Rc<Shard>,
    specs: &[ReadSpec],
    reads: &[PartitionRead],
    wait_for: WaitFor,
    deadline: Instant,
) {
    let mut by_owner: BTreeMap<usize, Vec<WaitSpec>> = BTreeMap::new();
    for (spec, read) in specs.iter().zip(reads) {
        by_owner
            .entry(shard.owner(&spec.topic, spec.partition.max(0)))
            .or_default()
            .push(WaitSpec {
                topic: spec.topic.clone(),
                partition: spec.partition,
                offset: spec.offset,
                high_watermark: read.high_watermark,
            });
    }
    let timeout = deadline.saturating_duration_since(Instant::now());
    let mut waits: Vec<Pin<Box<dyn Future<Output = ()>>>> = by_owner
        .into_iter()
        .map(|(owner, waits)| {
            let shard = shard.clone();
            Box::pin(async move {
                let request = Request::Wait {
                    waits,
                    wait_for,
                    timeout,
                };
                let reply = shard.call(owner, request).await;
                let Reply::Wait = reply else {
                    reply.mismatch("Wait")
                };
            }) as Pin<Box<dyn Future<Output = ()>>>
        })
        .collect();
    // The owners count `timeout` from when they receive the request; the deadline is this one.
    waits.push(Box::pin(glommio::timer::sleep(timeout)));
    first_of(waits).await;
}

/// Builds the response in request order from reads already trimmed by [`fit`]; a partition
/// refused for its leader carries the current leader from v12 on.
fn respond(
    version: i16,
    request: &FetchRequest,
    reads: Vec<PartitionRead>,
    refusals: Option<&[Option<NotHere>]>,
) -> FetchResponse {
    let mut reads = reads.into_iter();
    let mut refusals = refusals.map(<[_]>::iter);
    let mut responses = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in &topic.partitions {
            let read = reads.next().expect("one read per requested partition");
            let refused = match &mut refusals {
                Some(refusals) => *refusals.next().expect("one route per requested partition"),
                None => None,
            };
            let preferred_read_replica = match version >= RACK_VERSION_MIN {
                true => read.preferred_read_replica.unwrap_or(-1),
                false => -1,
            };
            let data = PartitionData::default()
                .with_partition_index(partition.partition)
                .with_preferred_read_replica(BrokerId(preferred_read_replica))
                .with_error_code(code(read.error))
                .with_high_watermark(read.high_watermark)
                .with_last_stable_offset(read.high_watermark)
                .with_log_start_offset(read.log_start_offset)
                .with_records(Some(read.records));
            partitions.push(match refused {
                Some(hint) if version >= CURRENT_LEADER_VERSION_MIN => data.with_current_leader(
                    LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(hint.leader_id))
                        .with_leader_epoch(hint.leader_epoch),
                ),
                _ => data,
            });
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(TopicName(topic.topic.0.clone()))
                .with_partitions(partitions),
        );
    }
    FetchResponse::default().with_responses(responses)
}
