//! Durability: `sync_to` and its group commit.

use std::io;
use std::rc::Rc;

use super::{LogInner, PartitionLog};
use crate::segment::Segment;
use crate::StorageError;

impl PartitionLog {
    /// Returns once every record up to and including `offset` is durable. An `offset` at or past
    /// the log end means everything appended so far. Concurrent callers share fdatasyncs (group
    /// commit): while one sync is in flight the others wait for it, then sync again only if it
    /// did not cover them.
    pub async fn sync_to(&self, offset: i64) -> Result<(), StorageError> {
        let result = self.sync_to_unlogged(offset).await;
        self.inner.sync_failures.observe(&self.inner.dir, &result);
        result
    }

    async fn sync_to_unlogged(&self, offset: i64) -> Result<(), StorageError> {
        self.inner.sync_to(offset).await
    }
}

impl LogInner {
    /// `PartitionLog::sync_to` without the failure logging.
    pub(super) async fn sync_to(&self, offset: i64) -> Result<(), StorageError> {
        loop {
            if self.sync_failed.get() {
                return Err(sync_failed_error());
            }
            let target = offset.min(self.log_end_offset.get() - 1);
            if self.synced_offset.get() > target {
                return Ok(());
            }
            if self.sync_in_flight.get() {
                self.sync_finished.listen().await;
                continue;
            }
            self.sync_once().await?;
        }
    }

    /// One group-commit round: fdatasyncs every segment with unsynced bytes (oldest first) and
    /// the directory if a segment was created, then publishes the covered offset.
    async fn sync_once(&self) -> Result<(), StorageError> {
        assert!(!self.sync_in_flight.get());
        let _in_flight = SyncInFlight::start(self);
        let target_offset = self.log_end_offset.get();
        let pending: Vec<(Rc<Segment>, u64)> = self
            .segments
            .borrow()
            .iter()
            .filter(|segment| segment.synced_position.get() < segment.end_position())
            .map(|segment| (Rc::clone(segment), segment.end_position()))
            .collect();
        if self.directory_sync_needed.replace(false) {
            if let Err(error) = self.io.sync_dir(&self.dir).await {
                self.directory_sync_needed.set(true);
                return Err(error.into());
            }
        }
        for (segment, end_position) in pending {
            // A segment sealed since `pending` was taken was fdatasync'd whole by its roll, and
            // its file may be closed by now.
            if segment.is_sealed() {
                assert_eq!(segment.synced_position.get(), segment.end_position());
                continue;
            }
            if let Err(error) = segment.active_file().fdatasync().await {
                self.sync_failed.set(true);
                return Err(error.into());
            }
            let synced = segment.synced_position.get().max(end_position);
            assert!(synced <= segment.end_position());
            segment.synced_position.set(synced);
        }
        assert!(target_offset <= self.log_end_offset.get());
        self.synced_offset
            .set(self.synced_offset.get().max(target_offset));
        Ok(())
    }
}

/// Marks a sync round in flight; on drop (completion, error or cancellation) clears the mark and
/// wakes the callers waiting for it, so a dropped `sync_to` cannot wedge the others.
struct SyncInFlight<'a> {
    inner: &'a LogInner,
}

impl<'a> SyncInFlight<'a> {
    fn start(inner: &'a LogInner) -> SyncInFlight<'a> {
        inner.sync_in_flight.set(true);
        SyncInFlight { inner }
    }
}

impl Drop for SyncInFlight<'_> {
    fn drop(&mut self) {
        self.inner.sync_in_flight.set(false);
        self.inner.sync_finished.notify_all();
    }
}

pub(super) fn sync_failed_error() -> StorageError {
    let message = "an earlier fdatasync failed; reopen the log to recover";
    StorageError::Io(io::Error::other(message))
}
