//! Rolls: sealing the active segment and starting a new one.

use std::rc::Rc;

use super::clock::now_ms;
use super::sync::sync_failed_error;
use super::LogInner;
use crate::index::SparseIndex;
use crate::index_file;
use crate::io::OpenMode;
use crate::segment::{segment_file_name, Segment};
use crate::StorageError;

impl LogInner {
    /// Starts a new segment if appending `append_bytes` would make a non-empty active segment
    /// exceed `segment_bytes`, or if its first append is `segment_ms` or more ago (see
    /// `roll_needed`). The old segment is trimmed to its last batch (dropping the zero padding)
    /// and fdatasync'd before the new one exists, so every sealed segment is durable and
    /// recovery only has to make the last segment durable. That costs one fdatasync per roll on
    /// the append path (once per `segment_bytes`). The appends in flight are waited for first.
    pub(super) async fn roll_if_needed(&self, append_bytes: u64) -> Result<(), StorageError> {
        if !self.roll_needed(append_bytes) {
            return Ok(());
        }
        self.pipeline.wait_drained().await;
        if self.pipeline.is_failed() {
            self.repair_after_failure().await?;
            if !self.roll_needed(append_bytes) {
                return Ok(());
            }
        }
        let active = self.active_segment();
        let end_position = active.end_position();
        assert_eq!(end_position, self.pipeline.reserved_end());
        if self.sync_failed.get() {
            return Err(sync_failed_error());
        }
        active.active_file().truncate(end_position).await?;
        self.active_allocated_bytes.set(end_position);
        if let Err(error) = active.active_file().fdatasync().await {
            self.sync_failed.set(true);
            return Err(error.into());
        }
        active.synced_position.set(end_position);
        // The segment is durable, so its index may now vouch for it. The rename reaches the
        // disk with the directory sync that the new segment's creation requires anyway.
        let (_, index_bytes) = active.encode_active_index();
        index_file::write(&index_file::index_path(&active.path), index_bytes.clone()).await?;
        let base_offset = self.log_end_offset.get();
        assert_eq!(base_offset, active.next_offset());
        let path = self.dir.join(segment_file_name(base_offset));
        // A file with this name is not part of the log (recovery would have found it), so any
        // content is a leftover of an earlier failed roll.
        let file = self.io.open(&path, OpenMode::CreateEmpty).await?;
        // Sealed only once the new segment exists: if anything above fails, the segment stays
        // active (its index file is rewritten by the next attempt, or removed by recovery as
        // the last segment's), and the next append tries the roll again.
        active.seal(&index_bytes);
        let index = SparseIndex::new(base_offset, self.config.borrow().index_interval_bytes);
        let io = Rc::clone(&self.io);
        let segment = Segment::new_active(&self.context, base_offset, &path, io, file, index);
        self.directory_sync_needed.set(true);
        self.segments.borrow_mut().push(Rc::new(segment));
        self.tail_block.borrow_mut().clear();
        self.active_allocated_bytes.set(0);
        self.pipeline.reset_to(base_offset, 0, &[]);
        self.active_first_append_ms.set(None);
        Ok(())
    }

    /// Whether a non-empty active segment must be sealed before `append_bytes` more: they would
    /// take it past `segment_bytes`, or its first append is `segment_ms` or more ago.
    fn roll_needed(&self, append_bytes: u64) -> bool {
        let end_position = self.pipeline.reserved_end();
        let config = self.config.borrow();
        let full = end_position + append_bytes > config.segment_bytes;
        let aged = config.segment_ms >= 0
            && self
                .active_first_append_ms
                .get()
                .is_some_and(|first_ms| now_ms().saturating_sub(first_ms) >= config.segment_ms);
        end_position != 0 && (full || aged)
    }
}
