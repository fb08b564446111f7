//! One segment file `<base_offset:020>.log`: its DMA file handle, its sparse index and the reads
//! that serve fetches and timestamp lookups from it.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use glommio::io::ReadResult;

use crate::batch::{self, BatchHeader, BATCH_HEADER_BYTES};
use crate::context::StorageContext;
use crate::fence::{self, Fence, RegionEnd, Resume, RESUME_SEARCH_BYTES_MAX};
use crate::index::{IndexEntry, SparseIndex};
use crate::index_file::{self, IndexHeader, LoadedIndex};
use crate::io::{LogIo, OpenMode, SegmentFile};
use crate::read_ahead::READ_AHEAD_BYTES;
use crate::{scan, StorageError};

/// Most bytes one `read` returns (unless its first batch alone is larger, which
/// `BATCH_BYTES_MAX` bounds). Bounds the buffer a fetch with a huge `max_bytes` can make us
/// allocate; Kafka's default `fetch.max.bytes` is 50 MiB.
pub const READ_BYTES_MAX: usize = 64 << 20;

const _: () = assert!(batch::BATCH_BYTES_MAX <= READ_BYTES_MAX);

/// Length of the zero-padded decimal base offset in a segment file name.
const SEGMENT_NAME_DIGITS: usize = 20;
const SEGMENT_SUFFIX: &str = ".log";

pub(crate) fn segment_file_name(base_offset: i64) -> String {
    assert!(base_offset >= 0);
    format!(
        "{base_offset:0width$}{SEGMENT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    )
}

/// The base offset encoded in a segment file name, or `None` if `name` is not a segment file.
pub fn parse_segment_file_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok()
}

/// The index of a segment: the active segment's entries live in memory and grow with appends;
/// a sealed segment keeps only its index file's header, and its entries are loaded on demand
/// through the context's sealed-index cache (`index_cache`).
pub(crate) enum SegmentIndex {
    Active(SparseIndex),
    Sealed(IndexHeader),
}

/// A segment of the log. The bytes `[0, end_position)` of the file are whole, checked batches
/// with dense offsets `[base_offset, next_offset)`; anything after `end_position` (zero padding
/// of the last DMA write, or a write in flight) is never read.
///
/// Concurrency: the index (and with it `end_position`) only grows, and only after the write that
/// put the bytes on disk completed. Readers take a snapshot of `end_position` and read below it;
/// a concurrent append rewrites the block holding `end_position`, but with the same bytes below
/// `end_position`, so such a read sees identical data whichever version it gets. Sealing (at a
/// roll) swaps the in-memory entries for the identical persisted ones, so a lookup that spans
/// the swap sees the same entry numbers either way.
///
/// Files: the active segment holds its file open. A sealed segment's file is opened on demand
/// and kept in the context's bounded cache of open files (`segment_files`), which closes the
/// least recently used; a read holds its own reference, so it is never closed under a read.
pub(crate) struct Segment {
    pub base_offset: i64,
    pub path: PathBuf,
    /// The active segment's file; `None` once sealed (the file then lives in `segment_files`).
    active_file: RefCell<Option<Rc<dyn SegmentFile>>>,
    /// Reopens the file of a sealed segment whose file was closed.
    io: Rc<dyn LogIo>,
    /// File bytes below this position are fdatasync'd.
    pub synced_position: Cell<u64>,
    index: RefCell<SegmentIndex>,
    /// The caches this segment's index, readahead chunk and file live in.
    context: StorageContext,
    /// This segment's key in the context's sealed-index, readahead and open-file caches.
    cache_key: u64,
    index_interval_bytes: u64,
    /// Damaged ranges found so far (at recovery or by reads), ordered by position; reads stop
    /// before them and step over them (see `fence`).
    fences: RefCell<Vec<Fence>>,
    /// Fences found by reads that the log has not yet counted and logged.
    fences_unreported: RefCell<Vec<Fence>>,
}

impl Segment {
    pub fn new_active(
        context: &StorageContext,
        base_offset: i64,
        path: &Path,
        io: Rc<dyn LogIo>,
        file: Rc<dyn SegmentFile>,
        index: SparseIndex,
    ) -> Segment {
        assert_eq!(
            index.end_position() == 0,
            index.next_offset() == base_offset
        );
        assert_eq!(index.base_offset(), base_offset);
        let interval_bytes = index.interval_bytes();
        let segment = Segment::new(
            context,
            base_offset,
            path,
            io,
            SegmentIndex::Active(index),
            interval_bytes,
        );
        *segment.active_file.borrow_mut() = Some(file);
        segment
    }

    /// A sealed segment; its file is opened when a read first needs it.
    pub fn new_sealed(
        context: &StorageContext,
        base_offset: i64,
        path: &Path,
        io: Rc<dyn LogIo>,
        header: IndexHeader,
        index_interval_bytes: u64,
    ) -> Segment {
        assert_eq!(header.base_offset, base_offset);
        assert!(header.entry_count > 0, "a sealed segment holds a batch");
        let index = SegmentIndex::Sealed(header);
        Segment::new(context, base_offset, path, io, index, index_interval_bytes)
    }

    fn new(
        context: &StorageContext,
        base_offset: i64,
        path: &Path,
        io: Rc<dyn LogIo>,
        index: SegmentIndex,
        index_interval_bytes: u64,
    ) -> Segment {
        Segment {
            base_offset,
            path: path.to_path_buf(),
            active_file: RefCell::new(None),
            io,
            synced_position: Cell::new(0),
            index: RefCell::new(index),
            context: context.clone(),
            cache_key: context.new_key(),
            index_interval_bytes,
            fences: RefCell::new(Vec::new()),
            fences_unreported: RefCell::new(Vec::new()),
        }
    }

    /// The file of the active segment, which appends, rolls and repairs write.
    pub fn active_file(&self) -> Rc<dyn SegmentFile> {
        let file = self.active_file.borrow();
        Rc::clone(file.as_ref().expect("only the active segment is written"))
    }

    /// The segment's file for a read, a sync or an unlink: the active segment's own, else the
    /// open file in the context's cache, else the file opened again (and cached).
    pub async fn open_file(&self) -> Result<Rc<dyn SegmentFile>, StorageError> {
        if let Some(file) = self.active_file.borrow().as_ref() {
            return Ok(Rc::clone(file));
        }
        if let Some(file) = self.context.segment_files().get(self.cache_key) {
            return Ok(file);
        }
        let file = self.io.open(&self.path, OpenMode::Existing).await?;
        // A concurrent read may have opened it too; the cache keeps one, the other closes
        // when its read is done.
        let cached = Rc::clone(&file);
        self.context.segment_files().insert(self.cache_key, cached);
        Ok(file)
    }

    /// Takes the segment's open file, if any, for the caller to close.
    pub fn take_file(&self) -> Option<Rc<dyn SegmentFile>> {
        let active = self.active_file.borrow_mut().take();
        active.or_else(|| self.context.segment_files().take(self.cache_key))
    }

    /// Records fences that recovery found (and logged).
    pub fn add_recovered_fences(&self, fences: Vec<Fence>) {
        let mut known = self.fences.borrow_mut();
        known.extend(fences);
        known.sort_by_key(|fence| fence.position);
    }

    /// The fences reads found since the last call, for the log to count and log.
    pub fn take_unreported_fences(&self) -> Vec<Fence> {
        std::mem::take(&mut *self.fences_unreported.borrow_mut())
    }

    /// The known fence that holds `offset`, if any.
    fn fence_holding(&self, offset: i64) -> Option<Fence> {
        let fences = self.fences.borrow();
        fences
            .iter()
            .find(|fence| fence.holds_offset(offset))
            .copied()
    }

    /// The known fence that starts at `position`, if any.
    fn fence_at(&self, position: u64) -> Option<Fence> {
        let fences = self.fences.borrow();
        fences
            .iter()
            .find(|fence| fence.position == position)
            .copied()
    }

    /// Where the first known fence at or after `position` starts (or `end`).
    fn fence_start_after(&self, position: u64, end: u64) -> u64 {
        let fences = self.fences.borrow();
        let next = fences
            .iter()
            .map(|fence| fence.position)
            .find(|start| *start >= position);
        next.map_or(end, |start| start.min(end))
    }

    pub fn end_position(&self) -> u64 {
        match &*self.index.borrow() {
            SegmentIndex::Active(index) => index.end_position(),
            SegmentIndex::Sealed(header) => header.segment_bytes,
        }
    }

    pub fn next_offset(&self) -> i64 {
        match &*self.index.borrow() {
            SegmentIndex::Active(index) => index.next_offset(),
            SegmentIndex::Sealed(header) => header.next_offset,
        }
    }

    /// Largest batch maxTimestamp in the segment, `None` if it holds no batch.
    pub fn max_timestamp(&self) -> Option<i64> {
        match &*self.index.borrow() {
            SegmentIndex::Active(index) => index.max_timestamp(),
            SegmentIndex::Sealed(header) => header.max_timestamp(),
        }
    }

    pub fn is_sealed(&self) -> bool {
        matches!(&*self.index.borrow(), SegmentIndex::Sealed(_))
    }

    /// Bytes of index entries held by this segment itself (the active segment's).
    pub fn index_memory_bytes(&self) -> usize {
        match &*self.index.borrow() {
            SegmentIndex::Active(index) => index.memory_bytes(),
            SegmentIndex::Sealed(_) => 0,
        }
    }

    /// Extends the active segment's index by appended batches.
    pub fn with_active_index<T>(&self, update: impl FnOnce(&mut SparseIndex) -> T) -> T {
        match &mut *self.index.borrow_mut() {
            SegmentIndex::Active(index) => update(index),
            SegmentIndex::Sealed(_) => panic!("{} is sealed", self.path.display()),
        }
    }

    /// The persisted form of the active segment's index, which describes the segment as it is.
    pub fn encode_active_index(&self) -> (IndexHeader, Vec<u8>) {
        self.with_active_index(|index| index_file::encode(index))
    }

    /// Makes the segment sealed: `file_bytes` is its index as written to its index file.
    pub fn seal(&self, file_bytes: &[u8]) {
        let loaded = LoadedIndex::from_file_bytes(file_bytes).expect("an index just encoded");
        let header = *loaded.header();
        assert_eq!(header.segment_bytes, self.end_position());
        assert_eq!(header.next_offset, self.next_offset());
        *self.index.borrow_mut() = SegmentIndex::Sealed(header);
        self.context
            .index_cache()
            .insert(self.cache_key, Rc::new(loaded));
        let file = self.active_file.borrow_mut().take();
        let file = file.expect("an active segment has its file");
        self.context.segment_files().insert(self.cache_key, file);
    }

    /// The entries of a sealed segment: from the cache, else from its index file, else (the file
    /// is gone or damaged since open) rebuilt by scanning the segment and written again.
    async fn sealed_index(&self, header: IndexHeader) -> Result<Rc<LoadedIndex>, StorageError> {
        if let Some(loaded) = self.context.index_cache().get(self.cache_key) {
            return Ok(loaded);
        }
        let path = index_file::index_path(&self.path);
        let loaded = match index_file::read(&path, &header).await? {
            Ok(loaded) => loaded,
            Err(reason) => {
                log::warn!("rebuilding index {}: {reason}", path.display());
                self.rebuild_sealed_index(&header).await?
            }
        };
        let loaded = Rc::new(loaded);
        let cached = Rc::clone(&loaded);
        self.context.index_cache().insert(self.cache_key, cached);
        Ok(loaded)
    }

    async fn rebuild_sealed_index(
        &self,
        header: &IndexHeader,
    ) -> Result<LoadedIndex, StorageError> {
        let index = scan::scan_sealed_segment(
            &self.path,
            self.base_offset,
            header.next_offset,
            self.index_interval_bytes,
        )?;
        if index.end_position() != header.segment_bytes || index.next_offset() != header.next_offset
        {
            return Err(StorageError::Corrupt(format!(
                "{} no longer holds the batches it held at open",
                self.path.display()
            )));
        }
        let (rebuilt, file_bytes) = index_file::encode(&index);
        index_file::write(&index_file::index_path(&self.path), file_bytes.clone()).await?;
        *self.index.borrow_mut() = SegmentIndex::Sealed(rebuilt);
        Ok(LoadedIndex::from_file_bytes(&file_bytes).expect("an index just encoded"))
    }

    /// Entry number `number` of the index and the position where its interval ends (the next
    /// entry's position, or `end`).
    async fn interval(
        &self,
        number: usize,
        end: u64,
    ) -> Result<Option<(IndexEntry, u64)>, StorageError> {
        let header = match &*self.index.borrow() {
            SegmentIndex::Active(index) => {
                return Ok(index.entry(number).map(|entry| {
                    let next = index.entry(number + 1);
                    (entry, next.map_or(end, |next| next.position.min(end)))
                }))
            }
            SegmentIndex::Sealed(header) => *header,
        };
        let loaded = self.sealed_index(header).await?;
        Ok(loaded.entry(number).map(|entry| {
            let next = loaded.entry(number + 1);
            (entry, next.map_or(end, |next| next.position.min(end)))
        }))
    }

    /// The number of the last index entry at or below `offset`, which must lie in this segment.
    async fn floor_number(&self, offset: i64) -> Result<usize, StorageError> {
        let header = match &*self.index.borrow() {
            SegmentIndex::Active(index) => {
                return Ok(index.floor(offset).expect("offset below segment base"))
            }
            SegmentIndex::Sealed(header) => *header,
        };
        let loaded = self.sealed_index(header).await?;
        Ok(loaded.floor(offset).expect("offset below segment base"))
    }

    /// The last index entry at or below `offset`, which must lie in this segment.
    async fn floor_entry(&self, offset: i64) -> Result<IndexEntry, StorageError> {
        let header = match &*self.index.borrow() {
            SegmentIndex::Active(index) => {
                let number = index.floor(offset).expect("offset below segment base");
                return Ok(index.entry(number).unwrap());
            }
            SegmentIndex::Sealed(header) => *header,
        };
        let loaded = self.sealed_index(header).await?;
        let number = loaded.floor(offset).expect("offset below segment base");
        Ok(loaded.entry(number).unwrap())
    }

    /// Reads exactly `len` bytes at `position`, which must lie below `end_position`.
    async fn read_exact(&self, position: u64, len: usize) -> Result<ReadResult, StorageError> {
        assert!(position + len as u64 <= self.end_position());
        let bytes = self.open_file().await?.read_at(position, len).await?;
        if bytes.len() != len {
            let message = format!(
                "short read of {} bytes at {position} in {}",
                bytes.len(),
                self.path.display()
            );
            return Err(StorageError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                message,
            )));
        }
        Ok(bytes)
    }

    /// The bytes `[position, position + len)`, below `end`, for a fetch: from this segment's
    /// readahead chunk if it holds them, else by one direct read of at least
    /// [`READ_AHEAD_BYTES`] (up to `end`) that becomes the segment's chunk.
    async fn read_ahead(&self, position: u64, len: usize, end: u64) -> Result<Bytes, StorageError> {
        assert!(position + len as u64 <= end);
        if let Some(bytes) = self.context.read_ahead().get(self.cache_key, position, len) {
            return Ok(bytes);
        }
        let read_len = (len.max(READ_AHEAD_BYTES) as u64).min(end - position) as usize;
        let read = self.read_exact(position, read_len).await?;
        let chunk = Bytes::copy_from_slice(&read);
        self.context
            .read_ahead()
            .insert(self.cache_key, position, chunk.clone());
        Ok(chunk.slice(..len))
    }

    fn corrupt(&self, position: u64, what: &str) -> StorageError {
        StorageError::Corrupt(format!(
            "{what} at position {position} of {}",
            self.path.display()
        ))
    }

    /// Position and header of the batch holding `offset`, searching below `end`, stepping over
    /// known fences. A header that fails its checks is fenced (`discover_fence`): then the
    /// offset is either in the fence (`CorruptRange`) or after it, and the walk goes on there.
    async fn find_batch(&self, offset: i64, end: u64) -> Result<(u64, BatchHeader), StorageError> {
        if let Some(fence) = self.fence_holding(offset) {
            return Err(corrupt_range(&fence));
        }
        let entry = self.floor_entry(offset).await?;
        let (mut position, mut expected_offset) = (entry.position, entry.offset);
        // The batch walked over last: its length is not covered by its CRC, so a bad header
        // after it may be its own damage.
        let mut previous: Option<(u64, i64)> = None;
        loop {
            assert!(
                position < end,
                "offset {offset} not found below the segment end"
            );
            let fence = match self.fence_at(position) {
                Some(fence) => Some(fence),
                None => match self.walk_header(position, end, expected_offset).await? {
                    Ok(header) if header.last_offset() >= offset => return Ok((position, header)),
                    Ok(header) => {
                        previous = Some((position, expected_offset));
                        position += header.total_bytes() as u64;
                        expected_offset = header.next_offset();
                        None
                    }
                    Err(()) => Some(
                        self.fence_bad_header(previous, position, expected_offset, end)
                            .await?,
                    ),
                },
            };
            if let Some(fence) = fence {
                if fence.holds_offset(offset) {
                    return Err(corrupt_range(&fence));
                }
                (position, expected_offset) = (fence.end_position, fence.next_offset);
                previous = None;
            }
        }
    }

    /// Position and header of the batch holding `offset` (which must be below `next_offset`).
    pub async fn batch_holding(&self, offset: i64) -> Result<(u64, BatchHeader), StorageError> {
        assert!(self.base_offset <= offset && offset < self.next_offset());
        self.find_batch(offset, self.end_position()).await
    }

    /// The header at `position` if it parses, fits below `end` and holds `expected_offset`.
    async fn walk_header(
        &self,
        position: u64,
        end: u64,
        expected_offset: i64,
    ) -> Result<Result<BatchHeader, ()>, StorageError> {
        if end - position < BATCH_HEADER_BYTES as u64 {
            return Ok(Err(()));
        }
        let bytes = self.read_ahead(position, BATCH_HEADER_BYTES, end).await?;
        match BatchHeader::parse(&bytes) {
            Ok(header)
                if header.base_offset == expected_offset
                    && header.total_bytes() as u64 <= end - position =>
            {
                Ok(Ok(header))
            }
            _ => Ok(Err(())),
        }
    }

    /// Fences a bad header at `position`, or the batch walked over before it if that one fails
    /// its checks (its damaged length led the walk astray).
    async fn fence_bad_header(
        &self,
        previous: Option<(u64, i64)>,
        position: u64,
        expected_offset: i64,
        end: u64,
    ) -> Result<Fence, StorageError> {
        if let Some((previous_position, previous_offset)) = previous {
            let len = (position - previous_position) as usize;
            let bytes = self.read_exact(previous_position, len).await?;
            if batch::check_batch_integrity(&bytes).is_err() {
                return self
                    .discover_fence(previous_position, previous_offset, end)
                    .await;
            }
        }
        self.discover_fence(position, expected_offset, end).await
    }

    /// Finds where valid batches resume after the bad batch at `position` (which should hold
    /// `offset`), records the fence and returns it. The search is bounded by the next index
    /// entry (a batch boundary with a known offset) or the segment end, and by
    /// `RESUME_SEARCH_BYTES_MAX`; if it finds nothing, the fence reaches that boundary.
    async fn discover_fence(
        &self,
        position: u64,
        offset: i64,
        end: u64,
    ) -> Result<Fence, StorageError> {
        if let Some(fence) = self.fence_at(position) {
            return Ok(fence);
        }
        let boundary = self.boundary_after(offset, position, end).await?;
        let boundary_position = position + boundary.position as u64;
        let region_end = boundary_position.min(position + RESUME_SEARCH_BYTES_MAX as u64);
        let region = self
            .read_exact(position, (region_end - position) as usize)
            .await?;
        let region_end_kind = RegionEnd {
            anchor: (region_end == boundary_position).then_some(boundary),
            zeros_end_batches: false,
        };
        let resume = fence::find_resume(&region, offset, region_end_kind).unwrap_or(boundary);
        let fence = Fence::new(position, offset, resume);
        let mut fences = self.fences.borrow_mut();
        fences.push(fence);
        fences.sort_by_key(|fence| fence.position);
        self.fences_unreported.borrow_mut().push(fence);
        Ok(fence)
    }

    /// The first batch boundary after `position` (which holds `offset`) known without reading
    /// the segment: the next index entry, or the segment end with its next offset. Relative to
    /// `position`.
    async fn boundary_after(
        &self,
        offset: i64,
        position: u64,
        end: u64,
    ) -> Result<Resume, StorageError> {
        let mut number = self.floor_number(offset).await?;
        while let Some((entry, _)) = self.interval(number, end).await? {
            if entry.position > position {
                assert!(entry.offset > offset);
                return Ok(Resume {
                    position: (entry.position - position) as usize,
                    offset: entry.offset,
                });
            }
            number += 1;
        }
        Ok(Resume {
            position: (end - position) as usize,
            offset: self.next_offset(),
        })
    }

    /// Whole batches from the one holding `offset`: at most `max_bytes` unless the first batch
    /// alone is larger, in which case exactly that batch (KIP-74). Stops at the segment end and
    /// before a fence. Served from the segment's readahead chunk when it holds the range, so
    /// sequential fetches cost one direct read per [`READ_AHEAD_BYTES`]; every returned batch is
    /// CRC-checked either way. A batch that fails its checks is fenced: the read stops before
    /// it, or fails with `CorruptRange` if it holds `offset`.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, StorageError> {
        let end = self.end_position();
        assert!(offset >= self.base_offset && offset < self.next_offset());
        // Each round either returns or fences one more range; a read holding a fenced offset
        // returns at once.
        loop {
            let (start, first) = self.find_batch(offset, end).await?;
            match self.read_checked(start, first, max_bytes, end).await? {
                Ok(bytes) => return Ok(bytes),
                Err((position, expected_offset)) => {
                    let fence = self.discover_fence(position, expected_offset, end).await?;
                    if position == start && fence.holds_offset(offset) {
                        return Err(corrupt_range(&fence));
                    }
                    if position > start {
                        // The batches before the fence are whole and checked: serve them.
                        return self
                            .read_checked(start, first, max_bytes, end)
                            .await?
                            .map_err(|_| {
                                self.corrupt(start, "batches before a fence changed between reads")
                            });
                    }
                }
            }
        }
    }

    /// The checked batches from `start` (whose header is `first`), up to `max_bytes`, the
    /// segment end or the next fence; or the position and expected offset of the first batch
    /// that fails its checks.
    async fn read_checked(
        &self,
        start: u64,
        first: BatchHeader,
        max_bytes: usize,
        end: u64,
    ) -> Result<Result<Bytes, (u64, i64)>, StorageError> {
        let limit = self.fence_start_after(start + 1, end);
        let available = (limit - start) as usize;
        let len = available
            .min(max_bytes)
            .min(READ_BYTES_MAX)
            .max(first.total_bytes().min(available));
        let bytes = self.read_ahead(start, len, end).await?;
        let mut taken = 0usize;
        let mut expected_offset = first.base_offset;
        while taken < len {
            let position = start + taken as u64;
            match batch::check_batch_integrity(&bytes[taken..]) {
                Ok(header) if header.base_offset == expected_offset => {
                    expected_offset = header.next_offset();
                    taken += header.total_bytes();
                }
                // The last batch may be cut by `len` (not by the segment end or a fence).
                Err(batch::BatchError::Truncated { needed, .. })
                    if taken > 0 && position + (needed as u64) <= limit =>
                {
                    break
                }
                _ => return Ok(Err((position, expected_offset))),
            }
        }
        assert!(taken > 0 && taken <= len);
        Ok(Ok(bytes.slice(..taken)))
    }

    /// The earliest record in this segment with timestamp at least `timestamp_ms`, as
    /// `(offset, timestamp)`. Skips index intervals whose largest batch timestamp is smaller.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let end = self.end_position();
        for entry_number in 0.. {
            let Some((entry, interval_end)) = self.interval(entry_number, end).await? else {
                break;
            };
            if entry.position >= end {
                break;
            }
            if entry.max_timestamp < timestamp_ms {
                continue;
            }
            let found = self
                .search_interval(
                    (entry.position, entry.offset),
                    interval_end,
                    end,
                    timestamp_ms,
                )
                .await?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// Walks the batches in `[position, interval_end)`, decoding only those whose header says
    /// they hold a late enough timestamp.
    async fn search_interval(
        &self,
        (mut position, mut offset): (u64, i64),
        interval_end: u64,
        end: u64,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        while position < interval_end {
            if let Some(fence) = self.fence_at(position) {
                (position, offset) = (fence.end_position, fence.next_offset);
                continue;
            }
            let Ok(header) = self.walk_header(position, end, offset).await? else {
                self.discover_fence(position, offset, end).await?;
                continue;
            };
            if header.max_timestamp >= timestamp_ms {
                let bytes = self.read_exact(position, header.total_bytes()).await?;
                if batch::check_batch_integrity(&bytes).ok() != Some(header) {
                    self.discover_fence(position, offset, end).await?;
                    continue;
                }
                if let Some(found) = batch::first_record_at_or_after(&bytes, &header, timestamp_ms)?
                {
                    return Ok(Some(found));
                }
            }
            position += header.total_bytes() as u64;
            offset = header.next_offset();
            glommio::yield_if_needed().await;
        }
        Ok(None)
    }
}

fn corrupt_range(fence: &Fence) -> StorageError {
    StorageError::CorruptRange {
        first_offset: fence.offset,
        next_offset: fence.next_offset,
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.context.index_cache().forget(self.cache_key);
        self.context.read_ahead().forget(self.cache_key);
        drop(self.context.segment_files().take(self.cache_key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_roundtrip() {
        assert_eq!(segment_file_name(42), "00000000000000000042.log");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.log"),
            Some(42)
        );
        assert_eq!(parse_segment_file_name("0000000000000000042.log"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.index"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.log"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.log"), None);
    }
}
