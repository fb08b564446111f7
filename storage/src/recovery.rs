//! Startup recovery with blocking std::fs I/O (startup may block the shard). Sealed segments
//! whose index file is valid and describes the segment's current length are trusted without
//! reading the segment; the others are scanned (every batch verified, the segment cut at its
//! first invalid byte) and get their index file rewritten. The last segment is scanned unless a
//! valid clean-shutdown marker matches it, in which case its persisted index is loaded instead.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::clean_marker::{self, CleanMarker};
use crate::fence::Fence;
use crate::index::SparseIndex;
use crate::index_file::{self, IndexHeader};
use crate::scan::{scan_segment, Scan, ScanEnd};
use crate::segment::{parse_segment_file_name, segment_file_name};
use crate::{leader_epochs, log_start_checkpoint, reset_marker, truncation_marker};
use crate::{LogConfig, StorageError};

/// How recovery knows a segment's batches.
pub(crate) enum RecoveredIndex {
    /// Scanned, or restored from the index file a clean close wrote; the entries are in memory.
    InMemory(SparseIndex),
    /// A sealed segment trusted from its index file's header; not read.
    Persisted(IndexHeader),
}

/// A segment as found on disk after recovery: the file is exactly `end_position` bytes long,
/// holds only valid batches with dense offsets, and is durable.
pub(crate) struct RecoveredSegment {
    pub base_offset: i64,
    pub path: PathBuf,
    pub index: RecoveredIndex,
    /// Damaged ranges the scan found with valid batches after them (see `fence`); the index
    /// covers each as one entry-less stretch of offsets.
    pub fences: Vec<Fence>,
}

impl RecoveredSegment {
    pub fn next_offset(&self) -> i64 {
        match &self.index {
            RecoveredIndex::InMemory(index) => index.next_offset(),
            RecoveredIndex::Persisted(header) => header.next_offset,
        }
    }

    pub fn end_position(&self) -> u64 {
        match &self.index {
            RecoveredIndex::InMemory(index) => index.end_position(),
            RecoveredIndex::Persisted(header) => header.segment_bytes,
        }
    }
}

/// The outcome of [`recover_dir`]: every segment but the last is `Persisted` (its index file is
/// valid), the last is `InMemory`.
pub(crate) struct Recovered {
    pub segments: Vec<RecoveredSegment>,
    /// How many segments were read batch by batch (the rest were trusted from their index).
    pub segments_scanned: usize,
    /// A clean-shutdown marker was removed, or the first segment of a new partition created:
    /// the directory must be synced before the log's changes are acknowledged as durable.
    pub directory_sync_needed: bool,
}

/// Recovers the partition directory `dir`, creating it (with an empty first segment) if needed.
///
/// Each scanned segment is cut at its first invalid byte (torn write, garbage, zero padding, CRC
/// mismatch, offset not following the previous batch). Segments must chain densely: each starts
/// at the offset where the previous one ends. If a segment was cut and the next one no longer
/// follows it, the batches after the cut are lost, and the later segments are deleted so that no
/// offset gap is ever served. A gap between segments that were not cut means files were changed
/// outside this code, and opening fails with `Corrupt` rather than deleting data.
pub(crate) fn recover_dir(dir: &Path, config: &LogConfig) -> Result<Recovered, StorageError> {
    fs::create_dir_all(dir)?;
    finish_reset(dir)?;
    finish_truncation(dir)?;
    let mut listing = list_partition_files(dir)?;
    let below_start_removed = remove_segments_below_log_start(dir, &mut listing)?;
    let (marker_removed, marker) = clean_marker::take_blocking(dir)?;
    if listing.segments.is_empty() {
        // A new partition's first segment is created as a roll creates one: without an fsync
        // of the file or the directory. The log syncs the directory before its first sync
        // completes (`directory_sync_needed`), so nothing acknowledged as durable depends on
        // an unsynced entry, and creating a topic of many partitions costs no fsync per
        // partition. A crash before that loses only an empty segment, which the next open
        // creates again.
        let path = dir.join(segment_file_name(0));
        File::create(&path)?;
        let index = SparseIndex::new(0, config.index_interval_bytes);
        let segment = RecoveredSegment {
            base_offset: 0,
            path,
            index: RecoveredIndex::InMemory(index),
            fences: Vec::new(),
        };
        return Ok(Recovered {
            segments: vec![segment],
            segments_scanned: 0,
            directory_sync_needed: true,
        });
    }
    let (mut segments, last_is_clean) = recover_chain(dir, &listing.segments, marker, config)?;
    let segments_scanned = segments
        .iter()
        .filter(|segment| matches!(segment.index, RecoveredIndex::InMemory(_)))
        .count()
        - usize::from(last_is_clean);
    let mut directory_changed = below_start_removed | write_missing_indexes(&mut segments)?;
    directory_changed |= remove_leftovers(&listing, &segments)?;
    let last = segments.last().expect("at least one segment");
    let last_index_path = index_file::index_path(&last.path);
    if !last_is_clean && last_index_path.exists() {
        // The scanned last segment will be appended to; an index left from an earlier clean
        // close or roll no longer describes it (and is rewritten at the next roll or close).
        index_file::remove_if_exists(&last_index_path)?;
        directory_changed = true;
    }
    if directory_changed {
        sync_directory(dir)?;
    }
    let last = segments.last().expect("at least one segment");
    assert!(matches!(last.index, RecoveredIndex::InMemory(_)));
    if !last_is_clean {
        // Sealed segments were made durable when the log rolled past them (and cut ones when
        // they were cut). What the last one holds is served from now on, so it must be durable
        // too, even if the process that wrote it crashed before its fdatasync. After a clean
        // close it already is.
        File::open(&last.path)?.sync_data()?;
    }
    Ok(Recovered {
        segments,
        segments_scanned,
        directory_sync_needed: marker_removed,
    })
}

/// Finishes a `PartitionLog::reset_to` that a crash interrupted (its marker is still there):
/// unlinks every segment but the one starting at the marker's offset and every index file,
/// empties that segment (creating it if it is missing) durably, unlinks the log start and
/// leader-epoch checkpoints and any truncation marker (they describe the old log), then the
/// marker. Every step is idempotent, so a crash in here is finished by the next open too. The
/// log then opens empty at the offset, as if the reset had completed before the crash: the
/// reset holds the append lock until its marker's removal is durable, and a failure before
/// that poisons the log's syncs, so nothing in the new log was acknowledged as durable.
fn finish_reset(dir: &Path) -> Result<(), StorageError> {
    let Some(offset) = reset_marker::read_blocking(dir)? else {
        return Ok(());
    };
    log::warn!(
        "{}: finishing a reset to offset {offset} that was interrupted",
        dir.display()
    );
    let listing = list_partition_files(dir)?;
    for (base_offset, path) in &listing.segments {
        if *base_offset != offset {
            fs::remove_file(path)?;
        }
    }
    for (_, path) in &listing.indexes {
        index_file::remove_if_exists(path)?;
    }
    let path = dir.join(segment_file_name(offset));
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    file.sync_data()?;
    log_start_checkpoint::remove(dir)?;
    index_file::remove_if_exists(&leader_epochs::checkpoint_path(dir))?;
    truncation_marker::remove(dir)?;
    sync_directory(dir)?;
    reset_marker::remove(dir)?;
    sync_directory(dir)
}

/// Finishes a `PartitionLog::truncate_to` that a crash interrupted (its marker is still there):
/// deletes the segments after the one the marker cuts, cuts that one at the marker's length
/// (if it is longer) and durably, removes its index, then the marker. Every step is idempotent,
/// so a crash in here is finished by the next open too. The log then ends at the marker's
/// offset, as if the truncation had completed before the crash.
fn finish_truncation(dir: &Path) -> Result<(), StorageError> {
    let Some(truncation) = truncation_marker::read_blocking(dir)? else {
        return Ok(());
    };
    log::warn!(
        "{}: finishing a truncation to offset {} that was interrupted",
        dir.display(),
        truncation.offset
    );
    let listing = list_partition_files(dir)?;
    for (base_offset, path) in listing.segments.iter().rev() {
        if *base_offset > truncation.segment_base_offset {
            fs::remove_file(path)?;
            index_file::remove_if_exists(&index_file::index_path(path))?;
        }
    }
    let path = dir.join(segment_file_name(truncation.segment_base_offset));
    if path.exists() {
        let file = OpenOptions::new().write(true).open(&path)?;
        if file.metadata()?.len() > truncation.segment_bytes {
            file.set_len(truncation.segment_bytes)?;
        }
        file.sync_data()?;
        index_file::remove_if_exists(&index_file::index_path(&path))?;
    }
    sync_directory(dir)?;
    truncation_marker::remove(dir)?;
    sync_directory(dir)
}

/// Recovers the segments in order and checks that they chain. Returns them and whether the last
/// one was restored from a clean close instead of scanned.
fn recover_chain(
    dir: &Path,
    files: &[(i64, PathBuf)],
    marker: Option<CleanMarker>,
    config: &LogConfig,
) -> Result<(Vec<RecoveredSegment>, bool), StorageError> {
    let mut recovered: Vec<RecoveredSegment> = Vec::new();
    let mut previous_was_cut = false;
    let mut last_is_clean = false;
    for (file_number, (base_offset, path)) in files.iter().enumerate() {
        if let Some(previous) = recovered.last() {
            let expected = previous.next_offset();
            if *base_offset != expected && previous_was_cut {
                delete_segments_after_cut(dir, &files[file_number..])?;
                break;
            }
            if *base_offset != expected {
                return Err(StorageError::Corrupt(format!(
                    "segment {} starts at offset {base_offset} but the previous segment ends at {expected}",
                    path.display()
                )));
            }
        }
        let is_last = file_number + 1 == files.len();
        let restored = match marker {
            Some(marker) if is_last => restore_clean_last(*base_offset, path, &marker, config)?,
            _ => None,
        };
        let (segment, was_cut) = match restored {
            Some(segment) => {
                last_is_clean = true;
                (segment, false)
            }
            None if is_last => recover_segment(*base_offset, path, config, ScanEnd::Tail)?,
            None => {
                let next_base_offset = files[file_number + 1].0;
                recover_sealed_segment(*base_offset, path, config, next_base_offset)?
            }
        };
        previous_was_cut = was_cut;
        recovered.push(segment);
    }
    Ok((recovered, last_is_clean))
}

/// A sealed segment: trusted if its index file is valid and describes exactly the file's
/// current length, scanned otherwise.
fn recover_sealed_segment(
    base_offset: i64,
    path: &Path,
    config: &LogConfig,
    next_base_offset: i64,
) -> Result<(RecoveredSegment, bool), StorageError> {
    let file_bytes = fs::metadata(path)?.len();
    let index_path = index_file::index_path(path);
    match index_file::read_header_blocking(&index_path)? {
        Ok(header)
            if header.base_offset == base_offset
                && header.segment_bytes == file_bytes
                && header.entry_count > 0 =>
        {
            let segment = RecoveredSegment {
                base_offset,
                path: path.to_path_buf(),
                index: RecoveredIndex::Persisted(header),
                fences: Vec::new(),
            };
            return Ok((segment, false));
        }
        Ok(header) => log::warn!(
            "rebuilding index {}: it describes {} bytes at offset {}, the segment has {file_bytes} at {base_offset}",
            index_path.display(),
            header.segment_bytes,
            header.base_offset
        ),
        Err(reason) => log::warn!("rebuilding index {}: {reason}", index_path.display()),
    }
    recover_segment(
        base_offset,
        path,
        config,
        ScanEnd::Sealed { next_base_offset },
    )
}

/// The last segment after a clean close: its index file, if the marker and the index both
/// describe the segment as it is on disk. `None` means it must be scanned.
fn restore_clean_last(
    base_offset: i64,
    path: &Path,
    marker: &CleanMarker,
    config: &LogConfig,
) -> Result<Option<RecoveredSegment>, StorageError> {
    let file_bytes = fs::metadata(path)?.len();
    if marker.active_base_offset != base_offset || marker.active_segment_bytes != file_bytes {
        log::warn!(
            "clean-shutdown marker does not match {} ({file_bytes} bytes); scanning it",
            path.display()
        );
        return Ok(None);
    }
    let index_path = index_file::index_path(path);
    let loaded = match index_file::read_blocking(&index_path)? {
        Ok(loaded) => loaded,
        Err(reason) => {
            log::warn!("scanning {}: its index {reason}", path.display());
            return Ok(None);
        }
    };
    let header = loaded.header();
    if header.base_offset != base_offset
        || header.segment_bytes != file_bytes
        || header.next_offset != marker.log_end_offset
    {
        log::warn!("scanning {}: its index does not match", path.display());
        return Ok(None);
    }
    Ok(Some(RecoveredSegment {
        base_offset,
        path: path.to_path_buf(),
        index: RecoveredIndex::InMemory(loaded.to_sparse_index(config.index_interval_bytes)),
        fences: Vec::new(),
    }))
}

/// Writes the index file of every scanned segment but the last (which is still appended to) and
/// marks it `Persisted`. Returns whether a file was written.
fn write_missing_indexes(segments: &mut [RecoveredSegment]) -> Result<bool, StorageError> {
    let Some((_, sealed)) = segments.split_last_mut() else {
        return Ok(false);
    };
    let mut written = false;
    for segment in sealed {
        let RecoveredIndex::InMemory(index) = &segment.index else {
            continue;
        };
        let (header, bytes) = index_file::encode(index);
        index_file::write_blocking(&index_file::index_path(&segment.path), &bytes)?;
        segment.index = RecoveredIndex::Persisted(header);
        written = true;
    }
    Ok(written)
}

/// Unlinks the segments wholly below the checkpointed log start: those before the last one that
/// starts at or below it. A DeleteRecords or a retention pass interrupted between its checkpoint
/// and its unlinks leaves them; they chain, but nothing of them is served again. (Their index
/// files go with `remove_leftovers`.) Returns whether any went.
fn remove_segments_below_log_start(
    dir: &Path,
    listing: &mut PartitionFiles,
) -> Result<bool, StorageError> {
    let Some(log_start_offset) = log_start_checkpoint::read_blocking(dir)? else {
        return Ok(false);
    };
    let at_or_below = (listing.segments.iter())
        .rposition(|(base_offset, _)| *base_offset <= log_start_offset)
        .unwrap_or(0);
    for (_, path) in listing.segments.drain(..at_or_below) {
        log::info!(
            "removing {}, below the log start {log_start_offset}",
            path.display()
        );
        fs::remove_file(&path)?;
    }
    Ok(at_or_below > 0)
}

/// Removes temporary files of interrupted writes and index files without a segment. Returns
/// whether anything was removed.
fn remove_leftovers(
    listing: &PartitionFiles,
    segments: &[RecoveredSegment],
) -> Result<bool, StorageError> {
    let kept: BTreeSet<i64> = segments.iter().map(|segment| segment.base_offset).collect();
    let mut removed = false;
    for path in &listing.temporaries {
        index_file::remove_if_exists(path)?;
        removed = true;
    }
    for (base_offset, path) in &listing.indexes {
        if !kept.contains(base_offset) {
            log::info!("removing index {} without a segment", path.display());
            index_file::remove_if_exists(path)?;
            removed = true;
        }
    }
    Ok(removed)
}

struct PartitionFiles {
    /// Sorted by base offset.
    segments: Vec<(i64, PathBuf)>,
    indexes: Vec<(i64, PathBuf)>,
    temporaries: Vec<PathBuf>,
}

/// The files of a partition directory that recovery cares about; others are ignored.
fn list_partition_files(dir: &Path) -> Result<PartitionFiles, StorageError> {
    let mut files = PartitionFiles {
        segments: Vec::new(),
        indexes: Vec::new(),
        temporaries: Vec::new(),
    };
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if !entry.file_type()?.is_file() {
            continue;
        }
        if let Some(base_offset) = parse_segment_file_name(name) {
            files.segments.push((base_offset, entry.path()));
        } else if let Some(base_offset) = index_file::parse_index_file_name(name) {
            files.indexes.push((base_offset, entry.path()));
        } else if index_file::is_temporary_file_name(name) {
            files.temporaries.push(entry.path());
        } else {
            log::debug!("ignoring {} in partition directory", entry.path().display());
        }
    }
    files.segments.sort();
    Ok(files)
}

fn delete_segments_after_cut(dir: &Path, files: &[(i64, PathBuf)]) -> Result<(), StorageError> {
    for (_, path) in files {
        log::warn!(
            "deleting segment {} that follows a truncated segment",
            path.display()
        );
        fs::remove_file(path)?;
        index_file::remove_if_exists(&index_file::index_path(path))?;
    }
    sync_directory(dir)?;
    Ok(())
}

pub(crate) fn sync_directory(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Scans one segment and truncates it (durably) after its last valid batch. Returns whether
/// bytes were cut off.
fn recover_segment(
    base_offset: i64,
    path: &Path,
    config: &LogConfig,
    scan_end: ScanEnd,
) -> Result<(RecoveredSegment, bool), StorageError> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let Scan {
        index,
        fences,
        file_bytes,
    } = scan_segment(&file, base_offset, config.index_interval_bytes, scan_end)?;
    let end_position = index.end_position();
    let was_cut = end_position < file_bytes;
    if was_cut {
        log::warn!(
            "truncating {} from {file_bytes} to {end_position} bytes after the last valid batch (next offset {})",
            path.display(),
            index.next_offset()
        );
        file.set_len(end_position)?;
        file.sync_data()?;
    }
    for fence in &fences {
        log::error!(
            "{}: offsets [{}, {}) at bytes [{}, {}) are corrupt; fenced, the batches after them are served",
            path.display(),
            fence.offset,
            fence.next_offset,
            fence.position,
            fence.end_position
        );
    }
    let segment = RecoveredSegment {
        base_offset,
        path: path.to_path_buf(),
        index: RecoveredIndex::InMemory(index),
        fences,
    };
    Ok((segment, was_cut))
}
