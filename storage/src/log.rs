//! `PartitionLog`: the segments of one partition, the append path with direct I/O, group commit,
//! reads, timestamp lookups and retention.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::fifo_lock::{FifoLock, Ticket};
use bytes::Bytes;

use glommio::io::DmaBuffer;

use crate::append_pipeline::{AppendPipeline, Reservation};
use crate::batch::{self, ValidatedBatches};
use crate::clean_marker::{self, CleanMarker};
use crate::fence::Fence;
use crate::index::SparseIndex;
use crate::index_file;
use crate::io::{DirectIo, LogIo, OpenMode, SegmentFile};
use crate::log_start_checkpoint;
use crate::notify::Notify;
use crate::recovery::{self, RecoveredIndex};
use crate::segment::{segment_file_name, Segment};
use crate::tail_cache;
use crate::{
    AppendInfo, LogConfig, RetentionOutcome, RetentionPolicy, StorageError,
    SEGMENT_PREALLOCATE_MIN_BYTES,
};

/// The log of one partition: an ordered list of segments, the last of which is active (appended
/// to).
///
/// Concurrency: the type is `!Send` and lives on one glommio executor, but any number of tasks
/// on that executor may call its methods concurrently. Appends reserve their place (with the
/// rolls they do) in call order under an async lock, which retention also takes; their writes
/// then run concurrently, up to `set_append_writes_in_flight`, and they publish in reservation
/// order (see `append_pipeline`). Each runs in its own spawned task, so dropping an `append`
/// future after its first poll does not abandon a half-done write: it completes (or fails) and
/// the state stays consistent. `log_end_offset` and each segment's end move forward only after
/// the write that put the bytes on disk, and every earlier one, completed, so `read` never
/// returns bytes that are not yet written.
pub struct PartitionLog {
    inner: Rc<LogInner>,
}

struct LogInner {
    dir: PathBuf,
    io: Rc<dyn LogIo>,
    /// Changed by [`PartitionLog::set_config`]; read by rolls and preallocation.
    config: RefCell<LogConfig>,
    /// Ordered by base offset; dense: each segment starts where the previous one ends.
    segments: RefCell<Vec<Rc<Segment>>>,
    log_start_offset: Cell<i64>,
    log_end_offset: Cell<i64>,
    /// The bytes `[align_down(end), end)` of the active segment as published. The pipeline keeps
    /// the tail as reserved, which each write starts with; this one is where it restarts after
    /// a failed write.
    tail_block: RefCell<Vec<u8>>,
    /// Serialises the reservations of appends in call order (see `fifo_lock`), and rolls,
    /// retention and close with them.
    append_lock: FifoLock,
    /// The appends whose writes are in flight (see `append_pipeline`).
    pipeline: AppendPipeline,
    /// Orders the unlinking of deleted segments (retention, DeleteRecords), which runs after the
    /// append lock is released so that produce never waits for file deletion, while keeping the
    /// files on disk a dense chain at every moment.
    removal_lock: FifoLock,
    /// Segments taken out of the list whose files a failed removal left on disk, oldest first.
    /// The next removal unlinks them before any newer one, so the files on disk keep chaining.
    pending_removals: RefCell<Vec<Rc<Segment>>>,
    /// Wall-clock time of the first append to the active segment (or of the open that found it
    /// non-empty): `segment_ms` counts from here.
    active_first_append_ms: Cell<Option<i64>>,
    appended: Rc<Notify>,
    /// Every offset below this is durable.
    synced_offset: Cell<i64>,
    sync_in_flight: Cell<bool>,
    sync_finished: Rc<Notify>,
    /// The file size of the active segment as far as this log made it: preallocated, or
    /// extended by a write. Appends that end below it need no `fallocate`.
    active_allocated_bytes: Cell<u64>,
    /// Set once `fallocate` reported the file system does not support it.
    preallocate_unsupported: Cell<bool>,
    /// Failures of appends, reads and syncs are logged once per run of failures (see
    /// `FailureLog`), not once per request.
    append_failures: FailureLog,
    read_failures: FailureLog,
    sync_failures: FailureLog,
    /// Corrupt ranges fenced in this log (see `fence`): counted, and logged at a bounded rate.
    corruption: CorruptionLog,
    /// Set when a segment file was created and the directory entry is not yet durable.
    directory_sync_needed: Cell<bool>,
    /// After a failed fdatasync the state of the file on disk is unknown (the kernel may have
    /// dropped the failed writes), so every later sync fails too until the log is reopened and
    /// recovered.
    sync_failed: Cell<bool>,
    closed: Cell<bool>,
    segments_scanned_at_open: usize,
    /// This log's key in the executor's tail cache.
    tail_cache_key: u64,
}

impl PartitionLog {
    /// Opens the partition in `dir` (creating it if missing) and recovers it (see
    /// `recovery`): sealed segments with a valid index file are not read, the others are
    /// verified batch by batch and cut at their first invalid byte, and the last segment is
    /// scanned unless a clean close left a marker that matches it. Recovery uses blocking file
    /// I/O.
    pub async fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog, StorageError> {
        PartitionLog::open_with_io(dir, config, Rc::new(DirectIo)).await
    }

    /// [`PartitionLog::open`] with segment file I/O through `io` (tests inject faults here).
    pub async fn open_with_io(
        dir: &Path,
        config: LogConfig,
        io: Rc<dyn LogIo>,
    ) -> Result<PartitionLog, StorageError> {
        assert!(config.segment_bytes > 0, "segment_bytes must be positive");
        assert!(
            config.index_interval_bytes > 0,
            "index_interval_bytes must be positive"
        );
        let recovered = recovery::recover_dir(dir, &config)?;
        // Directory syncs go through io_uring, where a relative path fails (EBADF); resolve it
        // once, now that recovery has created the directory.
        let dir = &std::fs::canonicalize(dir)?;
        let checkpoint = log_start_checkpoint::read_blocking(dir)?;
        crate::iopoll_probe::ensure_probed(dir).await?;
        assert!(!recovered.segments.is_empty());
        let segments_scanned = recovered.segments_scanned;
        let mut segments = Vec::with_capacity(recovered.segments.len());
        // Only the active segment's file is opened here; sealed segments open theirs when a
        // read needs it (see `segment_files`), so a log costs one descriptor at rest.
        let mut corrupt_ranges_at_open = 0;
        for mut segment in recovered.segments {
            let fences = std::mem::take(&mut segment.fences);
            corrupt_ranges_at_open += fences.len() as u64;
            let end_position = segment.end_position();
            let (base_offset, path) = (segment.base_offset, &segment.path);
            let segment = match segment.index {
                RecoveredIndex::InMemory(index) => {
                    let file = io.open(path, OpenMode::Existing).await?;
                    Segment::new_active(base_offset, path, Rc::clone(&io), file, index)
                }
                RecoveredIndex::Persisted(header) => Segment::new_sealed(
                    base_offset,
                    path,
                    Rc::clone(&io),
                    header,
                    config.index_interval_bytes,
                ),
            };
            segment.synced_position.set(end_position);
            segment.add_recovered_fences(fences);
            segments.push(Rc::new(segment));
        }
        let active = Rc::clone(segments.last().unwrap());
        assert!(!active.is_sealed());
        assert!(segments[..segments.len() - 1].iter().all(|s| s.is_sealed()));
        let tail_block = read_tail_block(&active).await?;
        let log_end_offset = active.next_offset();
        // A checkpoint past the log end means the records it was moved over were lost in a
        // crash (they were never fdatasync'd); the log then starts, empty, at its end.
        let log_start_offset = checkpoint
            .unwrap_or(0)
            .clamp(segments[0].base_offset, log_end_offset);
        let active_first_append_ms = (active.end_position() > 0).then(now_ms);
        let inner = LogInner {
            dir: dir.to_path_buf(),
            io,
            config: RefCell::new(config),
            log_start_offset: Cell::new(log_start_offset),
            segments: RefCell::new(segments),
            log_end_offset: Cell::new(log_end_offset),
            pipeline: AppendPipeline::new(log_end_offset, active.end_position(), &tail_block),
            tail_block: RefCell::new(tail_block),
            append_lock: FifoLock::default(),
            removal_lock: FifoLock::default(),
            pending_removals: RefCell::new(Vec::new()),
            active_first_append_ms: Cell::new(active_first_append_ms),
            appended: Rc::new(Notify::default()),
            synced_offset: Cell::new(log_end_offset),
            sync_in_flight: Cell::new(false),
            sync_finished: Rc::new(Notify::default()),
            active_allocated_bytes: Cell::new(active.end_position()),
            preallocate_unsupported: Cell::new(false),
            append_failures: FailureLog::new("appends"),
            read_failures: FailureLog::new("reads"),
            sync_failures: FailureLog::new("syncs"),
            corruption: CorruptionLog::new(corrupt_ranges_at_open),
            directory_sync_needed: Cell::new(recovered.directory_sync_needed),
            sync_failed: Cell::new(false),
            closed: Cell::new(false),
            segments_scanned_at_open: segments_scanned,
            tail_cache_key: tail_cache::new_key(),
        };
        Ok(PartitionLog {
            inner: Rc::new(inner),
        })
    }

    /// How many damaged ranges this log has fenced since it was opened (found by the recovery
    /// scan or by reads): their offsets answer `CorruptRange`, the rest of the log is served.
    pub fn corrupt_ranges_fenced(&self) -> u64 {
        self.inner.corruption.fenced.get()
    }

    /// How many segments `open` read batch by batch (0 after a clean close, 1 after a crash if
    /// every sealed segment's index was valid).
    pub fn segments_scanned_at_open(&self) -> usize {
        self.inner.segments_scanned_at_open
    }

    /// Bytes of index entries this log holds in memory itself: the active segment's. Sealed
    /// segments' entries live in the executor's bounded cache
    /// ([`crate::SEALED_INDEX_CACHE_BYTES_MAX`]).
    pub fn index_memory_bytes(&self) -> usize {
        let segments = self.inner.segments.borrow();
        segments.iter().map(|s| s.index_memory_bytes()).sum()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.log_start_offset.get()
    }

    /// The offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.inner.log_end_offset.get()
    }

    /// Lets up to `writes_in_flight` appends (1..=[`crate::APPEND_WRITES_IN_FLIGHT_MAX`]) have
    /// their writes in flight at once; the log starts with
    /// [`crate::APPEND_WRITES_IN_FLIGHT_DEFAULT`].
    pub fn set_append_writes_in_flight(&self, writes_in_flight: usize) {
        self.inner.pipeline.set_writes_in_flight(writes_in_flight);
    }

    /// Every offset below this is durable (fdatasync'd).
    pub fn synced_offset(&self) -> i64 {
        self.inner.synced_offset.get()
    }

    /// Assigns offsets to `batches` (rewriting each batch's baseOffset, and setting its
    /// partitionLeaderEpoch to 0, in the copy written to disk), writes them with direct I/O, and
    /// returns once the write completed. Not yet durable: see [`PartitionLog::sync_to`]. All
    /// batches of one append go to one segment; if they would make the active segment exceed
    /// `segment_bytes`, a new segment is started first (so an append larger than `segment_bytes`
    /// sits in a segment of its own).
    pub async fn append(&self, batches: ValidatedBatches) -> Result<AppendInfo, StorageError> {
        let inner = Rc::clone(&self.inner);
        // The ticket is drawn now, in call order; the task always runs to use it.
        let ticket = inner.append_lock.ticket();
        let task =
            glommio::spawn_local(async move { inner.append(ticket, batches).await }).detach();
        let result = task.await.unwrap_or(Err(StorageError::Closed));
        self.inner.append_failures.observe(&self.inner.dir, &result);
        result
    }

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
        let inner = &self.inner;
        loop {
            if inner.sync_failed.get() {
                return Err(sync_failed_error());
            }
            let target = offset.min(inner.log_end_offset.get() - 1);
            if inner.synced_offset.get() > target {
                return Ok(());
            }
            if inner.sync_in_flight.get() {
                inner.sync_finished.listen().await;
                continue;
            }
            inner.sync_once().await?;
        }
    }

    /// Whole batches starting with the one holding `offset`, at most `max_bytes` (capped at
    /// [`crate::READ_BYTES_MAX`]) in total unless
    /// the first batch alone is larger: then exactly that batch (KIP-74). May stop early at a
    /// segment end. Empty at `offset == log_end_offset`; `OffsetOutOfRange` outside
    /// `[log_start_offset, log_end_offset]`. The bytes are the stored batches, unchanged.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, StorageError> {
        let log_start_offset = self.log_start_offset();
        let log_end_offset = self.log_end_offset();
        if offset < log_start_offset || offset > log_end_offset {
            return Err(self.out_of_range(offset));
        }
        if offset == log_end_offset {
            return Ok(Bytes::new());
        }
        let key = self.inner.tail_cache_key;
        if let Some(bytes) = tail_cache::read(key, offset, max_bytes, log_end_offset) {
            return Ok(bytes);
        }
        let segment = self.inner.segment_holding(offset);
        let result = segment.read(offset, max_bytes).await;
        if result.is_err() && offset < self.log_start_offset() {
            // Retention or DeleteRecords took the segment while the read waited: its file may
            // have been unlinked before the read reopened it. The offset is gone, as for a read
            // that came a moment later; the failure says nothing about the disk.
            return Err(self.out_of_range(offset));
        }
        self.inner.read_failures.observe(&self.inner.dir, &result);
        for fence in segment.take_unreported_fences() {
            self.inner.corruption.observe(&segment.path, &fence);
        }
        result
    }

    fn out_of_range(&self, offset: i64) -> StorageError {
        StorageError::OffsetOutOfRange {
            offset,
            log_start_offset: self.log_start_offset(),
            log_end_offset: self.log_end_offset(),
        }
    }

    /// Kafka ListOffsets by timestamp: the earliest offset whose record timestamp is at least
    /// `timestamp_ms`, with that timestamp, or `None` if there is none. Batches are decoded to find
    /// the exact record, compressed ones decompressed (bounded, streamed); LogAppendTime batches
    /// answer with their baseOffset and maxTimestamp, since every record carries that timestamp.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let segments: Vec<Rc<Segment>> = self.inner.segments.borrow().clone();
        for segment in segments {
            let max_timestamp = segment.max_timestamp();
            if max_timestamp.is_none_or(|max| max < timestamp_ms) {
                continue;
            }
            if segment.next_offset() <= self.log_start_offset() {
                continue;
            }
            let found = segment.offset_for_timestamp(timestamp_ms).await;
            if found.is_err() && segment.next_offset() <= self.log_start_offset() {
                // Retention took the segment during the lookup (see `read`): the answer lies
                // in the segments that remain.
                continue;
            }
            for fence in segment.take_unreported_fences() {
                self.inner.corruption.observe(&segment.path, &fence);
            }
            if let Some((offset, timestamp)) = found? {
                // Records below the log start are deleted; the first one that is not answers.
                return Ok(Some((offset.max(self.log_start_offset()), timestamp)));
            }
        }
        Ok(None)
    }

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

    /// Replaces the tuning (a topic's configs changed). Takes effect from the next append:
    /// `segment_bytes` and `segment_ms` decide the next roll, `index_interval_bytes` applies to
    /// segments started after this call.
    pub fn set_config(&self, config: LogConfig) {
        assert!(config.segment_bytes > 0, "segment_bytes must be positive");
        assert!(
            config.index_interval_bytes > 0,
            "index_interval_bytes must be positive"
        );
        *self.inner.config.borrow_mut() = config;
    }

    /// The tuning in force.
    pub fn config(&self) -> LogConfig {
        self.inner.config.borrow().clone()
    }

    /// Completes the next time `log_end_offset` grows (or the log is closed). Cheap; any number
    /// of waiters. Create it before checking `log_end_offset` to avoid missing an append.
    pub fn wait_for_append(&self) -> impl Future<Output = ()> + 'static {
        self.inner.appended.listen()
    }

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
        tail_cache::forget(inner.tail_cache_key);
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

impl Drop for LogInner {
    fn drop(&mut self) {
        tail_cache::forget(self.tail_cache_key);
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
        clean_marker::write(&self.dir, &marker).await?;
        Ok(self.io.sync_dir(&self.dir).await?)
    }

    /// Puts the batches an append has just published into the executor's tail cache.
    fn cache_appended(&self, segment: &Segment, written: &[u8], base_offset: i64) {
        if tail_cache::accepts(written.len()) {
            let bytes = Bytes::copy_from_slice(written);
            let (key, next_offset) = (self.tail_cache_key, self.log_end_offset.get());
            tail_cache::insert(key, segment.base_offset, base_offset, next_offset, bytes);
        } else {
            tail_cache::forget(self.tail_cache_key);
        }
    }

    fn active_segment(&self) -> Rc<Segment> {
        Rc::clone(self.segments.borrow().last().unwrap())
    }

    fn segment_holding(&self, offset: i64) -> Rc<Segment> {
        let segments = self.segments.borrow();
        let after = segments.partition_point(|segment| segment.base_offset <= offset);
        let segment = Rc::clone(&segments[after.checked_sub(1).expect("offset below log start")]);
        assert!(offset < segment.next_offset());
        segment
    }

    /// One append through the pipeline (see `append_pipeline`): reserve and submit under the
    /// append lock, wait for the write outside it, publish in reservation order.
    async fn append(
        &self,
        ticket: Ticket,
        batches: ValidatedBatches,
    ) -> Result<AppendInfo, StorageError> {
        let (reservation, segment, buffer) = {
            let _turn = self.append_lock.acquire(ticket).await;
            self.reserve(&batches).await?
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
            Ok(()) => Ok(self.publish(&reservation, &segment, &buffer, &batches)),
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
    ) -> Result<(Reservation, Rc<Segment>, Rc<DmaBuffer>), StorageError> {
        if self.closed.get() {
            return Err(StorageError::Closed);
        }
        self.pipeline.wait_for_slot().await;
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
        let buffer = self.build_write_buffer(segment.active_file().as_ref(), batches, base_offset);
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

    /// The write of `reservation` and of every earlier append completed: publishes the new state.
    /// No await, so every observer sees the index, the segment end and the log end move together.
    fn publish(
        &self,
        reservation: &Reservation,
        segment: &Segment,
        buffer: &DmaBuffer,
        batches: &ValidatedBatches,
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
        self.cache_appended(
            segment,
            &buffer.as_bytes()[tail_len..new_tail_end],
            base_offset,
        );
        let log_append_time_ms = now_ms();
        if self.active_first_append_ms.get().is_none() {
            self.active_first_append_ms.set(Some(log_append_time_ms));
        }
        self.appended.notify_all();
        AppendInfo {
            base_offset,
            last_offset: next_offset - 1,
            log_append_time_ms,
        }
    }

    /// With nothing in flight after a failed write: the failed writes, and later ones that
    /// succeeded but were not published, may have left whole batches past the published end.
    /// Recovery would take such a batch for part of the log if it followed the end directly, so
    /// the tail block is rewritten with zeros after the end and the file is cut after it. On
    /// error the pipeline stays failed and the next append tries again.
    async fn repair_after_failure(&self) -> Result<(), StorageError> {
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
        self.active_allocated_bytes.set(block_end);
        self.pipeline
            .reset_to(self.log_end_offset.get(), end_position, &tail_block);
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
        tail_cache::drop_below(self.tail_cache_key, log_start_offset);
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
        log_start_checkpoint::write(&self.dir, offset).await?;
        self.io.sync_dir(&self.dir).await?;
        self.log_start_offset.set(offset);
        tail_cache::drop_below(self.tail_cache_key, offset);
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
    async fn unlink_in_order(&self, queue: &mut Vec<Rc<Segment>>) -> Result<(), StorageError> {
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

    /// One aligned buffer: [partial tail block][batches with offsets assigned][zero padding].
    fn build_write_buffer(
        &self,
        file: &dyn SegmentFile,
        batches: &ValidatedBatches,
        base_offset: i64,
    ) -> Rc<DmaBuffer> {
        let tail = self.pipeline.reserved_tail();
        let data_len = tail.len() + batches.len_bytes();
        let mut buffer = file.alloc_dma_buffer(file.align_up(data_len as u64) as usize);
        let bytes = buffer.as_bytes_mut();
        bytes[..tail.len()].copy_from_slice(&tail);
        let batch_bytes = &mut bytes[tail.len()..data_len];
        batch_bytes.copy_from_slice(batches.bytes());
        let mut offset = base_offset;
        for summary in batches.summaries() {
            let batch = &mut batch_bytes[summary.position..summary.position + summary.total_bytes];
            batch::set_base_offset_and_epoch(batch, offset);
            offset += summary.offset_count;
        }
        bytes[data_len..].fill(0);
        Rc::new(buffer)
    }

    /// Starts a new segment if appending `append_bytes` would make a non-empty active segment
    /// exceed `segment_bytes`, or if its first append is `segment_ms` or more ago (see
    /// `roll_needed`). The old segment is trimmed to its last batch (dropping the zero padding)
    /// and fdatasync'd before the new one exists, so every sealed segment is durable and
    /// recovery only has to make the last segment durable. That costs one fdatasync per roll on
    /// the append path (once per `segment_bytes`). The appends in flight are waited for first.
    async fn roll_if_needed(&self, append_bytes: u64) -> Result<(), StorageError> {
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
        let segment = Segment::new_active(base_offset, &path, Rc::clone(&self.io), file, index);
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

/// Logs the first I/O failure of a run of failures of one kind of operation, and the first
/// success after it. A full or failing disk fails every append until it recovers; logging each
/// failed request would flood the log. Other errors (out of range, closed) are not logged here.
struct FailureLog {
    what: &'static str,
    failing: Cell<bool>,
}

impl FailureLog {
    fn new(what: &'static str) -> FailureLog {
        FailureLog {
            what,
            failing: Cell::new(false),
        }
    }

    fn observe<T>(&self, dir: &Path, result: &Result<T, StorageError>) {
        match result {
            Err(StorageError::Io(error)) if !self.failing.replace(true) => log::error!(
                "{} in {} fail: {error}; further failures are logged only after one succeeds",
                self.what,
                dir.display()
            ),
            Ok(_) if self.failing.replace(false) => {
                log::info!("{} in {} succeed again", self.what, dir.display())
            }
            _ => {}
        }
    }
}

/// Counts the corrupt ranges a log fences and logs them: at most one line per
/// `CORRUPTION_LOG_INTERVAL_MS`, with the number of ranges not logged since, so a badly damaged
/// disk cannot flood the log.
struct CorruptionLog {
    fenced: Cell<u64>,
    last_logged_ms: Cell<Option<i64>>,
    unlogged: Cell<u64>,
}

/// Least time between two log lines about newly fenced ranges of one log.
const CORRUPTION_LOG_INTERVAL_MS: i64 = 10_000;

impl CorruptionLog {
    fn new(fenced_at_open: u64) -> CorruptionLog {
        CorruptionLog {
            fenced: Cell::new(fenced_at_open),
            last_logged_ms: Cell::new(None),
            unlogged: Cell::new(0),
        }
    }

    fn observe(&self, path: &Path, fence: &Fence) {
        self.fenced.set(self.fenced.get() + 1);
        let now = now_ms();
        let due = self
            .last_logged_ms
            .get()
            .is_none_or(|last| now.saturating_sub(last) >= CORRUPTION_LOG_INTERVAL_MS);
        if !due {
            self.unlogged.set(self.unlogged.get() + 1);
            return;
        }
        self.last_logged_ms.set(Some(now));
        log::error!(
            "{}: offsets [{}, {}) at bytes [{}, {}) fail their checks; fenced (reads of them fail, the batches after them are served); {} more ranges fenced since the last such line",
            path.display(),
            fence.offset,
            fence.next_offset,
            fence.position,
            fence.end_position,
            self.unlogged.replace(0)
        );
    }
}

fn earlier_append_failed_error() -> StorageError {
    let message = "the write of an earlier append failed";
    StorageError::Io(io::Error::other(message))
}

fn sync_failed_error() -> StorageError {
    let message = "an earlier fdatasync failed; reopen the log to recover";
    StorageError::Io(io::Error::other(message))
}

/// The bytes `[align_down(end), end)` of the active segment, which the next append rewrites.
async fn read_tail_block(segment: &Segment) -> Result<Vec<u8>, StorageError> {
    let end_position = segment.end_position();
    let start = segment.active_file().align_down(end_position);
    let len = (end_position - start) as usize;
    if len == 0 {
        return Ok(Vec::new());
    }
    let bytes = segment.active_file().read_at(start, len).await?;
    if bytes.len() != len {
        let message = format!("short read of the tail block of {}", segment.path.display());
        return Err(StorageError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            message,
        )));
    }
    Ok(bytes.to_vec())
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

fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    elapsed.as_millis() as i64
}
