//! The segment scan: verifying a segment file batch by batch from its start, building its sparse
//! index and fencing damaged ranges that valid batches follow (see `fence`). Recovery scans the
//! segments it cannot trust; a sealed segment whose index file went bad after open is rescanned.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::batch::{self, BatchHeader, BATCH_HEADER_BYTES};
use crate::fence::{self, Fence, RegionEnd, Resume, FENCE_MAX_TIMESTAMP, RESUME_SEARCH_BYTES_MAX};
use crate::index::SparseIndex;
use crate::StorageError;

/// Read-ahead buffer for the sequential scan.
const SCAN_READ_BUFFER_BYTES: usize = 1 << 20;

/// How a scanned segment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScanEnd {
    /// The last segment: it may end in a torn write and the zeros of preallocation, cut off.
    Tail,
    /// A sealed segment, trimmed and fdatasync'd at its roll: the next segment starts at
    /// `next_base_offset`, and damage anywhere in it is fenced, never cut.
    Sealed { next_base_offset: i64 },
}

/// What a scan found: the index of the valid batches and fences, the fences, the file length.
pub(crate) struct Scan {
    pub index: SparseIndex,
    pub fences: Vec<Fence>,
    pub file_bytes: u64,
}

/// Rebuilds the index of a sealed segment whose index file went missing or bad after open,
/// without changing the segment. `next_offset` is where the segment ends.
pub(crate) fn scan_sealed_segment(
    path: &Path,
    base_offset: i64,
    next_offset: i64,
    interval_bytes: u64,
) -> Result<SparseIndex, StorageError> {
    let file = File::open(path)?;
    let scan_end = ScanEnd::Sealed {
        next_base_offset: next_offset,
    };
    Ok(scan_segment(&file, base_offset, interval_bytes, scan_end)?.index)
}

/// Verifies batches from the start of `file`. At a bad batch that valid batches follow, fences
/// it and goes on (see `fence_after`); otherwise the valid prefix ends there.
pub(crate) fn scan_segment(
    file: &File,
    base_offset: i64,
    interval_bytes: u64,
    scan_end: ScanEnd,
) -> Result<Scan, StorageError> {
    let file_bytes = file.metadata()?.len();
    scan_bytes(file, file_bytes, base_offset, interval_bytes, scan_end)
}

/// The index of the first `end_position` bytes of a segment, which hold whole batches (or
/// fenced ranges) up to `next_offset`: the part a truncation keeps. Nothing past them is read.
pub(crate) fn scan_prefix(
    path: &Path,
    base_offset: i64,
    interval_bytes: u64,
    end_position: u64,
    next_offset: i64,
) -> Result<Scan, StorageError> {
    let file = File::open(path)?;
    let scan_end = ScanEnd::Sealed {
        next_base_offset: next_offset,
    };
    scan_bytes(&file, end_position, base_offset, interval_bytes, scan_end)
}

/// [`scan_segment`] of the first `file_bytes` bytes of `file`.
fn scan_bytes(
    file: &File,
    file_bytes: u64,
    base_offset: i64,
    interval_bytes: u64,
    scan_end: ScanEnd,
) -> Result<Scan, StorageError> {
    let mut reader = BufReader::with_capacity(SCAN_READ_BUFFER_BYTES, file);
    let mut index = SparseIndex::new(base_offset, interval_bytes);
    let mut fences = Vec::new();
    let mut batch_bytes = Vec::new();
    loop {
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
        let position = index.end_position();
        if position == file_bytes {
            break;
        }
        let Some(fence) = fence_after(file, position, index.next_offset(), file_bytes, scan_end)?
        else {
            break;
        };
        let count = fence.next_offset - fence.offset;
        index.observe(
            fence.offset,
            position,
            fence.bytes(),
            count,
            FENCE_MAX_TIMESTAMP,
        );
        fences.push(fence);
        reader.seek(SeekFrom::Start(fence.end_position))?;
    }
    Ok(Scan {
        index,
        fences,
        file_bytes,
    })
}

/// The fence of the bad batch at `position` (which should hold `expected_offset`), or `None` if
/// the segment's valid batches end there: in the last segment, a batch that looks unwritten (a
/// torn write) or one no valid batch follows. A sealed segment's damage is always fenced, up to
/// its end and the next segment's base offset if nothing valid follows within the search.
fn fence_after(
    file: &File,
    position: u64,
    expected_offset: i64,
    file_bytes: u64,
    scan_end: ScanEnd,
) -> Result<Option<Fence>, StorageError> {
    let region_len = (file_bytes - position).min(RESUME_SEARCH_BYTES_MAX as u64) as usize;
    let mut region = vec![0u8; region_len];
    file.read_exact_at(&mut region, position)?;
    let resume = match scan_end {
        ScanEnd::Tail if fence::looks_unwritten(&region, position) => None,
        ScanEnd::Tail => {
            let end = RegionEnd {
                anchor: None,
                zeros_end_batches: true,
            };
            fence::find_resume(&region, expected_offset, end)
        }
        ScanEnd::Sealed { next_base_offset } if next_base_offset > expected_offset => {
            let segment_end = Resume {
                position: (file_bytes - position) as usize,
                offset: next_base_offset,
            };
            let reaches_end = region_len as u64 == file_bytes - position;
            let end = RegionEnd {
                anchor: reaches_end.then_some(segment_end),
                zeros_end_batches: false,
            };
            Some(fence::find_resume(&region, expected_offset, end).unwrap_or(segment_end))
        }
        ScanEnd::Sealed { .. } => None,
    };
    Ok(resume.map(|resume| Fence::new(position, expected_offset, resume)))
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
