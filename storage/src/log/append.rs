//! The append path: reservation under the append lock, the direct-I/O write, publication in
//! reservation order, repair after a failed write, and preallocation of the active segment.

use std::io;
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::DmaBuffer;

use super::clock::now_ms;
use super::{LogInner, PartitionLog};
use crate::append_pipeline::Reservation;
use crate::batch::{self, ValidatedBatches};
use crate::fifo_lock::Ticket;
use crate::io::SegmentFile;
use crate::segment::Segment;
use crate::{AppendInfo, StorageError, SEGMENT_PREALLOCATE_MIN_BYTES};

impl PartitionLog {
    /// Assigns offsets to `batches` (rewriting each batch's baseOffset, and setting its
    /// partitionLeaderEpoch to `batches.leader_epoch()`, in the copy written to disk), writes them with direct I/O, and
    /// returns once the write completed. Not yet durable: see [`PartitionLog::sync_to`]. All
    /// batches of one append go to one segment; if they would make the active segment exceed
    /// `segment_bytes`, a new segment is started first (so an append larger than `segment_bytes`
    /// sits in a segment of its own).
    pub async fn append(&self, batches: ValidatedBatches) -> Result<AppendInfo, StorageError> {
        let inner = Rc::clone(&self.inner);
        // The ticket is drawn now, in call order; the task always runs to use it.
        let ticket = inner.append_lock.ticket();
        let task =
            glommio::spawn_local(
                async move { inner.append(ticket, batches, Offsets::Assigned).await },
            )
            .detach();
        let result = task.await.unwrap_or(Err(StorageError::Closed));
        self.inner.append_failures.observe(&self.inner.dir, &result);
        result
    }

    /// A follower's append: writes batches fetched from the leader exactly as they are, their
    /// base offsets and partition leader epochs kept (no re-encode, no re-stamp). Refused with
    /// [`StorageError::NotContiguous`], writing nothing, unless the first batch starts at the log
    /// end (after every append in flight) and each later one where the one before it ended.
    /// Same pipeline and durability as [`PartitionLog::append`]: not durable until `sync_to`.
    pub async fn append_replicated(
        &self,
        batches: ValidatedBatches,
    ) -> Result<AppendInfo, StorageError> {
        if let Some((expected, found)) = batches.carried_offset_gap() {
            return Err(StorageError::NotContiguous { expected, found });
        }
        let inner = Rc::clone(&self.inner);
        let ticket = inner.append_lock.ticket();
        let task =
            glommio::spawn_local(async move { inner.append(ticket, batches, Offsets::Kept).await })
                .detach();
        let result = task.await.unwrap_or(Err(StorageError::Closed));
        self.inner.append_failures.observe(&self.inner.dir, &result);
        result
    }
}

/// Whether an append gives its batches offsets and the leader epoch (a leader's) or keeps the
/// ones they carry (a follower's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offsets {
    Assigned,
    Kept,
}

impl LogInner {
    /// One append through the pipeline (see `append_pipeline`): reserve and submit under the
    /// append lock, wait for the write outside it, publish in reservation order.
    async fn append(
        &self,
        ticket: Ticket,
        batches: ValidatedBatches,
        offsets: Offsets,
    ) -> Result<AppendInfo, StorageError> {
        let (reservation, segment, buffer) = {
            let _turn = self.append_lock.acquire(ticket).await;
            self.reserve(&batches, offsets).await?
        };
        let written = self.write_reserved(&reservation, &segment, &buffer).await;
        self.pipeline
            .wait_resolved_below(reservation.sequence)
            .await;
        let result = match written {
            Err(error) => Err(error),
            Ok(()) if self.pipeline.is_poisoned(reservation.sequence) => {
                Err(earlier_append_failed_error())
            }
            Ok(()) => Ok(self.publish(&reservation, &segment, &buffer, &batches, offsets)),
        };
        self.pipeline.resolve(reservation.sequence);
        result
    }

    /// Under the append lock: waits for a pipeline slot, repairs after a failed write, rolls if
    /// needed, grows the file, builds the write buffer and takes the next place in the pipeline.
    /// Nothing is reserved if it fails.
    async fn reserve(
        &self,
        batches: &ValidatedBatches,
        offsets: Offsets,
    ) -> Result<(Reservation, Rc<Segment>, Rc<DmaBuffer>), StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        self.pipeline.wait_for_slot().await;
        self.check_continues_log(batches, offsets)?;
        let segment = loop {
            if self.pipeline.is_failed() {
                self.pipeline.wait_drained().await;
                self.repair_after_failure().await?;
            }
            self.roll_if_needed(batches.len_bytes() as u64).await?;
            let segment = self.active_segment();
            let write_end = segment.active_file().align_up(self.pipeline.reserved_end())
                + segment.active_file().align_up(batches.len_bytes() as u64);
            self.preallocate(&segment, write_end).await?;
            let base_offset = self.pipeline.reserved_offset();
            self.checkpoint_epochs_ahead(batch_epochs(batches, offsets, base_offset))
                .await?;
            // A write in flight may have failed meanwhile; then this append must start from
            // the published end instead (after the repair, nothing is in flight).
            if !self.pipeline.is_failed() {
                break segment;
            }
        };
        let base_offset = self.pipeline.reserved_offset();
        let next_offset = base_offset
            .checked_add(batches.record_count())
            .ok_or(StorageError::OffsetOverflow)?;
        let end_position = self.pipeline.reserved_end();
        let new_end_position = end_position + batches.len_bytes() as u64;
        let write_position = segment.active_file().align_down(end_position);
        let write_end = segment.active_file().align_up(new_end_position);
        // Checked again: a repair after a failed write may have moved the reserved offset back.
        self.check_continues_log(batches, offsets)?;
        let stamp = (offsets == Offsets::Assigned).then_some(base_offset);
        let buffer = self.build_write_buffer(segment.active_file().as_ref(), batches, stamp);
        assert_eq!(write_position + buffer.len() as u64, write_end);
        let reservation = Reservation {
            sequence: self.pipeline.next_sequence(),
            base_offset,
            next_offset,
            end_position,
            new_end_position,
            write_position,
            first_block_shared: write_position < end_position && self.pipeline.unresolved() > 0,
        };
        let tail_start =
            (segment.active_file().align_down(new_end_position) - write_position) as usize;
        let tail_end = (new_end_position - write_position) as usize;
        self.pipeline
            .reserve(&reservation, &buffer.as_bytes()[tail_start..tail_end]);
        Ok((reservation, segment, buffer))
    }

    /// Writes a reserved append's buffer, first waiting for the earlier appends if its first
    /// block is shared with one of them. Skips the write if an earlier one failed.
    async fn write_reserved(
        &self,
        reservation: &Reservation,
        segment: &Segment,
        buffer: &Rc<DmaBuffer>,
    ) -> Result<(), StorageError> {
        if reservation.first_block_shared {
            self.pipeline
                .wait_resolved_below(reservation.sequence)
                .await;
        }
        if self.pipeline.is_poisoned(reservation.sequence) {
            return Err(earlier_append_failed_error());
        }
        let written = self
            .write(segment, buffer, reservation.write_position)
            .await;
        if written.is_err() {
            self.pipeline.fail(reservation.sequence);
        }
        written
    }

    /// A replicated append must start at the offset the next reservation gets.
    fn check_continues_log(
        &self,
        batches: &ValidatedBatches,
        offsets: Offsets,
    ) -> Result<(), StorageError> {
        let expected = self.pipeline.reserved_offset();
        let found = batches.first_base_offset();
        if offsets == Offsets::Kept && found != expected {
            return Err(StorageError::NotContiguous { expected, found });
        }
        Ok(())
    }

    /// One aligned buffer: [partial tail block][batches][zero padding]. With `stamp` (a leader's
    /// append: its base offset) each batch gets its offsets and the append's leader epoch;
    /// without, the batches are copied as they are.
    fn build_write_buffer(
        &self,
        file: &dyn SegmentFile,
        batches: &ValidatedBatches,
        stamp: Option<i64>,
    ) -> Rc<DmaBuffer> {
        let tail = self.pipeline.reserved_tail();
        let data_len = tail.len() + batches.len_bytes();
        let mut buffer = file.alloc_dma_buffer(file.align_up(data_len as u64) as usize);
        let bytes = buffer.as_bytes_mut();
        bytes[..tail.len()].copy_from_slice(&tail);
        let batch_bytes = &mut bytes[tail.len()..data_len];
        batch_bytes.copy_from_slice(batches.bytes());
        if let Some(base_offset) = stamp {
            let mut offset = base_offset;
            for summary in batches.summaries() {
                let batch =
                    &mut batch_bytes[summary.position..summary.position + summary.total_bytes];
                batch::set_base_offset_and_epoch(batch, offset, batches.leader_epoch());
                offset += summary.offset_count;
            }
        }
        bytes[data_len..].fill(0);
        Rc::new(buffer)
    }

    /// The write of `reservation` and of every earlier append completed: publishes the new state.
    /// No await, so every observer sees the index, the segment end and the log end move together.
    fn publish(
        &self,
        reservation: &Reservation,
        segment: &Segment,
        buffer: &DmaBuffer,
        batches: &ValidatedBatches,
        offsets: Offsets,
    ) -> AppendInfo {
        let Reservation {
            base_offset,
            next_offset,
            end_position,
            new_end_position,
            write_position,
            ..
        } = *reservation;
        assert_eq!(self.log_end_offset.get(), base_offset);
        assert_eq!(segment.end_position(), end_position);
        let tail_len = (end_position - write_position) as usize;
        let new_tail_start =
            (segment.active_file().align_down(new_end_position) - write_position) as usize;
        let new_tail_end = (new_end_position - write_position) as usize;
        let mut tail_block = self.tail_block.borrow_mut();
        tail_block.clear();
        tail_block.extend_from_slice(&buffer.as_bytes()[new_tail_start..new_tail_end]);
        drop(tail_block);
        segment.with_active_index(|index| {
            let mut offset = base_offset;
            for summary in batches.summaries() {
                let position = end_position + summary.position as u64;
                index.observe(
                    offset,
                    position,
                    summary.total_bytes as u64,
                    summary.offset_count,
                    summary.max_timestamp,
                );
                offset += summary.offset_count;
            }
            assert_eq!(index.next_offset(), next_offset);
            assert_eq!(index.end_position(), new_end_position);
        });
        assert!(tail_len < segment.active_file().alignment() as usize);
        assert!(segment.synced_position.get() <= new_end_position);
        self.log_end_offset.set(next_offset);
        self.publish_epochs(batch_epochs(batches, offsets, base_offset));
        self.cache_appended(
            segment,
            &buffer.as_bytes()[tail_len..new_tail_end],
            base_offset,
        );
        let log_append_time_ms = now_ms();
        if self.active_first_append_ms.get().is_none() {
            self.active_first_append_ms.set(Some(log_append_time_ms));
        }
        AppendInfo {
            base_offset,
            last_offset: next_offset - 1,
            log_append_time_ms,
        }
    }

    /// Puts the batches an append has just published into the context's tail cache.
    fn cache_appended(&self, segment: &Segment, written: &[u8], base_offset: i64) {
        let mut cache = self.context.tail_cache();
        if cache.accepts(written.len()) {
            let bytes = Bytes::copy_from_slice(written);
            let (key, next_offset) = (self.tail_cache_key, self.log_end_offset.get());
            cache.insert(key, segment.base_offset, base_offset, next_offset, bytes);
        } else {
            cache.forget(self.tail_cache_key);
        }
    }

    /// With nothing in flight after a failed write: the failed writes, and later ones that
    /// succeeded but were not published, may have left whole batches past the published end.
    /// Recovery would take such a batch for part of the log if it followed the end directly, so
    /// the tail block is rewritten with zeros after the end, the file is cut after it, and both
    /// are synced. On error the pipeline stays failed and the next append tries again.
    pub(super) async fn repair_after_failure(&self) -> Result<(), StorageError> {
        assert_eq!(self.pipeline.unresolved(), 0);
        let segment = self.active_segment();
        let end_position = segment.end_position();
        let tail_block = self.tail_block.borrow().clone();
        let block_end = segment.active_file().align_up(end_position);
        if !tail_block.is_empty() {
            let alignment = segment.active_file().alignment() as usize;
            let mut block = segment.active_file().alloc_dma_buffer(alignment);
            block.as_bytes_mut()[..tail_block.len()].copy_from_slice(&tail_block);
            block.as_bytes_mut()[tail_block.len()..].fill(0);
            let write_position = segment.active_file().align_down(end_position);
            self.write(&segment, &Rc::new(block), write_position)
                .await?;
        }
        segment.active_file().truncate(block_end).await?;
        // Durable before any append reuses these positions: a sync that ran while the pipeline
        // was failed may have made the failed batches durable past the end, and a crash that
        // kept a later append's first blocks but not this repair would splice the two into a
        // damaged batch with the failed batches' valid successors after it.
        // A failed fdatasync fails every later sync, as in `sync_once`.
        if let Err(error) = segment.active_file().fdatasync().await {
            self.sync_failed.set(true);
            return Err(error.into());
        }
        self.active_allocated_bytes.set(block_end);
        self.pipeline
            .reset_to(self.log_end_offset.get(), end_position, &tail_block);
        self.reset_reserved_epochs();
        Ok(())
    }

    /// Writes `buffer` at `write_position` of `segment`; the file must already hold the range
    /// or the write extends it (see `preallocate`).
    async fn write(
        &self,
        segment: &Segment,
        buffer: &Rc<DmaBuffer>,
        write_position: u64,
    ) -> Result<(), StorageError> {
        let write_end = write_position + buffer.len() as u64;
        let written = segment
            .active_file()
            .write_at(Rc::clone(buffer), write_position)
            .await?;
        if written != buffer.len() {
            let message = format!(
                "short write of {written} of {} bytes to {}",
                buffer.len(),
                segment.path.display()
            );
            return Err(StorageError::Io(io::Error::new(
                io::ErrorKind::WriteZero,
                message,
            )));
        }
        let allocated = self.active_allocated_bytes.get();
        self.active_allocated_bytes.set(allocated.max(write_end));
        Ok(())
    }

    /// Grows the active segment file with `fallocate` to hold a write ending at `write_end`, in
    /// geometric steps (see `preallocation_target`): an idle partition costs a few kilobytes of
    /// disk, a busy one reaches `segment_preallocate_bytes` per step after a few doublings.
    /// Appends inside the allocated range then do not change the file size, so their fdatasync
    /// has no size update to journal. The zeros past the logical end read as batchLength 0,
    /// which recovery takes for the end of the log; rolls and `close` trim the file back to its
    /// logical end.
    async fn preallocate(&self, segment: &Segment, write_end: u64) -> Result<(), StorageError> {
        let allocated = self.active_allocated_bytes.get();
        let config = self.config.borrow().clone();
        let step_max = config.segment_preallocate_bytes;
        if write_end <= allocated || step_max == 0 || self.preallocate_unsupported.get() {
            return Ok(());
        }
        let limit = segment.active_file().align_up(config.segment_bytes);
        let target = segment
            .active_file()
            .align_up(preallocation_target(allocated, write_end, step_max, limit));
        match segment.active_file().preallocate(target).await {
            Ok(()) => self.active_allocated_bytes.set(target),
            Err(error) if error.kind() == io::ErrorKind::Unsupported => {
                log::warn!(
                    "fallocate is not supported for {}, appends extend the file: {error}",
                    segment.path.display()
                );
                self.preallocate_unsupported.set(true);
            }
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }
}

/// The (partition leader epoch, base offset) of each batch an append writes from `base_offset`
/// on, for the leader-epoch cache: a leader's append stamps its epoch into every batch (the
/// first batch's entry is the only one that can matter), a follower's keeps each batch's own.
fn batch_epochs(
    batches: &ValidatedBatches,
    offsets: Offsets,
    base_offset: i64,
) -> impl Iterator<Item = (i32, i64)> + '_ {
    let assigned = (offsets == Offsets::Assigned).then_some((batches.leader_epoch(), base_offset));
    let kept = (offsets == Offsets::Kept).then(|| {
        batches.summaries().iter().map(|summary| {
            let header = batch::BatchHeader::parse(&batches.bytes()[summary.position..])
                .expect("a validated batch has a valid header");
            (header.partition_leader_epoch, header.base_offset)
        })
    });
    assigned.into_iter().chain(kept.into_iter().flatten())
}

fn earlier_append_failed_error() -> StorageError {
    let message = "the write of an earlier append failed";
    StorageError::Io(io::Error::other(message))
}

/// The file size the next `fallocate` of the active segment asks for: the segment grows by as
/// much as it already holds (at least `SEGMENT_PREALLOCATE_MIN_BYTES`, at most `step_max`), not
/// past `limit` (the segment size) unless the write itself goes further. The disk a partition
/// takes is thus at most about twice what it stores, plus one step.
fn preallocation_target(allocated: u64, write_end: u64, step_max: u64, limit: u64) -> u64 {
    assert!(step_max > 0);
    let step = allocated.clamp(SEGMENT_PREALLOCATE_MIN_BYTES.min(step_max), step_max);
    write_end.max(allocated.saturating_add(step).min(limit))
}
