//! A cache of the most recently appended batches of every partition log of a storage context (one
//! per shard), bounded by one byte budget shared by all of them, so that consumers reading the tail
//! of a log are answered from memory without touching the disk.
//!
//! Each append that completed is inserted as one chunk: the exact stored bytes (offsets assigned),
//! as a `Bytes` that reads hand out as zero-copy slices. A log's chunks are contiguous and end at
//! the log's end offset: a chunk that would not continue them (after a skipped insert) drops the
//! older ones first. When the budget is exceeded, the oldest chunks of the executor are evicted
//! first, whichever log they belong to; that is always the front of that log's chunks, so what
//! remains of each log stays contiguous.
//!
//! One per storage context (see `context`), keyed by the log's context key. Slices a read handed
//! out keep their chunk's memory alive after eviction, until the response is written; the budget
//! bounds what the cache itself holds.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use crate::batch::BatchHeader;
use crate::READ_BYTES_MAX;

/// Default budget of one context's (shard's) tail cache. Enough for a few seconds of appends at the
/// throughput one core sustains, so consumers that keep up with producers read from memory.
pub const TAIL_CACHE_BYTES_DEFAULT: usize = 64 << 20;

/// Largest budget an executor accepts: the cache lives in RAM next to everything else.
pub const TAIL_CACHE_BYTES_MAX: usize = 16 << 30;

/// What one cached chunk costs besides its bytes (its `Bytes` handle, deque slot and the entry in
/// the eviction order), charged to the budget so that many tiny batches cannot exceed it.
const CHUNK_OVERHEAD_BYTES: usize = 96;

/// The eviction order is compacted when it holds this many more entries than live chunks
/// (entries of chunks dropped by invalidation are removed lazily).
const ORDER_STALE_ENTRIES_MAX: usize = 4096;

const _: () = assert!(TAIL_CACHE_BYTES_DEFAULT <= TAIL_CACHE_BYTES_MAX);

struct Chunk {
    /// The segment the batches were written to: a read stops at a segment end, as on disk.
    segment_base_offset: i64,
    base_offset: i64,
    next_offset: i64,
    bytes: Bytes,
    /// Insertion number on this executor: the eviction order.
    sequence: u64,
}

impl Chunk {
    fn charge(&self) -> usize {
        self.bytes.len() + CHUNK_OVERHEAD_BYTES
    }
}

/// One log's cached chunks, contiguous in offsets and in insertion order.
#[derive(Default)]
struct LogChunks {
    chunks: VecDeque<Chunk>,
}

impl LogChunks {
    fn end_offset(&self) -> Option<i64> {
        self.chunks.back().map(|chunk| chunk.next_offset)
    }
}

/// The chunks of every log of a storage context, within one byte budget.
pub(crate) struct TailCache {
    logs: HashMap<u64, LogChunks>,
    /// (log key, chunk sequence) in insertion order; entries whose chunk is gone are skipped.
    order: VecDeque<(u64, u64)>,
    chunks_live: usize,
    bytes: usize,
    bytes_max: usize,
    next_sequence: u64,
}

impl Default for TailCache {
    fn default() -> Self {
        TailCache {
            logs: HashMap::new(),
            order: VecDeque::new(),
            chunks_live: 0,
            bytes: 0,
            bytes_max: TAIL_CACHE_BYTES_DEFAULT,
            next_sequence: 0,
        }
    }
}

impl TailCache {
    pub fn new(bytes_max: usize) -> TailCache {
        let mut cache = TailCache::default();
        cache.set_bytes_max(bytes_max);
        cache
    }

    /// Sets the budget, evicting the oldest chunks to meet it. 0 disables the cache.
    pub fn set_bytes_max(&mut self, bytes_max: usize) {
        assert!(
            bytes_max <= TAIL_CACHE_BYTES_MAX,
            "tail cache budget {bytes_max} over {TAIL_CACHE_BYTES_MAX}"
        );
        self.bytes_max = bytes_max;
        self.evict_to(bytes_max);
    }

    pub fn bytes_max(&self) -> usize {
        self.bytes_max
    }

    /// Bytes the cache holds, overheads included.
    pub fn cached_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether an append of `len_bytes` would be kept; lets the caller skip building the chunk.
    pub fn accepts(&self, len_bytes: usize) -> bool {
        len_bytes + CHUNK_OVERHEAD_BYTES <= self.bytes_max
    }

    /// Caches the batches `[base_offset, next_offset)` of log `key`, which the log has just
    /// published to its segment starting at `segment_base_offset`. A chunk that does not
    /// continue the log's cached chunks replaces them; one larger than the whole budget is not
    /// kept, and drops the log's older chunks, which no longer end at the log end.
    pub fn insert(
        &mut self,
        key: u64,
        segment_base_offset: i64,
        base_offset: i64,
        next_offset: i64,
        bytes: Bytes,
    ) {
        assert!(segment_base_offset <= base_offset && base_offset < next_offset);
        assert!(!bytes.is_empty());
        let contiguous = self
            .logs
            .get(&key)
            .and_then(LogChunks::end_offset)
            .is_none_or(|end| end == base_offset);
        if !contiguous || bytes.len() + CHUNK_OVERHEAD_BYTES > self.bytes_max {
            self.drop_log(key);
        }
        if bytes.len() + CHUNK_OVERHEAD_BYTES > self.bytes_max {
            return;
        }
        self.next_sequence += 1;
        let chunk = Chunk {
            segment_base_offset,
            base_offset,
            next_offset,
            bytes,
            sequence: self.next_sequence,
        };
        let charge = chunk.charge();
        self.evict_to(self.bytes_max - charge);
        self.bytes += charge;
        self.chunks_live += 1;
        self.order.push_back((key, chunk.sequence));
        self.logs.entry(key).or_default().chunks.push_back(chunk);
        assert!(self.bytes <= self.bytes_max);
    }

    /// Whole batches of log `key` from the one holding `offset`, at most `max_bytes` (capped at
    /// [`READ_BYTES_MAX`]) unless the first batch alone is larger (KIP-74), if the cache holds
    /// `offset` and its chunks end at `log_end_offset`; `None` otherwise. Like a read from disk
    /// it stops at the end of the segment. A read within one chunk is a slice of it; a read
    /// across chunks is copied into one buffer.
    pub fn read(
        &self,
        key: u64,
        offset: i64,
        max_bytes: usize,
        log_end_offset: i64,
    ) -> Option<Bytes> {
        let log = self.logs.get(&key)?;
        if log.end_offset() != Some(log_end_offset) {
            return None;
        }
        let first = log.chunks.front()?;
        if offset < first.base_offset || offset >= log_end_offset {
            return None;
        }
        let limit = max_bytes.min(READ_BYTES_MAX);
        let index = log
            .chunks
            .partition_point(|chunk| chunk.next_offset <= offset);
        Some(collect(&log.chunks, index, offset, limit))
    }

    /// Drops log `key`'s chunks that end at or below `log_start_offset` (after retention or
    /// DeleteRecords).
    pub fn drop_below(&mut self, key: u64, log_start_offset: i64) {
        let Some(log) = self.logs.get_mut(&key) else {
            return;
        };
        let mut dropped = Vec::new();
        while let Some(front) = log.chunks.front() {
            if front.next_offset > log_start_offset {
                // A chunk holding the start stays (DeleteRecords can move the start inside a
                // batch); `PartitionLog::read` refuses offsets below the start before it
                // consults the cache.
                break;
            }
            dropped.push(log.chunks.pop_front().unwrap());
        }
        if log.chunks.is_empty() {
            self.logs.remove(&key);
        }
        for chunk in dropped {
            self.forget_chunk(&chunk);
        }
        self.compact_order_if_needed();
    }

    /// Drops every chunk of log `key` (close, delete, drop).
    pub fn forget(&mut self, key: u64) {
        self.drop_log(key);
    }
}

/// Whole batches from the one holding `offset` in `chunks[index]` onwards, within `limit` bytes
/// except for the first batch.
fn collect(chunks: &VecDeque<Chunk>, index: usize, offset: i64, limit: usize) -> Bytes {
    let chunk = &chunks[index];
    assert!(chunk.base_offset <= offset && offset < chunk.next_offset);
    let start = batch_position(chunk, offset);
    let mut pieces: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    let mut expected_offset = None;
    let segment_base_offset = chunk.segment_base_offset;
    let same_segment = |chunk: &&Chunk| chunk.segment_base_offset == segment_base_offset;
    'chunks: for chunk in chunks.range(index..).take_while(same_segment) {
        let mut position = if pieces.is_empty() { start } else { 0 };
        let piece_start = position;
        while position < chunk.bytes.len() {
            let header = header_at(chunk, position);
            assert!(expected_offset.is_none_or(|expected| expected == header.base_offset));
            let len = header.total_bytes();
            if total > 0 && total + len > limit {
                if position > piece_start {
                    pieces.push(chunk.bytes.slice(piece_start..position));
                }
                break 'chunks;
            }
            total += len;
            position += len;
            expected_offset = Some(header.next_offset());
        }
        assert_eq!(position, chunk.bytes.len());
        pieces.push(chunk.bytes.slice(piece_start..position));
    }
    assert!(total > 0);
    join(pieces, total)
}

/// Position in `chunk` of the batch holding `offset`.
fn batch_position(chunk: &Chunk, offset: i64) -> usize {
    let mut position = 0usize;
    loop {
        let header = header_at(chunk, position);
        if header.next_offset() > offset {
            assert!(header.base_offset <= offset);
            return position;
        }
        position += header.total_bytes();
        assert!(position < chunk.bytes.len(), "offset {offset} not in chunk");
    }
}

/// The header of the batch at `position` in `chunk`: bytes validated before they were appended.
fn header_at(chunk: &Chunk, position: usize) -> BatchHeader {
    let header = BatchHeader::parse(&chunk.bytes[position..]).expect("a cached batch is valid");
    assert!(position + header.total_bytes() <= chunk.bytes.len());
    header
}

fn join(pieces: Vec<Bytes>, total: usize) -> Bytes {
    if pieces.len() == 1 {
        let only = pieces.into_iter().next().unwrap();
        assert_eq!(only.len(), total);
        return only;
    }
    let mut joined = BytesMut::with_capacity(total);
    for piece in pieces {
        joined.extend_from_slice(&piece);
    }
    assert_eq!(joined.len(), total);
    joined.freeze()
}

impl TailCache {
    fn drop_log(&mut self, key: u64) {
        if let Some(log) = self.logs.remove(&key) {
            for chunk in &log.chunks {
                self.forget_chunk(chunk);
            }
        }
        self.compact_order_if_needed();
    }

    fn forget_chunk(&mut self, chunk: &Chunk) {
        self.bytes -= chunk.charge();
        self.chunks_live -= 1;
    }

    /// Evicts the oldest chunks until at most `bytes_max` bytes are cached.
    fn evict_to(&mut self, bytes_max: usize) {
        while self.bytes > bytes_max {
            let (key, sequence) = self
                .order
                .pop_front()
                .expect("bytes cached with nothing in the eviction order");
            let Some(log) = self.logs.get_mut(&key) else {
                continue;
            };
            let Some(front) = log.chunks.front() else {
                continue;
            };
            if sequence < front.sequence {
                continue;
            }
            // The oldest live entry of the executor is the oldest chunk of its log.
            assert_eq!(sequence, front.sequence);
            let chunk = log.chunks.pop_front().unwrap();
            if log.chunks.is_empty() {
                self.logs.remove(&key);
            }
            self.forget_chunk(&chunk);
        }
    }

    /// Removes eviction-order entries of chunks that are gone once they are too many.
    fn compact_order_if_needed(&mut self) {
        if self.order.len() <= self.chunks_live + ORDER_STALE_ENTRIES_MAX {
            return;
        }
        let logs = &self.logs;
        self.order.retain(|(key, sequence)| {
            logs.get(key)
                .and_then(|log| log.chunks.front())
                .is_some_and(|front| *sequence >= front.sequence)
        });
        assert_eq!(self.order.len(), self.chunks_live);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BATCH_HEADER_BYTES;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A log key no other test uses.
    fn new_key() -> u64 {
        static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
        NEXT_KEY.fetch_add(1, Ordering::Relaxed)
    }

    /// A stored batch of `offset_count` offsets at `base_offset`, `total_bytes` long, whose
    /// records section is opaque zeros (the cache reads only headers).
    fn batch(base_offset: i64, offset_count: i32, total_bytes: usize) -> Vec<u8> {
        assert!(total_bytes >= BATCH_HEADER_BYTES);
        let records = vec![0u8; total_bytes - BATCH_HEADER_BYTES];
        let fields = record_batch::BatchFields::plain(0);
        let mut bytes = record_batch::encode_batch(&fields, offset_count, &records).to_vec();
        record_batch::set_base_offset(&mut bytes, base_offset);
        bytes
    }

    /// Inserts one chunk of `batches` (offset count, bytes) starting at `base_offset`; returns
    /// the next offset.
    fn insert_chunk(
        cache: &mut TailCache,
        key: u64,
        base_offset: i64,
        batches: &[(i32, usize)],
    ) -> i64 {
        let mut bytes = Vec::new();
        let mut offset = base_offset;
        for &(count, len) in batches {
            bytes.extend_from_slice(&batch(offset, count, len));
            offset += i64::from(count);
        }
        cache.insert(key, 0, base_offset, offset, Bytes::from(bytes));
        offset
    }

    fn base_offsets(mut bytes: &[u8]) -> Vec<i64> {
        let mut offsets = Vec::new();
        while !bytes.is_empty() {
            let header = BatchHeader::parse(bytes).unwrap();
            offsets.push(header.base_offset);
            bytes = &bytes[header.total_bytes()..];
        }
        offsets
    }

    #[test]
    fn reads_whole_batches_within_max_bytes_and_kip74() {
        let mut cache = TailCache::new(1 << 20);
        let key = new_key();
        let end = insert_chunk(&mut cache, key, 10, &[(2, 100), (3, 200)]);
        let end = insert_chunk(&mut cache, key, end, &[(1, 300)]);
        assert_eq!(end, 16);
        // Offset 11 lies in the first batch; 300 bytes hold both batches of the first chunk.
        let bytes = cache.read(key, 11, 300, end).unwrap();
        assert_eq!(base_offsets(&bytes), [10, 12]);
        // Across chunks the batches are joined.
        assert_eq!(
            base_offsets(&cache.read(key, 12, 10_000, end).unwrap()),
            [12, 15]
        );
        // KIP-74: the first batch even if larger than max_bytes.
        assert_eq!(base_offsets(&cache.read(key, 15, 1, end).unwrap()), [15]);
        assert_eq!(base_offsets(&cache.read(key, 10, 0, end).unwrap()), [10]);
        // Outside the cached range, or a log end the cache does not reach: not cached.
        assert!(cache.read(key, 9, 1000, end).is_none());
        assert!(cache.read(key, 16, 1000, end).is_none());
        assert!(cache.read(key, 12, 1000, end + 1).is_none());
        assert!(cache.read(new_key(), 12, 1000, end).is_none());
    }

    #[test]
    fn a_read_stops_at_the_segment_end() {
        let mut cache = TailCache::new(1 << 20);
        let key = new_key();
        let end = insert_chunk(&mut cache, key, 0, &[(1, 100)]);
        cache.insert(key, end, end, end + 1, Bytes::from(batch(end, 1, 100)));
        assert_eq!(
            base_offsets(&cache.read(key, 0, 1000, end + 1).unwrap()),
            [0]
        );
        assert_eq!(
            base_offsets(&cache.read(key, 1, 1000, end + 1).unwrap()),
            [1]
        );
    }

    #[test]
    fn a_read_within_one_chunk_is_a_slice_of_it() {
        let mut cache = TailCache::new(1 << 20);
        let key = new_key();
        let end = insert_chunk(&mut cache, key, 0, &[(1, 100), (1, 100)]);
        let first = cache.read(key, 1, 1000, end).unwrap();
        let second = cache.read(key, 1, 1000, end).unwrap();
        assert_eq!(first.as_ptr(), second.as_ptr());
    }

    #[test]
    fn stays_within_the_budget_evicting_oldest_first_across_logs() {
        let charge = 1000 + CHUNK_OVERHEAD_BYTES;
        let mut cache = TailCache::new(3 * charge);
        let (a, b) = (new_key(), new_key());
        insert_chunk(&mut cache, a, 0, &[(1, 1000)]);
        insert_chunk(&mut cache, b, 0, &[(1, 1000)]);
        insert_chunk(&mut cache, a, 1, &[(1, 1000)]);
        assert_eq!(cache.cached_bytes(), 3 * charge);
        // A fourth chunk evicts the oldest: a's first.
        insert_chunk(&mut cache, b, 1, &[(1, 1000)]);
        assert_eq!(cache.cached_bytes(), 3 * charge);
        assert!(cache.read(a, 0, 1 << 20, 2).is_none());
        assert_eq!(base_offsets(&cache.read(a, 1, 1 << 20, 2).unwrap()), [1]);
        assert_eq!(base_offsets(&cache.read(b, 0, 1 << 20, 2).unwrap()), [0, 1]);
        // Then b's first, then a's last.
        insert_chunk(&mut cache, b, 2, &[(1, 1000)]);
        assert!(cache.read(b, 0, 1 << 20, 3).is_none());
        assert_eq!(base_offsets(&cache.read(b, 1, 1 << 20, 3).unwrap()), [1, 2]);
        insert_chunk(&mut cache, b, 3, &[(1, 1000)]);
        assert!(cache.read(a, 1, 1 << 20, 2).is_none());
        assert_eq!(cache.cached_bytes(), 3 * charge);
        // Lowering the budget evicts at once; 0 disables the cache.
        cache.set_bytes_max(charge);
        assert_eq!(cache.cached_bytes(), charge);
        assert_eq!(base_offsets(&cache.read(b, 3, 1 << 20, 4).unwrap()), [3]);
        cache.set_bytes_max(0);
        assert_eq!(cache.cached_bytes(), 0);
        assert!(!cache.accepts(1));
    }

    #[test]
    fn a_chunk_larger_than_the_budget_or_a_gap_drops_the_log() {
        let mut cache = TailCache::new(2000);
        let key = new_key();
        let end = insert_chunk(&mut cache, key, 0, &[(1, 500)]);
        assert!(!cache.accepts(2000));
        insert_chunk(&mut cache, key, end, &[(1, 1990)]);
        assert_eq!(cache.cached_bytes(), 0);
        // A chunk that does not continue the cached ones replaces them.
        insert_chunk(&mut cache, key, 5, &[(1, 500)]);
        insert_chunk(&mut cache, key, 7, &[(1, 500)]);
        assert!(cache.read(key, 5, 1 << 20, 8).is_none());
        assert_eq!(base_offsets(&cache.read(key, 7, 1 << 20, 8).unwrap()), [7]);
        assert_eq!(cache.cached_bytes(), 500 + CHUNK_OVERHEAD_BYTES);
    }

    #[test]
    fn retention_and_forget_drop_chunks() {
        let mut cache = TailCache::new(1 << 20);
        let key = new_key();
        let other = new_key();
        let end = insert_chunk(&mut cache, key, 0, &[(5, 100)]);
        let end = insert_chunk(&mut cache, key, end, &[(5, 100)]);
        insert_chunk(&mut cache, other, 0, &[(1, 100)]);
        cache.drop_below(key, 5);
        assert!(cache.read(key, 4, 1 << 20, end).is_none());
        assert_eq!(
            base_offsets(&cache.read(key, 5, 1 << 20, end).unwrap()),
            [5]
        );
        assert_eq!(cache.cached_bytes(), 2 * (100 + CHUNK_OVERHEAD_BYTES));
        cache.forget(key);
        assert!(cache.read(key, 5, 1 << 20, end).is_none());
        assert_eq!(cache.cached_bytes(), 100 + CHUNK_OVERHEAD_BYTES);
        assert!(cache.read(other, 0, 1 << 20, 1).is_some());
    }

    #[test]
    fn the_eviction_order_does_not_grow_with_dropped_chunks() {
        let mut cache = TailCache::new(1 << 30);
        let key = new_key();
        for round in 0..(3 * ORDER_STALE_ENTRIES_MAX as i64) {
            insert_chunk(&mut cache, key, round, &[(1, 100)]);
            cache.drop_below(key, round + 1);
        }
        assert_eq!(cache.chunks_live, 0);
        assert!(cache.order.len() <= ORDER_STALE_ENTRIES_MAX + 1);
    }
}
