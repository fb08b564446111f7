//! Partition work that runs on the partition's owner shard.
//!
//! Handlers reach these through [`Shard::call`]; every argument and result is owned and `Send`
//! so it can cross from the shard that holds the connection.
//!
//! Invariant: only the owner shard appends to, reads from or waits on a partition's log.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use storage::{RetentionPolicy, StorageError, ValidatedBatches};

use crate::errors::storage_error;
use crate::flush::{unsynced_records, FlushPolicy};
use crate::groups::store::OFFSETS_TOPIC;
use crate::producers::{BatchIdentity, Verdict};
use crate::shard::{Partition, Shard};

/// DeleteRecords offset meaning "up to the high watermark".
pub const DELETE_RECORDS_TO_HIGH_WATERMARK: i64 = -1;

/// Acks value meaning "answer once the append is durable" (acks=all).
pub const ACKS_ALL: i16 = -1;
/// ListOffsets' timestamp asking for the record with the largest timestamp (KIP-734, v7+).
pub const MAX_TIMESTAMP: i64 = -3;

/// Result of an append on the owner shard.
#[derive(Debug, Clone, Copy)]
pub struct Appended {
    pub base_offset: i64,
    pub log_start_offset: i64,
}

/// One partition to read, with its place in the request.
#[derive(Debug, Clone)]
pub struct ReadSpec {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: usize,
}

/// What a fetch learns about one partition.
#[derive(Debug, Clone, Default)]
pub struct PartitionRead {
    pub error: Option<ResponseError>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: Bytes,
}

impl Shard {
    // Long: the producer-state check and the append must run with no await between
    // them, and their outcomes settle that same reservation.
    pub async fn append_local(
        self: Rc<Self>,
        topic: String,
        partition: i32,
        batches: ValidatedBatches,
        acks: i16,
    ) -> Result<Appended, ResponseError> {
        let partition = self
            .partition(&topic, partition)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        // Kafka requires exactly one batch per partition from Produce v3 on; it also keeps the
        // producer-state bookkeeping one batch per append.
        if batches.batch_count() != 1 {
            return Err(ResponseError::InvalidRecord);
        }
        let identity = BatchIdentity::parse(batches.bytes());
        if identity.transactional {
            return Err(ResponseError::TransactionalIdAuthorizationFailed);
        }
        if identity.is_idempotent() {
            let verdict = partition
                .producers
                .borrow_mut()
                .check_and_reserve(&identity, now_ms())?;
            match verdict {
                Verdict::Append => {}
                Verdict::DuplicateInFlight => return Err(ResponseError::DuplicateSequenceNumber),
                Verdict::Duplicate { first_offset } => {
                    let last_offset = first_offset + i64::from(identity.last_offset_delta);
                    return finish(&partition, first_offset, last_offset, acks).await;
                }
            }
        }
        // No await between the check above and this call: the append draws its place in the
        // log's queue in the same order the producer state saw the batch.
        let batch_bytes = batches.len_bytes() as u64;
        let batches = batches.with_leader_epoch(partition.leader_epoch);
        let appended = partition.log.append(batches).await;
        match appended {
            Ok(info) => {
                // One replica: an appended record is committed, and consumers see it from now.
                partition.log.advance_high_watermark(info.last_offset + 1);
                if identity.is_idempotent() {
                    partition
                        .producers
                        .borrow_mut()
                        .complete(&identity, info.base_offset);
                }
                maybe_snapshot(
                    &partition,
                    batch_bytes,
                    self.config.producer_snapshot_interval_bytes,
                );

                let flush = self
                    .metadata()
                    .topics
                    .get(&topic)
                    .map(|meta| FlushPolicy::of(&meta.config))
                    .filter(|policy| policy.append_must_sync(unsynced_records(&partition)));
                let acks = if flush.is_some() { ACKS_ALL } else { acks };
                finish(&partition, info.base_offset, info.last_offset, acks).await
            }
            Err(e) => {
                if identity.is_idempotent() {
                    partition
                        .producers
                        .borrow_mut()
                        .abandon(identity.producer_id);
                }
                Err(storage_error(&e))
            }
        }
    }

    pub async fn read_local(self: Rc<Self>, specs: Vec<ReadSpec>) -> Vec<PartitionRead> {
        let mut reads = Vec::with_capacity(specs.len());
        for spec in specs {
            reads.push(self.read_one(&spec).await);
        }
        reads
    }

    async fn read_one(&self, spec: &ReadSpec) -> PartitionRead {
        let Some(partition) = self.partition(&spec.topic, spec.partition) else {
            return PartitionRead {
                error: Some(ResponseError::UnknownTopicOrPartition),
                high_watermark: -1,
                log_start_offset: -1,
                records: Bytes::new(),
            };
        };
        // Read the bounds before the data; the data stops at this high watermark, read in the
        // same step (no await between).
        let log = &partition.log;
        let high_watermark = log.high_watermark();
        let log_start_offset = log.log_start_offset();
        match log.read_committed(spec.offset, spec.max_bytes).await {
            Ok(records) => PartitionRead {
                error: None,
                high_watermark,
                log_start_offset,
                records,
            },
            Err(e) => PartitionRead {
                error: Some(storage_error(&e)),
                high_watermark,
                log_start_offset,
                records: Bytes::new(),
            },
        }
    }

    /// Log start or high watermark (`-2` earliest, `-1` latest), the first record with the largest
    /// timestamp (`-3`, `-1`/`-1` when empty), or the first offset at or after a timestamp, with
    /// that record's timestamp (`-1` for the start and end).
    pub async fn list_offset_local(
        self: Rc<Self>,
        topic: String,
        partition: i32,
        timestamp: i64,
    ) -> Result<(i64, i64), ResponseError> {
        let partition = self
            .partition(&topic, partition)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        let log = &partition.log;
        match timestamp {
            -2 => Ok((log.log_start_offset(), -1)),
            -1 => Ok((log.high_watermark(), -1)),
            MAX_TIMESTAMP => Ok(log
                .offset_for_max_timestamp()
                .await
                .map_err(|e| storage_error(&e))?
                .unwrap_or((-1, -1))),
            ts if ts < 0 => Err(ResponseError::UnsupportedVersion),
            ts => match log
                .offset_for_timestamp(ts)
                .await
                .map_err(|e| storage_error(&e))?
            {
                Some((offset, found_ts)) => Ok((offset, found_ts)),
                None => Ok((-1, -1)),
            },
        }
    }

    /// Kafka's DeleteRecords on one partition: moves the log start offset to `offset` (-1: the
    /// high watermark) and returns the new log start (the partition's low watermark). An offset
    /// past the high watermark, or negative other than -1, is OFFSET_OUT_OF_RANGE.
    pub async fn delete_records_local(
        self: Rc<Self>,
        topic: String,
        partition: i32,
        offset: i64,
    ) -> Result<i64, ResponseError> {
        if topic == OFFSETS_TOPIC {
            // Group state is rebuilt from this log's whole history; deleting a prefix would
            // silently drop committed offsets.
            return Err(ResponseError::InvalidTopicException);
        }
        let partition = self
            .partition(&topic, partition)
            .ok_or(ResponseError::UnknownTopicOrPartition)?;
        let log = &partition.log;
        let offset = match offset {
            DELETE_RECORDS_TO_HIGH_WATERMARK => log.high_watermark(),
            offset if offset < 0 => return Err(ResponseError::OffsetOutOfRange),
            offset => offset,
        };
        log.delete_records(offset)
            .await
            .map_err(|e| storage_error(&e))
    }

    /// Completes when any of the partitions has data past its offset, or at the deadline.
    pub async fn wait_local(self: Rc<Self>, waits: Vec<(String, i32, i64)>, deadline: Instant) {
        let mut wakeups: Vec<Pin<Box<dyn Future<Output = ()>>>> =
            Vec::with_capacity(waits.len() + 1);
        for (topic, partition, offset) in &waits {
            let Some(partition) = self.partition(topic, *partition) else {
                return;
            };
            let log = &partition.log;
            // Listen before checking, so an append between the check and the wait is not missed.
            let appended = log.wait_for_append();
            if log.high_watermark() > *offset {
                return;
            }
            wakeups.push(Box::pin(appended));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        wakeups.push(Box::pin(glommio::timer::sleep(remaining)));
        first_of(wakeups).await;
    }
}

/// Deletes the expired segments of every partition this shard owns, by its topic's
/// `retention.ms` and `retention.bytes`. Topics whose `cleanup.policy` lacks `delete` are
/// skipped, as in Kafka, and so is `__consumer_offsets` (compact only): it must keep its whole
/// history until compaction exists. Errors are logged per partition and the others go on.
pub async fn apply_retention_local(shard: &Shard) {
    for (topic, partition) in shard.owned_partitions() {
        if topic != OFFSETS_TOPIC {
            apply_partition_retention(shard, &topic, partition).await;
        }
        glommio::yield_if_needed().await;
    }
}

async fn apply_partition_retention(shard: &Shard, topic: &str, partition: i32) {
    let metadata = shard.metadata();
    // Deleted since the pass started: nothing is left to retain.
    let (Some(meta), Some(state)) = (
        metadata.topics.get(topic),
        shard.partition(topic, partition),
    ) else {
        return;
    };
    if !meta.config.cleanup_delete {
        return;
    }
    let policy = RetentionPolicy {
        retention_ms: meta.config.retention_ms,
        retention_bytes: meta.config.retention_bytes,
        now_ms: now_ms(),
    };
    if policy.retention_ms < 0 && policy.retention_bytes < 0 {
        return;
    }
    match state.log.apply_retention(policy).await {
        Ok(outcome) if outcome.segments_deleted > 0 => log::info!(
            "shard {}: retention deleted {} segment(s) of {topic}-{partition}; log start offset now {}",
            shard.id,
            outcome.segments_deleted,
            outcome.log_start_offset
        ),
        Ok(_) => {}
        // The topic is being deleted and its log closed.
        Err(StorageError::Closed) => {}
        Err(e) => log::error!(
            "shard {}: retention of {topic}-{partition} failed: {e}",
            shard.id
        ),
    }
}

/// Writes a producer-state snapshot once enough was appended and no append is in flight (so the
/// state matches the log end exactly).
fn maybe_snapshot(partition: &Partition, appended_bytes: u64, interval_bytes: u64) {
    let total = partition.appended_since_snapshot.get() + appended_bytes;
    partition.appended_since_snapshot.set(total);
    let producers = partition.producers.borrow();
    if total < interval_bytes || producers.has_in_flight() {
        return;
    }
    match producers.write_snapshot(&partition.dir, partition.log.log_end_offset()) {
        Ok(()) => partition.appended_since_snapshot.set(0),
        Err(e) => log::warn!(
            "producer-state snapshot in {} failed: {e}",
            partition.dir.display()
        ),
    }
}

/// Answers an append once it is as durable as `acks` asks.
async fn finish(
    partition: &Partition,
    base_offset: i64,
    last_offset: i64,
    acks: i16,
) -> Result<Appended, ResponseError> {
    if acks == ACKS_ALL {
        partition
            .log
            .sync_to(last_offset)
            .await
            .map_err(|e| storage_error(&e))?;
    }
    Ok(Appended {
        base_offset,
        log_start_offset: partition.log.log_start_offset(),
    })
}

/// Wall-clock milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Completes when the first of `futures` does.
pub async fn first_of(mut futures: Vec<Pin<Box<dyn Future<Output = ()>>>>) {
    std::future::poll_fn(|cx| {
        if futures.iter_mut().any(|f| f.as_mut().poll(cx).is_ready()) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await
}
