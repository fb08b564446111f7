//! The log's leader-epoch cache (see `leader_epochs`): kept as batches are reserved and
//! published, cut by truncation, assigned by a new leader, loaded (or rebuilt) at open.
//!
//! Three copies, all on the owner shard: `epochs` follows the published log (what queries
//! answer from), `epochs_reserved` follows the reserved appends too (what the next append's
//! batches are observed against), and `epochs_written` says whether the checkpoint on disk
//! equals `epochs_reserved`. Before an append's write is submitted, a checkpoint that does not
//! cover its batches is rewritten (fdatasync'd) with them, so no batch reaches the disk without
//! its entry; every other difference between disk and memory is an entry at or past the log end,
//! which `open` drops.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::{LogInner, PartitionLog};
use crate::fifo_lock::Ticket;
use crate::io::LogIo;
use crate::leader_epochs::{self, LeaderEpochs};
use crate::segment::Segment;
use crate::StorageError;

impl PartitionLog {
    /// The epoch of the latest entry of the leader-epoch cache, `None` while it is empty.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.inner.epochs.borrow().latest().map(|entry| entry.epoch)
    }

    /// Kafka's end offset for `epoch` (see `LeaderEpochs::end_offset_for`) as (epoch, end
    /// offset), `None` where Kafka answers (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET): for a
    /// negative epoch, one above the latest entry, or an empty cache.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let (start, end) = (self.log_start_offset(), self.log_end_offset());
        let found = self.inner.epochs.borrow().end_offset_for(epoch, start, end);
        (found.1 != leader_epochs::UNDEFINED_EPOCH_OFFSET).then_some(found)
    }

    /// The leader-epoch cache as the log start sees it: (epoch, start offset) pairs, strictly
    /// increasing, the first clamped to the log start.
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        let epochs = self.inner.epochs.borrow();
        let view = epochs.view(self.log_start_offset());
        view.iter().map(|e| (e.epoch, e.start_offset)).collect()
    }

    /// A new leader's entry (Kafka's `assign` at becoming leader): `epoch` starts at the log
    /// end, after every append called before this one. Returns that start offset. The ticket in
    /// the append lock is drawn when this is called, so appends called later, stamped with
    /// `epoch`, come after the entry. Not made durable here: an entry at the log end is dropped
    /// by `open` anyway, and the first append of `epoch` writes the checkpoint first.
    pub fn assign_epoch(
        &self,
        epoch: i32,
    ) -> impl std::future::Future<Output = Result<i64, StorageError>> + 'static {
        assert!(epoch >= 0, "a leader epoch is not negative");
        let inner = Rc::clone(&self.inner);
        let ticket = inner.append_lock.ticket();
        let task =
            glommio::spawn_local(async move { inner.assign_epoch(ticket, epoch).await }).detach();
        async move { task.await.unwrap_or(Err(StorageError::Closed)) }
    }
}

impl LogInner {
    async fn assign_epoch(&self, ticket: Ticket, epoch: i32) -> Result<i64, StorageError> {
        let _turn = self.append_lock.acquire(ticket).await;
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        self.pipeline.wait_drained().await;
        if self.pipeline.is_failed() {
            self.repair_after_failure().await?;
        }
        let log_end_offset = self.log_end_offset.get();
        if self.epochs.borrow_mut().observe(epoch, log_end_offset) {
            *self.epochs_reserved.borrow_mut() = self.epochs.borrow().clone();
            self.epochs_written.set(false);
        }
        Ok(log_end_offset)
    }

    /// Under the append lock, before an append's write is submitted: makes sure the checkpoint
    /// on disk holds the entries of its batches (`(epoch, base offset)` in order), rewriting it
    /// if they add one or it is not current, and records them as reserved. No I/O when nothing
    /// changes, which is every append but the first of an epoch.
    pub(super) async fn checkpoint_epochs_ahead(
        &self,
        batch_epochs: impl Iterator<Item = (i32, i64)>,
    ) -> Result<(), StorageError> {
        let mut projected: Option<LeaderEpochs> = None;
        {
            let reserved = self.epochs_reserved.borrow();
            for (epoch, base_offset) in batch_epochs {
                let latest = projected.as_ref().unwrap_or(&*reserved);
                if !latest.covers(epoch, base_offset) {
                    let mut next = latest.clone();
                    next.observe(epoch, base_offset);
                    projected = Some(next);
                }
            }
        }
        if projected.is_none() && self.epochs_written.get() {
            return Ok(());
        }
        let projected = projected.unwrap_or_else(|| self.epochs_reserved.borrow().clone());
        self.epochs_written.set(false);
        leader_epochs::write(&*self.io, &self.dir, &projected).await?;
        *self.epochs_reserved.borrow_mut() = projected;
        self.epochs_written.set(true);
        Ok(())
    }

    /// At publication (no await): the published batches' entries join the cache queries answer
    /// from.
    pub(super) fn publish_epochs(&self, batch_epochs: impl Iterator<Item = (i32, i64)>) {
        let mut epochs = self.epochs.borrow_mut();
        for (epoch, base_offset) in batch_epochs {
            epochs.observe(epoch, base_offset);
        }
    }

    /// After a failed write was repaired (nothing in flight): entries reserved for appends that
    /// failed are forgotten, and the checkpoint, which may hold them, is rewritten before the
    /// next write.
    pub(super) fn reset_reserved_epochs(&self) {
        *self.epochs_reserved.borrow_mut() = self.epochs.borrow().clone();
        self.epochs_written.set(false);
    }

    /// The log was cut at `end_offset` (nothing in flight): entries from there on go. The
    /// checkpoint keeps them until the next append rewrites it; `open` would drop them too.
    pub(super) fn truncate_epochs(&self, end_offset: i64) {
        if self.epochs.borrow_mut().truncate_from_end(end_offset) {
            self.epochs_written.set(false);
        }
        *self.epochs_reserved.borrow_mut() = self.epochs.borrow().clone();
    }
}

/// The cache of a log being opened, with whether the checkpoint on disk equals it: the
/// checkpoint without its entries at or past the log end, or, if it is missing (and the log
/// holds batches) or damaged, the batch headers' epochs, written back durably if it can be.
pub(super) async fn load(
    io: &dyn LogIo,
    dir: &Path,
    segments: &[Rc<Segment>],
    log_end_offset: i64,
) -> Result<(LeaderEpochs, bool), StorageError> {
    let holds_batches = segments.iter().any(|s| s.end_position() > 0);
    let mut epochs = match leader_epochs::read_blocking(dir)? {
        Ok(Some(epochs)) => epochs,
        Ok(None) if !holds_batches => return Ok((LeaderEpochs::default(), false)),
        found => {
            if let Err(reason) = found {
                let path = leader_epochs::checkpoint_path(dir);
                log::warn!("{} is damaged ({reason}); rebuilding it", path.display());
            }
            let listed: Vec<(PathBuf, u64)> = segments
                .iter()
                .map(|s| (s.path.clone(), s.end_position()))
                .collect();
            let mut rebuilt = leader_epochs::rebuild_blocking(&listed)?;
            rebuilt.truncate_from_end(log_end_offset);
            // Best effort (a full disk must not keep the partition closed): if it fails, the
            // next append writes it before its batches.
            let written = leader_epochs::write(io, dir, &rebuilt).await;
            if let Err(error) = &written {
                log::warn!("{}: leader epochs not checkpointed: {error}", dir.display());
            }
            return Ok((rebuilt, written.is_ok()));
        }
    };
    let current = !epochs.truncate_from_end(log_end_offset);
    Ok((epochs, current))
}
