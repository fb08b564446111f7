//! The work on one partition, run on its owner shard: append, read, list offsets, delete
//! records, wait for data, retention.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use storage::{RetentionOutcome, RetentionPolicy, StorageError, ValidatedBatches};

use super::{
    Appended, IsrChange, Partition, PartitionRead, Role, ACKS_ALL,
    DELETE_RECORDS_TO_HIGH_WATERMARK, MAX_TIMESTAMP,
};
use crate::clock::now_ms;
use crate::cluster::topic_config::TopicConfig;
use crate::errors::storage_error;
use crate::producers::{BatchIdentity, Verdict};

/// What an acks=all append waits for besides its own fdatasync: the high watermark passing
/// its records, while the ISR holds at least `min_insync_replicas`, for at most `timeout`.
#[derive(Debug, Clone, Copy, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Replication {
    /// The topic's `min.insync.replicas` (else the broker's); read for acks=all only.
    pub min_insync_replicas: i32,
    /// The Produce request's `timeout_ms`, bounded by the handler.
    pub timeout: Duration,
}

impl Replication {
    /// What acks=0 and acks=1 appends carry as `min_insync_replicas`: they never read it, so
    /// the handler does not look the topic's value up for them.
    pub const MIN_INSYNC_REPLICAS_UNUSED: i32 = 1;
}

impl Partition {
    /// Appends one produced batch as the partition's leader and answers once it is as durable
    /// as `acks` (or the topic's `flush.messages`) asks; acks=all also waits until every ISR
    /// member holds it (the high watermark passed it).
    pub async fn append(
        &self,
        batches: ValidatedBatches,
        acks: i16,
        replication: Replication,
    ) -> Result<Appended, ResponseError> {
        // Kafka requires exactly one batch per partition from Produce v3 on; it also keeps the
        // producer-state bookkeeping one batch per append.
        if batches.batch_count() != 1 {
            return Err(ResponseError::InvalidRecord);
        }
        // A broker that just became leader may still be writing batches it fetched as a
        // follower: its producer state must know them before a retry is checked against it.
        self.replicated_appends_settled().await;
        // Only acks=all waits for the ISR, so only it reads the clock for a deadline.
        let wait = Wait {
            leader_epoch: self.leader_epoch.get(),
            replication: (acks == ACKS_ALL).then(|| {
                let now = Instant::now();
                let deadline = now.checked_add(replication.timeout).unwrap_or(now);
                (replication.min_insync_replicas, deadline)
            }),
        };
        self.check_leader(acks, replication.min_insync_replicas)?;
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
                    return self
                        .finish(first_offset, last_offset, acks == ACKS_ALL, wait)
                        .await;
                }
            }
        }
        // No await between the check above and this call: the append draws its place in the
        // log's queue in the same order the producer state saw the batch.
        let batch_bytes = batches.len_bytes() as u64;
        let batches = batches.with_leader_epoch(wait.leader_epoch);
        match self.log.append(batches).await {
            Ok(info) => {
                // With the ISR {leader} (one replica) the record is committed now, and
                // consumers see it from here on.
                self.appended_as_leader();
                if identity.is_idempotent() {
                    (self.producers.borrow_mut()).complete(&identity, info.base_offset);
                }
                self.maybe_snapshot(batch_bytes);
                let must_sync = self.flush.get().append_must_sync(self.unsynced_records());
                let sync = must_sync || acks == ACKS_ALL;
                self.finish(info.base_offset, info.last_offset, sync, wait)
                    .await
            }
            Err(e) => {
                if identity.is_idempotent() {
                    (self.producers.borrow_mut()).abandon(identity.producer_id);
                }
                Err(storage_error(&e))
            }
        }
    }

    /// Refuses an append unless this broker leads the partition, and an acks=all append while
    /// the ISR is smaller than `min_insync_replicas` (nothing is appended then).
    fn check_leader(&self, acks: i16, min_insync_replicas: i32) -> Result<(), ResponseError> {
        let replicas = self.replicas.borrow();
        if !replicas.is_leader() || self.is_cut_off() {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        if acks == ACKS_ALL && (replicas.isr().len() as i64) < i64::from(min_insync_replicas) {
            return Err(ResponseError::NotEnoughReplicas);
        }
        Ok(())
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
            preferred_read_replica: None,
            high_watermark_moved: false,
        }
    }

    /// A leader's answer to a consumer that should fetch from `replica` instead (KIP-392): the
    /// bounds, no records.
    pub fn redirect(&self, replica: i32) -> PartitionRead {
        PartitionRead {
            error: None,
            high_watermark: self.log.high_watermark(),
            log_start_offset: self.log.log_start_offset(),
            records: Bytes::new(),
            preferred_read_replica: Some(replica),
            high_watermark_moved: false,
        }
    }

    /// A follower's fetch at this leader: records the follower's position (its fetch offset is
    /// its log end), lets the high watermark follow, and reads up to the log end, not the high
    /// watermark. Returns the ISR change to propose if the follower should now join the ISR.
    /// The caller checked that `follower` is a live broker among the partition's replicas.
    /// `now_ms` is the time of the fetch.
    pub async fn read_for_follower(
        &self,
        follower: i32,
        offset: i64,
        max_bytes: usize,
        now_ms: i64,
    ) -> (PartitionRead, Option<IsrChange>) {
        let log_end_offset = self.log.log_end_offset();
        let in_range = offset >= self.log.log_start_offset() && offset <= log_end_offset;
        let recorded = {
            let mut replicas = self.replicas.borrow_mut();
            replicas.role() == Role::Leader
                && !self.is_cut_off()
                && (!in_range || replicas.record_fetch(follower, offset, log_end_offset, now_ms))
        };
        if !recorded {
            return (
                PartitionRead::refused(ResponseError::NotLeaderOrFollower),
                None,
            );
        }
        let high_watermark_before = self.log.high_watermark();
        self.advance_high_watermark();
        let high_watermark = self.log.high_watermark();
        let change = {
            let mut replicas = self.replicas.borrow_mut();
            (replicas.expansion(follower, high_watermark)).map(|isr| replicas.start_change(isr))
        };
        let log_start_offset = self.log.log_start_offset();
        let (error, records) = match self.log.read(offset, max_bytes).await {
            Ok(records) => (None, records),
            Err(e) => (Some(storage_error(&e)), Bytes::new()),
        };
        let read = PartitionRead {
            error,
            high_watermark,
            log_start_offset,
            records,
            preferred_read_replica: None,
            high_watermark_moved: high_watermark > high_watermark_before,
        };
        (read, change)
    }

    /// FENCED_LEADER_EPOCH for a request that names an older leader epoch than the partition's,
    /// UNKNOWN_LEADER_EPOCH for a newer one; -1 (or less) asks for no check (KIP-320).
    pub fn check_leader_epoch(&self, current_leader_epoch: i32) -> Result<(), ResponseError> {
        let epoch = self.leader_epoch.get();
        match current_leader_epoch {
            asked if asked < 0 || asked == epoch => Ok(()),
            asked if asked < epoch => Err(ResponseError::FencedLeaderEpoch),
            _ => Err(ResponseError::UnknownLeaderEpoch),
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
    /// watermark, or negative other than -1, is OFFSET_OUT_OF_RANGE; a partition this broker
    /// does not lead (or leads cut off from its quorum) answers NOT_LEADER_OR_FOLLOWER: the
    /// handler routes by the snapshot, and the shard's role may have changed since. Followers
    /// move their log start up to the leader's as they fetch (`follow_log_start`), so the
    /// answer waits for no other replica, and a dead one neither delays nor fails it.
    pub async fn delete_records(&self, offset: i64) -> Result<i64, ResponseError> {
        if !self.replicas.borrow().is_leader() || self.is_cut_off() {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        let offset = match offset {
            DELETE_RECORDS_TO_HIGH_WATERMARK => self.log.high_watermark(),
            offset if offset < 0 || offset > self.log.high_watermark() => {
                return Err(ResponseError::OffsetOutOfRange)
            }
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

    /// Answers an append once it is as durable as asked: fdatasync'd if `sync`, and, for
    /// acks=all, held by every ISR member.
    async fn finish(
        &self,
        base_offset: i64,
        last_offset: i64,
        sync: bool,
        wait: Wait,
    ) -> Result<Appended, ResponseError> {
        if sync {
            (self.log.sync_to(last_offset).await).map_err(|e| storage_error(&e))?;
        }
        if let Some((min_insync_replicas, deadline)) = wait.replication {
            self.wait_for_replication(
                last_offset,
                wait.leader_epoch,
                min_insync_replicas,
                deadline,
            )
            .await?;
        }
        Ok(Appended {
            base_offset,
            log_start_offset: self.log.log_start_offset(),
        })
    }

    /// Waits until the high watermark passes `last_offset` (Kafka's delayed produce): then
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR is smaller than `min_insync_replicas` (it
    /// shrank meanwhile), else done; NOT_LEADER_OR_FOLLOWER once this broker no longer leads
    /// at `leader_epoch`; REQUEST_TIMED_OUT at the deadline. With the ISR {leader} the high
    /// watermark passed at the append, so this returns without waiting.
    pub async fn wait_for_replication(
        &self,
        last_offset: i64,
        leader_epoch: i32,
        min_insync_replicas: i32,
        deadline: Instant,
    ) -> Result<(), ResponseError> {
        loop {
            // Listen before checking, so a change between the check and the wait is not missed.
            let committed = self.log.wait_for_append();
            let reassigned = self.assignment_changed.listen();
            if let Some(outcome) =
                self.replication_outcome(last_offset, leader_epoch, min_insync_replicas)
            {
                return outcome;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ResponseError::RequestTimedOut);
            }
            first_of(vec![
                Box::pin(committed),
                Box::pin(reassigned),
                Box::pin(glommio::timer::sleep(remaining)),
            ])
            .await;
        }
    }
}

impl Partition {
    /// How an acks=all append of records up to `last_offset`, made at `leader_epoch`, ends as
    /// things stand: None while the high watermark has not passed it (and this broker still
    /// leads at that epoch); else its answer (see `wait_for_replication`).
    pub fn replication_outcome(
        &self,
        last_offset: i64,
        leader_epoch: i32,
        min_insync_replicas: i32,
    ) -> Option<Result<(), ResponseError>> {
        let replicas = self.replicas.borrow();
        let leads = replicas.is_leader() && !self.is_cut_off();
        if !leads || replicas.leader_epoch() != leader_epoch {
            return Some(Err(ResponseError::NotLeaderOrFollower));
        }
        if self.log.high_watermark() <= last_offset {
            return None;
        }
        if (replicas.isr().len() as i64) < i64::from(min_insync_replicas) {
            return Some(Err(ResponseError::NotEnoughReplicasAfterAppend));
        }
        Some(Ok(()))
    }
}

/// What an append waits for once it is stored: the leader epoch it was appended under and,
/// for acks=all, the ISR size it needs and its deadline.
#[derive(Debug, Clone, Copy)]
struct Wait {
    leader_epoch: i32,
    replication: Option<(i32, Instant)>,
}

/// What a long poll waits for: a consumer for committed records (the high watermark), a
/// follower for any record (the log end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum WaitFor {
    HighWatermark,
    LogEnd,
}

/// Completes when any of `partitions` (each with its fetch offset and the high watermark the
/// fetch answered) has data past that offset, for a follower also when the high watermark moved
/// past the answered one, or at the deadline; at once if one is `None` (gone since the request
/// was routed).
pub async fn wait_for_any(
    partitions: Vec<(Option<Rc<Partition>>, i64, i64)>,
    wait_for: WaitFor,
    deadline: Instant,
) {
    let mut wakeups: Vec<Pin<Box<dyn Future<Output = ()>>>> =
        Vec::with_capacity(2 * partitions.len() + 1);
    for (partition, offset, high_watermark_answered) in &partitions {
        let Some(partition) = partition else {
            return;
        };
        let log = &partition.log;
        // Listen before checking, so an append between the check and the wait is not missed.
        match wait_for {
            WaitFor::HighWatermark => {
                let committed = log.wait_for_append();
                if log.high_watermark() > *offset {
                    return;
                }
                wakeups.push(Box::pin(committed));
            }
            WaitFor::LogEnd => {
                let appended = partition.log_end_grew.listen();
                let committed = log.wait_for_append();
                if log.log_end_offset() > *offset
                    || log.high_watermark() > *high_watermark_answered
                    || !partition.acts_as_leader()
                {
                    return;
                }
                wakeups.push(Box::pin(appended));
                wakeups.push(Box::pin(committed));
            }
        }
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
