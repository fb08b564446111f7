//! Truncation for followers: removing every batch from an offset on, crash-safely (see
//! `PartitionLog::truncate_to`).

use std::rc::Rc;

use super::clock::now_ms;
use super::open::read_tail_block;
use super::{LogInner, PartitionLog};
use crate::fifo_lock::Ticket;
use crate::index_file;
use crate::io::OpenMode;
use crate::scan::{self, Scan};
use crate::segment::Segment;
use crate::truncation_marker::{self, Truncation};
use crate::StorageError;

impl PartitionLog {
    /// Removes every batch at or above `offset` (Kafka's log truncation on a follower after a
    /// leader change): the log end becomes `offset`, and the next append gets it. `offset` must
    /// be in `[log_start_offset, log_end_offset]` (else `OffsetOutOfRange`) and begin a batch or
    /// be the log end (else `NotBatchBoundary`; nothing changes); at the log end nothing
    /// changes.
    ///
    /// Crash-safe: the batches below `offset` are made durable, then a marker naming the cut is
    /// written durably, then the segments above are unlinked and the one holding `offset` is
    /// cut, and the marker goes. A crash before the marker is durable leaves the old log; after,
    /// the next open finishes the cut. A failure after the marker is written poisons syncs (as
    /// a failed fdatasync does) until the log is reopened, so nothing appended meanwhile is
    /// acknowledged as durable. Serialised with appends and retention like `apply_retention`.
    pub async fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        let inner = Rc::clone(&self.inner);
        let ticket = inner.append_lock.ticket();
        let task =
            glommio::spawn_local(async move { inner.truncate_to(ticket, offset).await }).detach();
        task.await.unwrap_or(Err(StorageError::Closed))
    }
}

impl LogInner {
    async fn truncate_to(&self, ticket: Ticket, offset: i64) -> Result<(), StorageError> {
        let _turn = self.append_lock.acquire(ticket).await;
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        self.pipeline.wait_drained().await;
        if self.pipeline.is_failed() {
            self.repair_after_failure().await?;
        }
        let (log_start_offset, log_end_offset) =
            (self.log_start_offset.get(), self.log_end_offset.get());
        if offset < log_start_offset || offset > log_end_offset {
            return Err(StorageError::OffsetOutOfRange {
                offset,
                log_start_offset,
                log_end_offset,
            });
        }
        if offset == log_end_offset {
            // An entry a new leader assigned at the log end before it lost the leadership
            // (Kafka truncates the cache here too).
            self.truncate_epochs(offset);
            return Ok(());
        }
        let (segment, position) = self.truncation_point(offset).await?;
        // What stays must survive whatever happens next.
        self.sync_to(offset - 1).await?;
        let interval_bytes = self.config.borrow().index_interval_bytes;
        let base_offset = segment.base_offset;
        let kept = scan::scan_prefix(&segment.path, base_offset, interval_bytes, position, offset)?;
        if kept.index.next_offset() != offset || kept.index.end_position() != position {
            let path = segment.path.display();
            let message = format!("{path} does not hold the batches below {offset}");
            return Err(StorageError::Corrupt(message));
        }
        let truncation = Truncation {
            offset,
            segment_base_offset: base_offset,
            segment_bytes: position,
        };
        truncation_marker::write(&*self.io, &self.dir, &truncation).await?;
        // Committed: the next open finishes the cut if this does not.
        let result = self.cut(&segment, kept, &truncation).await;
        if result.is_err() {
            self.sync_failed.set(true);
        }
        result
    }

    /// The segment holding `offset` and the position of the batch starting there.
    async fn truncation_point(&self, offset: i64) -> Result<(Rc<Segment>, u64), StorageError> {
        let segment = self.segment_holding(offset);
        let (position, header) = segment.batch_holding(offset).await?;
        if header.base_offset != offset {
            return Err(StorageError::NotBatchBoundary {
                offset,
                batch_base_offset: header.base_offset,
                batch_next_offset: header.next_offset(),
            });
        }
        Ok((segment, position))
    }

    /// Publishes the truncated log (the cut segment becomes the active one, holding `kept`),
    /// then changes the files: unlinks the later segments, newest first, cuts the segment and
    /// makes the cut durable, and removes the marker.
    async fn cut(
        &self,
        segment: &Rc<Segment>,
        kept: Scan,
        truncation: &Truncation,
    ) -> Result<(), StorageError> {
        let file = if segment.is_sealed() {
            self.io.open(&segment.path, OpenMode::Existing).await?
        } else {
            segment.active_file()
        };
        let io = Rc::clone(&self.io);
        let (base_offset, position) = (segment.base_offset, truncation.segment_bytes);
        let active = Segment::new_active(
            &self.context,
            base_offset,
            &segment.path,
            io,
            file,
            kept.index,
        );
        active.add_recovered_fences(kept.fences);
        active.synced_position.set(position);
        let active = Rc::new(active);
        let tail_block = read_tail_block(&active).await?;
        // A sync round in flight would publish the old log end as synced when it completes.
        while self.sync_in_flight.get() {
            self.sync_finished.listen().await;
        }
        // No await from here to the end of the publication: a read sees the old log or the new.
        let removed = {
            let mut segments = self.segments.borrow_mut();
            let at = segments
                .iter()
                .position(|s| Rc::ptr_eq(s, segment))
                .unwrap();
            let removed = segments.split_off(at);
            segments.push(Rc::clone(&active));
            removed
        };
        self.log_end_offset.set(truncation.offset);
        self.truncate_epochs(truncation.offset);
        // The only move back of the high watermark: a follower cut below it.
        let high_watermark = self.high_watermark.get().min(truncation.offset);
        self.high_watermark.set(high_watermark);
        let synced_offset = self.synced_offset.get().min(truncation.offset);
        self.synced_offset.set(synced_offset);
        self.context.tail_cache().forget(self.tail_cache_key);
        self.pipeline
            .reset_to(truncation.offset, position, &tail_block);
        *self.tail_block.borrow_mut() = tail_block;
        self.active_first_append_ms.set((position > 0).then(now_ms));
        for later in removed[1..].iter().rev() {
            later.open_file().await?.remove().await?;
            index_file::remove_if_exists(&index_file::index_path(&later.path))?;
        }
        drop(removed);
        let file = active.active_file();
        file.truncate(position).await?;
        self.active_allocated_bytes.set(position);
        file.fdatasync().await?;
        index_file::remove_if_exists(&index_file::index_path(&active.path))?;
        self.io.sync_dir(&self.dir).await?;
        truncation_marker::remove(&self.dir)?;
        Ok(self.io.sync_dir(&self.dir).await?)
    }
}
