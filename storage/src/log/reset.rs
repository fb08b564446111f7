//! Resetting a follower's log to an empty one at a given offset (Kafka's
//! `truncateFullyAndStartAt`), crash-safely (see `PartitionLog::reset_to`).

use std::rc::Rc;

use super::{LogInner, PartitionLog};
use crate::fifo_lock::Ticket;
use crate::index::SparseIndex;
use crate::io::OpenMode;
use crate::segment::{segment_file_name, Segment};
use crate::{index_file, leader_epochs, log_start_checkpoint, reset_marker, StorageError};

impl PartitionLog {
    /// Removes every batch and starts the log again, empty, at `offset` (at least 0, else
    /// `OffsetOutOfRange`), which may lie past the log end, inside the log or below its start:
    /// the log start, log end, high watermark and synced offset all become `offset`, the
    /// leader-epoch cache empties, and the next append gets `offset`. What a follower does when
    /// its leader's log start passed its log end (its fetch gets OFFSET_OUT_OF_RANGE), or when
    /// its empty log starts above the leader's first batch: nothing it holds is of use any more.
    ///
    /// Crash-safe: a marker naming `offset` is written durably first (the commit point); then
    /// the segment file `offset` names is created or emptied and fdatasync'd, the new log is
    /// published, every other segment file, the index files, the log start checkpoint and the
    /// leader-epoch checkpoint are unlinked, and the marker goes, the directory synced before
    /// and after it. A crash before the marker is durable reopens the old log, whole; after it,
    /// the next open finishes the reset (`recovery::finish_reset`). A failure from the marker's
    /// write on poisons syncs (as a failed fdatasync does) until the log is reopened, so
    /// nothing appended meanwhile is acknowledged as durable. Holds the append lock throughout,
    /// and the removal lock for the unlinks (after any removal retention started before it).
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
        let _turn = self.append_lock.acquire(ticket).await;
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
        // Retention's unlinks that were ticketed before this reset run first; the reset then
        // unlinks what they left (`pending_removals`) with the rest of the old log.
        let removal = self.removal_lock.ticket();
        let _removal_turn = self.removal_lock.acquire(removal).await;
        // A failed write may still have renamed the marker into place (its directory sync is
        // what failed): from here, a failure leaves a log the next open may reset.
        let result = match reset_marker::write(&*self.io, &self.dir, offset).await {
            // Committed: the next open finishes the reset if this does not.
            Ok(()) => self.replace_with_empty(offset).await,
            Err(error) => Err(error),
        };
        if result.is_err() {
            self.sync_failed.set(true);
        }
        result
    }

    /// After the marker: makes the new segment durable, publishes the empty log, and removes
    /// the old log's files and the marker.
    async fn replace_with_empty(&self, offset: i64) -> Result<(), StorageError> {
        let path = self.dir.join(segment_file_name(offset));
        // A segment of the old log may have this name (the log was empty at `offset`, or
        // `offset` begins one of its segments): its bytes go, durably, and it is not unlinked
        // below.
        let file = self.io.open(&path, OpenMode::CreateEmpty).await?;
        file.fdatasync().await?;
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
        // Every entry starts at 0 or later: the cache empties; its checkpoint is unlinked below
        // and written again before the next append's batches.
        self.truncate_epochs(0);
        self.epochs_written.set(false);
        self.context.tail_cache().forget(self.tail_cache_key);
        self.pipeline.reset_to(offset, 0, &[]);
        self.tail_block.borrow_mut().clear();
        self.active_allocated_bytes.set(0);
        self.active_first_append_ms.set(None);
        self.appended.notify_all();
        let mut unlinked = std::mem::take(&mut *self.pending_removals.borrow_mut());
        unlinked.extend(old);
        unlinked.retain(|segment| segment.base_offset != offset);
        self.unlink_in_order(&mut unlinked).await?;
        // An index left by an old segment of the new one's name describes bytes that are gone.
        index_file::remove_if_exists(&index_file::index_path(&path))?;
        // Without the checkpoint the log starts at its first segment's base offset, `offset`.
        log_start_checkpoint::remove(&self.dir)?;
        index_file::remove_if_exists(&leader_epochs::checkpoint_path(&self.dir))?;
        self.io.sync_dir(&self.dir).await?;
        reset_marker::remove(&self.dir)?;
        // Before any append to the new log: were the removal lost, the next open would empty
        // the log again.
        Ok(self.io.sync_dir(&self.dir).await?)
    }
}
