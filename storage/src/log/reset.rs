//! Resetting a follower's log to an empty one at a given offset (Kafka's
//! `truncateFullyAndStartAt`), crash-safely (see `PartitionLog::reset_to`).

use std::rc::Rc;

use super::{LogInner, PartitionLog};
use crate::fifo_lock::Ticket;
use crate::index::SparseIndex;
use crate::io::OpenMode;
use crate::log_start_checkpoint;
use crate::segment::{segment_file_name, Segment};
use crate::StorageError;

impl PartitionLog {
    /// Removes every batch and starts the log again, empty, at `offset` (at least 0, else
    /// `OffsetOutOfRange`): the log start, log end, high watermark and synced offset all become
    /// `offset`, the leader-epoch cache empties, and the next append gets `offset`. What a
    /// follower does when its leader's log start passed its log end (its fetch gets
    /// OFFSET_OUT_OF_RANGE): nothing it holds is of use any more.
    ///
    /// Crash-safe: the log start checkpoint moves to `offset` first, durably; then an empty
    /// segment starting at `offset` is created, durably in the directory; only then is the new
    /// log published and are the old segments unlinked. Recovery drops every segment below the
    /// last one that starts at or below the checkpointed log start, so a crash reopens either
    /// the old log with its start at its end (empty: the follower resets it again) or the new
    /// one. Serialised with appends, truncation and retention like `truncate_to`.
    pub async fn reset_to(&self, offset: i64) -> Result<(), StorageError> {
        let inner = Rc::clone(&self.inner);
        let ticket = inner.append_lock.ticket();
        let task =
            glommio::spawn_local(async move { inner.reset_to(ticket, offset).await }).detach();
        task.await.unwrap_or(Err(StorageError::Closed))
    }
}

impl LogInner {
    async fn reset_to(&self, ticket: Ticket, offset: i64) -> Result<(), StorageError> {
        let turn = self.append_lock.acquire(ticket).await;
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        if offset < 0 {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset.get(),
                log_end_offset: self.log_end_offset.get(),
            });
        }
        self.pipeline.wait_drained().await;
        if self.pipeline.is_failed() {
            self.repair_after_failure().await?;
        }
        // The commit point: from here a restart opens the log no lower than `offset`.
        log_start_checkpoint::write(&*self.io, &self.dir, offset).await?;
        let path = self.dir.join(segment_file_name(offset));
        // A segment of the old log may have this name (the log was empty at `offset`, or
        // `offset` begins one of its segments): its bytes go, and it is not unlinked below.
        let file = self.io.open(&path, OpenMode::CreateEmpty).await?;
        self.io.sync_dir(&self.dir).await?;
        // A sync round in flight would publish the old log end as synced when it completes.
        while self.sync_in_flight.get() {
            self.sync_finished.listen().await;
        }
        let index = SparseIndex::new(offset, self.config.borrow().index_interval_bytes);
        let io = Rc::clone(&self.io);
        let active = Segment::new_active(&self.context, offset, &path, io, file, index);
        // No await from here to the end of the publication: a read sees the old log or the new.
        let old = std::mem::replace(&mut *self.segments.borrow_mut(), vec![Rc::new(active)]);
        self.log_start_offset.set(offset);
        self.log_end_offset.set(offset);
        self.high_watermark.set(offset);
        self.synced_offset.set(offset);
        // Every entry starts at 0 or later: the cache empties, and the checkpoint is rewritten
        // before the next append's batches.
        self.truncate_epochs(0);
        self.context.tail_cache().forget(self.tail_cache_key);
        self.pipeline.reset_to(offset, 0, &[]);
        self.tail_block.borrow_mut().clear();
        self.active_allocated_bytes.set(0);
        self.active_first_append_ms.set(None);
        self.appended.notify_all();
        let unlinked: Vec<Rc<Segment>> = (old.into_iter())
            .filter(|segment| segment.base_offset != offset)
            .collect();
        let removal = self.removal_lock.ticket();
        drop(turn);
        self.remove_segment_files(removal, unlinked).await
    }
}
