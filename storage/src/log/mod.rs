//! `PartitionLog`: the segments of one partition. Each file holds one concern: `open` (recovery
//! into a live log), `append` (the write path and preallocation), `roll`, `read` (fetches and
//! timestamp lookups), `retention` (retention, DeleteRecords and unlinking), `sync` (group
//! commit), `close`, `truncate` (followers' truncation) and `epochs` (the leader-epoch cache).

mod append;
mod clock;
mod close;
mod epochs;
mod failure_log;
mod high_watermark;
mod open;
mod read;
mod reset;
mod retention;
mod roll;
mod sync;
mod truncate;

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;

use crate::append_pipeline::AppendPipeline;
use crate::context::StorageContext;
use crate::fifo_lock::FifoLock;
use crate::io::LogIo;
use crate::leader_epochs::LeaderEpochs;
use crate::notify::Notify;
use crate::segment::Segment;
use crate::LogConfig;
use failure_log::{CorruptionLog, FailureLog};

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
    /// The leader-epoch cache of the published log (see `epochs.rs`).
    epochs: RefCell<LeaderEpochs>,
    /// The cache with the reserved appends' batches too.
    epochs_reserved: RefCell<LeaderEpochs>,
    /// The checkpoint on disk equals `epochs_reserved`.
    epochs_written: Cell<bool>,
    /// Offsets below it may be served to consumers (see `high_watermark.rs`).
    high_watermark: Cell<i64>,
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
    /// The caches this log and its segments use.
    context: StorageContext,
    /// This log's key in the context's tail cache.
    tail_cache_key: u64,
}

impl PartitionLog {
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
    /// segments' entries live in the context's bounded cache
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

    /// Replaces the tuning (a topic's configs changed). Takes effect from the next append:
    /// `segment_bytes` and `segment_ms` decide the next roll, `index_interval_bytes` applies to
    /// segments started after this call.
    pub fn set_config(&self, config: LogConfig) {
        assert_valid_config(&config);
        *self.inner.config.borrow_mut() = config;
    }

    /// The tuning in force.
    pub fn config(&self) -> LogConfig {
        self.inner.config.borrow().clone()
    }

    /// Completes the next time the high watermark grows (or the log is closed). Cheap; any
    /// number of waiters. Create it before checking the high watermark to avoid missing a move.
    pub fn wait_for_append(&self) -> impl Future<Output = ()> + 'static {
        self.inner.appended.listen()
    }
}

/// A `LogConfig` a log can run with (a caller's bug otherwise).
fn assert_valid_config(config: &LogConfig) {
    assert!(config.segment_bytes > 0, "segment_bytes must be positive");
    assert!(
        config.index_interval_bytes > 0,
        "index_interval_bytes must be positive"
    );
}

impl Drop for LogInner {
    fn drop(&mut self) {
        self.context.tail_cache().forget(self.tail_cache_key);
    }
}

impl LogInner {
    fn active_segment(&self) -> Rc<Segment> {
        Rc::clone(self.segments.borrow().last().unwrap())
    }
}
