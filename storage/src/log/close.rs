//! Closing a log cleanly (with the clean-shutdown marker) or for deletion.

use std::rc::Rc;

use super::sync::sync_failed_error;
use super::{LogInner, PartitionLog};
use crate::clean_marker::{self, CleanMarker};
use crate::index_file;
use crate::segment::Segment;
use crate::StorageError;

impl PartitionLog {
    /// Waits for in-flight appends, syncs, trims the active segment to its last batch, writes
    /// its index file and the clean-shutdown marker (so the next `open` reads no segment), and
    /// closes the files.
    pub async fn close(self) -> Result<(), StorageError> {
        self.close_files(CloseMode::Clean).await
    }

    /// Closes the log and removes its directory with every segment.
    pub async fn delete(self) -> Result<(), StorageError> {
        let dir = self.inner.dir.clone();
        self.close_files(CloseMode::ForDeletion).await?;
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    async fn close_files(self, mode: CloseMode) -> Result<(), StorageError> {
        let inner = &self.inner;
        inner.closed.set(true);
        let permit = inner.append_lock.acquire(inner.append_lock.ticket()).await;
        inner.pipeline.wait_drained().await;
        inner.context.tail_cache().forget(inner.tail_cache_key);
        // Unlinks of removed segments finish before the files are closed or the directory goes.
        let removal_permit = inner
            .removal_lock
            .acquire(inner.removal_lock.ticket())
            .await;
        inner.appended.notify_all();
        let sync_result = self.sync_to(i64::MAX).await;
        let active = inner.active_segment();
        active.active_file().truncate(active.end_position()).await?;
        sync_result?;
        if mode == CloseMode::Clean {
            inner.write_clean_shutdown(&active).await?;
        }
        drop(permit);
        drop(removal_permit);
        let segments = std::mem::take(&mut *inner.segments.borrow_mut());
        for segment in segments {
            // Nothing else can hold a segment here (`close` consumes the log and waited for the
            // append tasks); if something does, its file closes when the last reference drops.
            if let Ok(segment) = Rc::try_unwrap(segment) {
                let file = segment.take_file();
                drop(segment);
                if let Some(file) = file {
                    file.close().await?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseMode {
    /// Leave the index and the clean-shutdown marker for a fast reopen.
    Clean,
    /// The directory is removed right after.
    ForDeletion,
}

impl LogInner {
    /// After the final sync and trim: makes the trimmed length durable, then writes the active
    /// segment's index and the marker that vouches for both, each durably, in that order. A
    /// crash in between leaves no valid marker, and the next open scans the last segment.
    async fn write_clean_shutdown(&self, active: &Segment) -> Result<(), StorageError> {
        if self.sync_failed.get() {
            return Err(sync_failed_error());
        }
        if let Err(error) = active.active_file().fdatasync().await {
            self.sync_failed.set(true);
            return Err(error.into());
        }
        let (header, index_bytes) = active.encode_active_index();
        index_file::write(&index_file::index_path(&active.path), index_bytes).await?;
        let marker = CleanMarker {
            active_base_offset: active.base_offset,
            active_segment_bytes: header.segment_bytes,
            log_end_offset: self.log_end_offset.get(),
        };
        assert_eq!(marker.log_end_offset, header.next_offset);
        clean_marker::write(&*self.io, &self.dir, &marker).await
    }
}
