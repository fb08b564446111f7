//! Retention and DeleteRecords: moving the log start and unlinking whole sealed segments in order.

use std::rc::Rc;

use super::{LogInner, PartitionLog};
use crate::fifo_lock::Ticket;
use crate::index_file;
use crate::log_start_checkpoint;
use crate::segment::Segment;
use crate::{RetentionOutcome, RetentionPolicy, StorageError};

impl PartitionLog {
    /// Deletes whole sealed segments, oldest first, that `policy` says are expired (see
    /// [`RetentionPolicy`]); the active segment is never deleted. The log start offset moves to
    /// the first remaining segment's base offset before any file is unlinked, so from then on a
    /// read below it fails with `OffsetOutOfRange`; a read already in flight on a deleted segment
    /// completes if it holds the open file, and otherwise (its file was closed, and unlinked
    /// before the read reopened it) fails with `OffsetOutOfRange` too, never with an I/O error. Files are unlinked oldest first, so after a crash the
    /// remaining files still chain densely and recovery starts the log at the first of them.
    ///
    /// Serialised with appends, and so with the rolls that change the segment list, by the
    /// append lock; runs in its own task like `append`, so dropping the future cannot strand the
    /// lock ticket.
    pub async fn apply_retention(
        &self,
        policy: RetentionPolicy,
    ) -> Result<RetentionOutcome, StorageError> {
        let inner = Rc::clone(&self.inner);
        let ticket = inner.append_lock.ticket();
        let task = glommio::spawn_local(async move { inner.apply_retention(ticket, policy).await })
            .detach();
        task.await.unwrap_or(Err(StorageError::Closed))
    }

    /// Moves the log start offset up to `offset` (Kafka's DeleteRecords): reads below it fail
    /// with `OffsetOutOfRange` from then on, and sealed segments wholly below it are deleted.
    /// The new start is checkpointed durably (see `log_start_checkpoint`) before it is
    /// published, so it survives a restart. An `offset` at or below the current start changes
    /// nothing; one past the log end is `OffsetOutOfRange`. Returns the log start offset after
    /// the call. Serialised with appends and retention like `apply_retention`.
    pub async fn delete_records(&self, offset: i64) -> Result<i64, StorageError> {
        let inner = Rc::clone(&self.inner);
        let ticket = inner.append_lock.ticket();
        let task = glommio::spawn_local(async move { inner.delete_records(ticket, offset).await })
            .detach();
        task.await.unwrap_or(Err(StorageError::Closed))
    }
}

impl LogInner {
    async fn apply_retention(
        &self,
        ticket: Ticket,
        policy: RetentionPolicy,
    ) -> Result<RetentionOutcome, StorageError> {
        let turn = self.append_lock.acquire(ticket).await;
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        let log_start_offset = self.log_start_offset.get();
        let expired = self.take_sealed_prefix(|segments| {
            expired_segment_count(segments, log_start_offset, &policy)
        });
        let log_start_offset = log_start_offset.max(self.segments.borrow()[0].base_offset);
        assert!(log_start_offset <= self.log_end_offset.get());
        self.log_start_offset.set(log_start_offset);
        self.raise_high_watermark_to_log_start();
        self.context
            .tail_cache()
            .drop_below(self.tail_cache_key, log_start_offset);
        let outcome = RetentionOutcome {
            segments_deleted: expired.len(),
            log_start_offset,
        };
        let removal = self.removal_lock.ticket();
        drop(turn);
        self.remove_segment_files(removal, expired).await?;
        Ok(outcome)
    }

    async fn delete_records(&self, ticket: Ticket, offset: i64) -> Result<i64, StorageError> {
        let turn = self.append_lock.acquire(ticket).await;
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        let log_start_offset = self.log_start_offset.get();
        let log_end_offset = self.log_end_offset.get();
        if offset < 0 || offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset,
                log_end_offset,
            });
        }
        if offset <= log_start_offset {
            return Ok(log_start_offset);
        }
        // Durable before it is published: a restart must not serve the deleted records again.
        log_start_checkpoint::write(&*self.io, &self.dir, offset).await?;
        self.log_start_offset.set(offset);
        self.raise_high_watermark_to_log_start();
        self.context
            .tail_cache()
            .drop_below(self.tail_cache_key, offset);
        let below = self.take_sealed_prefix(|segments| {
            let sealed = &segments[..segments.len() - 1];
            sealed
                .iter()
                .take_while(|s| s.next_offset() <= offset)
                .count()
        });
        let removal = self.removal_lock.ticket();
        drop(turn);
        self.remove_segment_files(removal, below).await?;
        Ok(offset)
    }

    /// Takes the first `count(segments)` segments out of the list; never the active one. No
    /// await between this and publishing the new log start: a read sees either the old list and
    /// start or the new ones.
    fn take_sealed_prefix(&self, count: impl FnOnce(&[Rc<Segment>]) -> usize) -> Vec<Rc<Segment>> {
        let mut segments = self.segments.borrow_mut();
        let count = count(&segments);
        assert!(
            count < segments.len(),
            "the active segment is never deleted"
        );
        segments.drain(..count).collect()
    }

    /// Unlinks segments taken out of the list (and their indexes), oldest first, in the order
    /// their removals were ticketed, after any left over by an earlier failed removal, so the
    /// files left on disk always chain densely. A removal that fails keeps the segments it did
    /// not unlink for the next one. Runs without the append lock: produce does not wait for it.
    async fn remove_segment_files(
        &self,
        ticket: Ticket,
        removed: Vec<Rc<Segment>>,
    ) -> Result<(), StorageError> {
        let _turn = self.removal_lock.acquire(ticket).await;
        let mut queue = std::mem::take(&mut *self.pending_removals.borrow_mut());
        queue.extend(removed);
        if queue.is_empty() {
            return Ok(());
        }
        let result = self.unlink_in_order(&mut queue).await;
        *self.pending_removals.borrow_mut() = queue;
        result
    }

    /// Unlinks `queue` from the front, leaving in it what was not unlinked.
    pub(super) async fn unlink_in_order(
        &self,
        queue: &mut Vec<Rc<Segment>>,
    ) -> Result<(), StorageError> {
        // A segment created by a roll must be durable in the directory before older ones go:
        // otherwise a crash could keep the unlinks and lose the creation, and the log would
        // come back without its newest segment, or empty at offset 0.
        if self.directory_sync_needed.replace(false) {
            if let Err(error) = self.io.sync_dir(&self.dir).await {
                self.directory_sync_needed.set(true);
                return Err(error.into());
            }
        }
        while let Some(segment) = queue.first().cloned() {
            segment.open_file().await?.remove().await?;
            queue.remove(0);
            // The index is derived: one left behind by a failure here is removed at open.
            index_file::remove_if_exists(&index_file::index_path(&segment.path))?;
            // Only a concurrent read or sync holds the segment otherwise; the file then closes
            // when the last reference drops.
            if let Ok(segment) = Rc::try_unwrap(segment) {
                let file = segment.take_file();
                drop(segment);
                if let Some(file) = file {
                    file.close().await?;
                }
            }
        }
        Ok(self.io.sync_dir(&self.dir).await?)
    }
}

/// How many segments from the oldest `policy` deletes: each must be sealed (not the last) and
/// expired by time or by size; the first one that is not ends the run, so retention only ever
/// cuts a prefix of the log.
fn expired_segment_count(
    segments: &[Rc<Segment>],
    log_start_offset: i64,
    policy: &RetentionPolicy,
) -> usize {
    let mut remaining_bytes: u64 = segments.iter().map(|segment| segment.end_position()).sum();
    let sealed = &segments[..segments.len() - 1];
    let mut count = 0;
    for segment in sealed {
        let bytes = segment.end_position();
        let max_timestamp = segment.max_timestamp();
        // A roll only seals a non-empty segment.
        let max_timestamp = max_timestamp.expect("a sealed segment holds a batch");
        let expired_by_time = policy.retention_ms >= 0
            && max_timestamp < policy.now_ms.saturating_sub(policy.retention_ms);
        // As Kafka: delete while what stays is still at least retention_bytes.
        let expired_by_size =
            policy.retention_bytes >= 0 && remaining_bytes - bytes >= policy.retention_bytes as u64;
        // Left behind if a crash came between a DeleteRecords checkpoint and the unlink.
        let below_log_start = segment.next_offset() <= log_start_offset;
        if !expired_by_time && !expired_by_size && !below_log_start {
            break;
        }
        remaining_bytes -= bytes;
        count += 1;
    }
    count
}
