//! The work on one partition, run on its owner shard: append, read, list offsets, delete
//! records, wait for data, retention.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use storage::{RetentionOutcome, RetentionPolicy, StorageError, ValidatedBatches};

use super::{
    Appended, Partition, PartitionRead, ACKS_ALL, DELETE_RECORDS_TO_HIGH_WATERMARK, MAX_TIMESTAMP,
};
use crate::clock::now_ms;
use crate::cluster::topic_config::TopicConfig;
use crate::errors::storage_error;
use crate::producers::{BatchIdentity, Verdict};

impl Partition {
    /// Appends one produced batch and answers once it is as durable as `acks` (or the topic's
    /// `flush.messages`) asks.
    pub async fn append(
        &self,
        batches: ValidatedBatches,
        acks: i16,
    ) -> Result<Appended, ResponseError> {
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
            let verdict = self
                .producers
                .borrow_mut()
                .check_and_reserve(&identity, now_ms())?;
            match verdict {
                Verdict::Append => {}
                Verdict::DuplicateInFlight => return Err(ResponseError::DuplicateSequenceNumber),
                Verdict::Duplicate { first_offset } => {
                    let last_offset = first_offset + i64::from(identity.last_offset_delta);
                    return self.finish(first_offset, last_offset, acks).await;
                }
            }
        }
        // No await between the check above and this call: the append draws its place in the
        // log's queue in the same order the producer state saw the batch.
        let batch_bytes = batches.len_bytes() as u64;
        let batches = batches.with_leader_epoch(self.leader_epoch.get());
        match self.log.append(batches).await {
            Ok(info) => {
                // One replica: an appended record is committed, and consumers see it from now.
                self.log.advance_high_watermark(info.last_offset + 1);
                if identity.is_idempotent() {
                    (self.producers.borrow_mut()).complete(&identity, info.base_offset);
                }
                self.maybe_snapshot(batch_bytes);
                let must_sync = self.flush.get().append_must_sync(self.unsynced_records());
                let acks = if must_sync { ACKS_ALL } else { acks };
                self.finish(info.base_offset, info.last_offset, acks).await
            }
            Err(e) => {
                if identity.is_idempotent() {
                    (self.producers.borrow_mut()).abandon(identity.producer_id);
                }
                Err(storage_error(&e))
            }
        }
    }

    /// Reads up to `max_bytes` from `offset`, with the bounds read before the data; the data
    /// stops at this high watermark, read in the same step (no await between).
    pub async fn read(&self, offset: i64, max_bytes: usize) -> PartitionRead {
        let high_watermark = self.log.high_watermark();
        let log_start_offset = self.log.log_start_offset();
        let (error, records) = match self.log.read_committed(offset, max_bytes).await {
            Ok(records) => (None, records),
            Err(e) => (Some(storage_error(&e)), Bytes::new()),
        };
        PartitionRead {
            error,
            high_watermark,
            log_start_offset,
            records,
        }
    }

    /// Log start or high watermark (`-2` earliest, `-1` latest), the first record with the largest
    /// timestamp (`-3`, `-1`/`-1` when empty), or the first offset at or after a timestamp, with
    /// that record's timestamp (`-1` for the start and end).
    pub async fn list_offset(&self, timestamp: i64) -> Result<(i64, i64), ResponseError> {
        let log = &self.log;
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

    /// Kafka's DeleteRecords: moves the log start offset to `offset` (-1: the high watermark)
    /// and returns the new log start (the partition's low watermark). An offset past the high
    /// watermark, or negative other than -1, is OFFSET_OUT_OF_RANGE.
    pub async fn delete_records(&self, offset: i64) -> Result<i64, ResponseError> {
        let offset = match offset {
            DELETE_RECORDS_TO_HIGH_WATERMARK => self.log.high_watermark(),
            offset if offset < 0 => return Err(ResponseError::OffsetOutOfRange),
            offset => offset,
        };
        (self.log.delete_records(offset).await).map_err(|e| storage_error(&e))
    }

    /// Deletes expired segments by the topic's `retention.ms` and `retention.bytes`; `None` if
    /// neither applies (no `delete` in `cleanup.policy`, or both negative).
    pub async fn apply_retention(
        &self,
        config: &TopicConfig,
    ) -> Option<Result<RetentionOutcome, StorageError>> {
        let policy = RetentionPolicy {
            retention_ms: config.retention_ms,
            retention_bytes: config.retention_bytes,
            now_ms: now_ms(),
        };
        if !config.cleanup_delete || (policy.retention_ms < 0 && policy.retention_bytes < 0) {
            return None;
        }
        Some(self.log.apply_retention(policy).await)
    }

    /// Writes a producer-state snapshot once enough was appended and no append is in flight
    /// (so the state matches the log end exactly).
    pub(super) fn maybe_snapshot(&self, appended_bytes: u64) {
        let total = self.appended_since_snapshot.get() + appended_bytes;
        self.appended_since_snapshot.set(total);
        let producers = self.producers.borrow();
        if total < self.snapshot_interval_bytes || producers.has_in_flight() {
            return;
        }
        match producers.write_snapshot(&self.dir, self.log.log_end_offset()) {
            Ok(()) => self.appended_since_snapshot.set(0),
            Err(e) => log::warn!(
                "producer-state snapshot in {} failed: {e}",
                self.dir.display()
            ),
        }
    }

    /// Answers an append once it is as durable as `acks` asks.
    async fn finish(
        &self,
        base_offset: i64,
        last_offset: i64,
        acks: i16,
    ) -> Result<Appended, ResponseError> {
        if acks == ACKS_ALL {
            (self.log.sync_to(last_offset).await).map_err(|e| storage_error(&e))?;
        }
        Ok(Appended {
            base_offset,
            log_start_offset: self.log.log_start_offset(),
        })
    }
}

/// Completes when any of `partitions` (each with its fetch offset) has data past that offset,
/// or at the deadline; at once if one is `None` (gone since the request was routed).
pub async fn wait_for_any(partitions: Vec<(Option<Rc<Partition>>, i64)>, deadline: Instant) {
    let mut wakeups: Vec<Pin<Box<dyn Future<Output = ()>>>> =
        Vec::with_capacity(partitions.len() + 1);
    for (partition, offset) in &partitions {
        let Some(partition) = partition else {
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
