//! Opening a log: recovery of the directory (see `recovery`) turned into live segments.

use std::cell::{Cell, RefCell};
use std::io;
use std::path::Path;
use std::rc::Rc;

use super::clock::now_ms;
use super::failure_log::{CorruptionLog, FailureLog};
use super::{LogInner, PartitionLog};
use crate::append_pipeline::AppendPipeline;
use crate::context::StorageContext;
use crate::fifo_lock::FifoLock;
use crate::io::{DirectIo, LogIo, OpenMode};
use crate::log_start_checkpoint;
use crate::notify::Notify;
use crate::recovery::{self, RecoveredIndex, RecoveredSegment};
use crate::segment::Segment;
use crate::{LogConfig, StorageError};

impl PartitionLog {
    /// Opens the partition in `dir` (creating it if missing) and recovers it (see
    /// `recovery`): sealed segments with a valid index file are not read, the others are
    /// verified batch by batch and cut at their first invalid byte, and the last segment is
    /// scanned unless a clean close left a marker that matches it. Recovery uses blocking file
    /// I/O.
    pub async fn open(
        context: &StorageContext,
        dir: &Path,
        config: LogConfig,
    ) -> Result<PartitionLog, StorageError> {
        PartitionLog::open_with_io(context, dir, config, Rc::new(DirectIo)).await
    }

    /// [`PartitionLog::open`] with segment file I/O through `io` (tests inject faults here).
    pub async fn open_with_io(
        context: &StorageContext,
        dir: &Path,
        config: LogConfig,
        io: Rc<dyn LogIo>,
    ) -> Result<PartitionLog, StorageError> {
        super::assert_valid_config(&config);
        let recovered = recovery::recover_dir(dir, &config)?;
        // Directory syncs go through io_uring, where a relative path fails (EBADF); resolve it
        // once, now that recovery has created the directory.
        let dir = &std::fs::canonicalize(dir)?;
        let checkpoint = log_start_checkpoint::read_blocking(dir)?;
        crate::iopoll_probe::ensure_probed(dir).await?;
        assert!(!recovered.segments.is_empty());
        let segments_scanned = recovered.segments_scanned;
        let interval_bytes = config.index_interval_bytes;
        let (segments, corrupt_ranges_at_open) =
            open_segments(context, recovered.segments, &io, interval_bytes).await?;
        let active = Rc::clone(segments.last().unwrap());
        assert!(!active.is_sealed());
        assert!(segments[..segments.len() - 1].iter().all(|s| s.is_sealed()));
        let tail_block = read_tail_block(&active).await?;
        let log_end_offset = active.next_offset();
        let first = segments[0].base_offset;
        let log_start_offset = start_offset(&*io, dir, checkpoint, first, log_end_offset).await?;
        let active_first_append_ms = (active.end_position() > 0).then(now_ms);
        let (epochs, epochs_written) =
            super::epochs::load(&*io, dir, &segments, log_end_offset).await?;
        let inner = LogInner {
            dir: dir.to_path_buf(),
            io,
            config: RefCell::new(config),
            log_start_offset: Cell::new(log_start_offset),
            segments: RefCell::new(segments),
            log_end_offset: Cell::new(log_end_offset),
            // A restarted leader's tail may be on it alone; the replica logic raises this.
            high_watermark: Cell::new(log_start_offset),
            epochs_reserved: RefCell::new(epochs.clone()),
            epochs: RefCell::new(epochs),
            epochs_written: Cell::new(epochs_written),
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
            context: context.clone(),
            tail_cache_key: context.new_key(),
        };
        Ok(PartitionLog {
            inner: Rc::new(inner),
        })
    }
}

/// The log start: the checkpoint's, within the log. A checkpoint past the log end means the
/// records it was moved over were lost in a crash (they were never fdatasync'd); the log then
/// starts, empty, at its end, and the checkpoint says so, or it would hide what is appended next
/// below it at the next open.
async fn start_offset(
    io: &dyn LogIo,
    dir: &Path,
    checkpoint: Option<i64>,
    first_base_offset: i64,
    log_end_offset: i64,
) -> Result<i64, StorageError> {
    let log_start_offset = checkpoint
        .unwrap_or(0)
        .clamp(first_base_offset, log_end_offset);
    if checkpoint.is_some_and(|start| start > log_end_offset) {
        log_start_checkpoint::write(io, dir, log_start_offset).await?;
    }
    Ok(log_start_offset)
}

/// The recovered segments as live ones, with the number of corrupt ranges recovery fenced in
/// them. Only the active segment's file is opened here; sealed segments open theirs when a read
/// needs it (see `segment_files`), so a log costs one descriptor at rest.
async fn open_segments(
    context: &StorageContext,
    recovered: Vec<RecoveredSegment>,
    io: &Rc<dyn LogIo>,
    index_interval_bytes: u64,
) -> Result<(Vec<Rc<Segment>>, u64), StorageError> {
    let mut segments = Vec::with_capacity(recovered.len());
    let mut corrupt_ranges = 0;
    for mut segment in recovered {
        let fences = std::mem::take(&mut segment.fences);
        corrupt_ranges += fences.len() as u64;
        let end_position = segment.end_position();
        let (base_offset, path) = (segment.base_offset, &segment.path);
        let segment = match segment.index {
            RecoveredIndex::InMemory(index) => {
                let file = io.open(path, OpenMode::Existing).await?;
                Segment::new_active(context, base_offset, path, Rc::clone(io), file, index)
            }
            RecoveredIndex::Persisted(header) => Segment::new_sealed(
                context,
                base_offset,
                path,
                Rc::clone(io),
                header,
                index_interval_bytes,
            ),
        };
        segment.synced_position.set(end_position);
        segment.add_recovered_fences(fences);
        segments.push(Rc::new(segment));
    }
    Ok((segments, corrupt_ranges))
}

/// The bytes `[align_down(end), end)` of the active segment, which the next append rewrites.
pub(super) async fn read_tail_block(segment: &Segment) -> Result<Vec<u8>, StorageError> {
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
