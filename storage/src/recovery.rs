//! Startup recovery with blocking std::fs I/O (startup may block the shard): scan every segment,
//! verify every batch, cut each segment at its first invalid byte, and rebuild the indexes.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::batch::{self, BatchHeader, BATCH_HEADER_BYTES};
use crate::index::SparseIndex;
use crate::segment::{parse_segment_file_name, segment_file_name};
use crate::{LogConfig, StorageError};

/// Read-ahead buffer for the sequential recovery scan.
const RECOVERY_READ_BUFFER_BYTES: usize = 1 << 20;

/// A segment as found on disk after recovery: the file is exactly `index.end_position()` bytes
/// long, holds only valid batches with dense offsets, and is durable.
pub(crate) struct RecoveredSegment {
    pub base_offset: i64,
    pub path: PathBuf,
    pub index: SparseIndex,
}

/// Recovers the partition directory `dir`, creating it (with an empty first segment) if needed.
///
/// Each segment is cut at its first invalid byte (torn write, garbage, zero padding, CRC
/// mismatch, offset not following the previous batch). Segments must chain densely: each starts
/// at the offset where the previous one ends. If a segment was cut and the next one no longer
/// follows it, the batches after the cut are lost, and the later segments are deleted so that no
/// offset gap is ever served. A gap between segments that were not cut means files were changed
/// outside this code, and opening fails with `Corrupt` rather than deleting data.
pub(crate) fn recover_dir(
    dir: &Path,
    config: &LogConfig,
) -> Result<Vec<RecoveredSegment>, StorageError> {
    fs::create_dir_all(dir)?;
    let files = list_segment_files(dir)?;
    if files.is_empty() {
        let path = dir.join(segment_file_name(0));
        File::create(&path)?.sync_all()?;
        sync_directory(dir)?;
        let index = SparseIndex::new(0, config.index_interval_bytes);
        return Ok(vec![RecoveredSegment {
            base_offset: 0,
            path,
            index,
        }]);
    }
    let mut recovered: Vec<RecoveredSegment> = Vec::new();
    let mut previous_was_cut = false;
    for (file_number, (base_offset, path)) in files.iter().enumerate() {
        if let Some(previous) = recovered.last() {
            let expected = previous.index.next_offset();
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
        let (segment, was_cut) = recover_segment(*base_offset, path, config)?;
        previous_was_cut = was_cut;
        recovered.push(segment);
    }
    // Sealed segments were made durable when the log rolled past them (and cut ones when they
    // were cut). What the last one holds is served from now on, so it must be durable too, even
    // if the process that wrote it crashed before its fdatasync.
    let last = recovered.last().expect("at least one segment");
    File::open(&last.path)?.sync_data()?;
    Ok(recovered)
}

/// Segment files in `dir`, sorted by base offset. Other files are ignored.
fn list_segment_files(dir: &Path) -> Result<Vec<(i64, PathBuf)>, StorageError> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        match name.to_str().and_then(parse_segment_file_name) {
            Some(base_offset) if entry.file_type()?.is_file() => {
                files.push((base_offset, entry.path()))
            }
            _ => log::debug!("ignoring {} in partition directory", entry.path().display()),
        }
    }
    files.sort();
    Ok(files)
}

fn delete_segments_after_cut(dir: &Path, files: &[(i64, PathBuf)]) -> Result<(), StorageError> {
    for (_, path) in files {
        log::warn!(
            "deleting segment {} that follows a truncated segment",
            path.display()
        );
        fs::remove_file(path)?;
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
) -> Result<(RecoveredSegment, bool), StorageError> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let file_bytes = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(RECOVERY_READ_BUFFER_BYTES, &file);
    let mut index = SparseIndex::new(base_offset, config.index_interval_bytes);
    let mut batch_bytes = Vec::new();
    while let Some(header) = read_valid_batch(
        &mut reader,
        file_bytes - index.end_position(),
        index.next_offset(),
        &mut batch_bytes,
    )? {
        let position = index.end_position();
        let bytes = header.total_bytes() as u64;
        index.observe(
            header.base_offset,
            position,
            bytes,
            header.offset_count(),
            header.max_timestamp,
        );
    }
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
    let segment = RecoveredSegment {
        base_offset,
        path: path.to_path_buf(),
        index,
    };
    Ok((segment, was_cut))
}

/// Reads the next batch if it is whole and valid and has base offset `expected_offset`;
/// `None` marks the end of the valid prefix. Only I/O failures are errors.
fn read_valid_batch(
    reader: &mut impl Read,
    remaining_bytes: u64,
    expected_offset: i64,
    batch_bytes: &mut Vec<u8>,
) -> Result<Option<BatchHeader>, StorageError> {
    if remaining_bytes < BATCH_HEADER_BYTES as u64 {
        return Ok(None);
    }
    batch_bytes.resize(BATCH_HEADER_BYTES, 0);
    reader.read_exact(batch_bytes)?;
    let Ok(header) = BatchHeader::parse(batch_bytes) else {
        return Ok(None);
    };
    let total_bytes = header.total_bytes();
    if header.base_offset != expected_offset || total_bytes as u64 > remaining_bytes {
        return Ok(None);
    }
    if header
        .base_offset
        .checked_add(header.offset_count())
        .is_none()
    {
        return Ok(None);
    }
    // total_bytes <= BATCH_BYTES_MAX was checked by parse before this allocation.
    batch_bytes.resize(total_bytes, 0);
    reader.read_exact(&mut batch_bytes[BATCH_HEADER_BYTES..])?;
    match batch::check_batch(batch_bytes) {
        Ok(checked) => {
            assert_eq!(checked, header);
            Ok(Some(header))
        }
        Err(_) => Ok(None),
    }
}
