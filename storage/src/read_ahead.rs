//! Readahead for fetches below the tail cache: a fetch read from disk reads at least
//! [`READ_AHEAD_BYTES`] from where it starts, and the per-executor cache here keeps that chunk,
//! one per segment, so that the next fetches of a sequential consumer (and the batch-header reads
//! that locate them) are served from memory instead of one small direct read each.
//!
//! A chunk holds only bytes below the segment's logical end at the time of the read, which never
//! change afterwards, so it stays valid for as long as the segment exists. The cache holds at most
//! [`READ_AHEAD_CACHE_BYTES_MAX`] bytes, least recently used chunk first out. Thread-local, keyed
//! by the segment's per-executor key, like the sealed-index cache.

use std::cell::RefCell;
use std::collections::HashMap;

use bytes::Bytes;

use crate::batch::BATCH_BYTES_MAX;

/// Least bytes a fetch reads from disk: large enough that a sequential consumer fetching 1 MiB
/// at a time (Kafka's `max.partition.fetch.bytes` default) issues one direct read per four
/// fetches, small enough that a consumer that reads once pays little extra.
pub const READ_AHEAD_BYTES: usize = 4 << 20;

/// Bytes of readahead chunks one executor keeps: room for one chunk each for this many
/// partitions read at once.
pub const READ_AHEAD_CACHE_BYTES_MAX: usize = 16 * READ_AHEAD_BYTES;

/// Largest chunk that is kept; a larger read (up to `READ_BYTES_MAX`) is used once and dropped.
const READ_AHEAD_CHUNK_BYTES_MAX: usize = BATCH_BYTES_MAX;

const _: () = assert!(READ_AHEAD_BYTES <= READ_AHEAD_CHUNK_BYTES_MAX);
const _: () = assert!(READ_AHEAD_CHUNK_BYTES_MAX <= READ_AHEAD_CACHE_BYTES_MAX);

struct Chunk {
    position: u64,
    bytes: Bytes,
    last_used: u64,
}

#[derive(Default)]
struct Cache {
    chunks: HashMap<u64, Chunk>,
    bytes: usize,
    clock: u64,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The bytes `[position, position + len)` of segment `key` if its chunk holds them.
pub(crate) fn get(key: u64, position: u64, len: usize) -> Option<Bytes> {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        cache.clock += 1;
        let clock = cache.clock;
        let chunk = cache.chunks.get_mut(&key)?;
        let start = position.checked_sub(chunk.position)? as usize;
        if start + len > chunk.bytes.len() {
            return None;
        }
        chunk.last_used = clock;
        Some(chunk.bytes.slice(start..start + len))
    })
}

/// Keeps `bytes`, read at `position` of segment `key`, as that segment's chunk, evicting the
/// least recently used chunks to stay within the budget.
pub(crate) fn insert(key: u64, position: u64, bytes: Bytes) {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        cache.remove(key);
        let len = bytes.len();
        if len > READ_AHEAD_CHUNK_BYTES_MAX {
            return;
        }
        while cache.bytes + len > READ_AHEAD_CACHE_BYTES_MAX {
            cache.evict_least_recently_used();
        }
        cache.clock += 1;
        let last_used = cache.clock;
        cache.bytes += len;
        let chunk = Chunk {
            position,
            bytes,
            last_used,
        };
        cache.chunks.insert(key, chunk);
        assert!(cache.bytes <= READ_AHEAD_CACHE_BYTES_MAX);
    })
}

/// Drops the chunk of a segment that is gone. Safe during thread teardown.
pub(crate) fn forget(key: u64) {
    let _ = CACHE.try_with(|cache| cache.borrow_mut().remove(key));
}

/// Bytes currently held (for tests and reports).
pub fn cached_bytes() -> usize {
    CACHE.with(|cache| cache.borrow().bytes)
}

impl Cache {
    fn remove(&mut self, key: u64) {
        if let Some(chunk) = self.chunks.remove(&key) {
            self.bytes -= chunk.bytes.len();
        }
    }

    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .chunks
            .iter()
            .min_by_key(|(_, chunk)| chunk.last_used)
            .map(|(key, _)| *key)
            .expect("over budget with nothing cached");
        self.remove(oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_ranges_inside_the_chunk_only() {
        insert(1, 100, Bytes::from(vec![7u8; 50]));
        assert_eq!(get(1, 100, 50).unwrap().len(), 50);
        assert_eq!(get(1, 120, 10).unwrap().len(), 10);
        assert!(get(1, 99, 1).is_none());
        assert!(get(1, 140, 11).is_none());
        assert!(get(2, 100, 1).is_none());
        forget(1);
        assert!(get(1, 100, 1).is_none());
        assert_eq!(cached_bytes(), 0);
    }

    #[test]
    fn stays_within_the_budget_least_recently_used_first_out() {
        let chunk = READ_AHEAD_CACHE_BYTES_MAX / 4;
        for key in 10..14 {
            insert(key, 0, Bytes::from(vec![0u8; chunk]));
        }
        assert!(get(10, 0, 1).is_some());
        insert(14, 0, Bytes::from(vec![0u8; chunk]));
        assert_eq!(cached_bytes(), READ_AHEAD_CACHE_BYTES_MAX);
        assert!(
            get(11, 0, 1).is_none(),
            "the least recently used goes first"
        );
        assert!(get(10, 0, 1).is_some());
        // Too large to keep.
        insert(
            15,
            0,
            Bytes::from(vec![0u8; READ_AHEAD_CHUNK_BYTES_MAX + 1]),
        );
        assert!(get(15, 0, 1).is_none());
        assert_eq!(cached_bytes(), READ_AHEAD_CACHE_BYTES_MAX);
    }
}
