//! Readahead for fetches below the tail cache: a fetch read from disk reads at least
//! [`READ_AHEAD_BYTES`] from where it starts, and the storage context's cache here keeps that chunk,
//! one per segment, so that the next fetches of a sequential consumer (and the batch-header reads
//! that locate them) are served from memory instead of one small direct read each.
//!
//! A chunk holds only bytes below the segment's logical end at the time of the read, which never
//! change afterwards, so it stays valid for as long as the segment exists. The cache holds at most
//! [`READ_AHEAD_CACHE_BYTES_MAX`] bytes by default, least recently used chunk first out (see `lru`),
//! keyed by the segment's key, like the sealed-index cache.

use bytes::Bytes;

use crate::batch::BATCH_BYTES_MAX;
use crate::lru::Lru;

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
}

/// The readahead chunks by segment key, one per segment, within a byte budget.
pub(crate) struct ReadAheadCache {
    lru: Lru<Chunk>,
}

impl ReadAheadCache {
    pub fn new(bytes_max: usize) -> ReadAheadCache {
        ReadAheadCache {
            lru: Lru::new(bytes_max),
        }
    }

    /// The bytes `[position, position + len)` of segment `key` if its chunk holds them.
    pub fn get(&mut self, key: u64, position: u64, len: usize) -> Option<Bytes> {
        let chunk = self.lru.get(key)?;
        let start = position.checked_sub(chunk.position)? as usize;
        if start + len > chunk.bytes.len() {
            return None;
        }
        Some(chunk.bytes.slice(start..start + len))
    }

    /// Keeps `bytes`, read at `position` of segment `key`, as that segment's chunk, evicting the
    /// least recently used chunks to stay within the budget.
    pub fn insert(&mut self, key: u64, position: u64, bytes: Bytes) {
        let len = bytes.len();
        if len > READ_AHEAD_CHUNK_BYTES_MAX {
            self.lru.remove(key);
            return;
        }
        self.lru.insert(key, Chunk { position, bytes }, len);
    }

    /// Drops the chunk of a segment that is gone.
    pub fn forget(&mut self, key: u64) {
        self.lru.remove(key);
    }

    /// Bytes currently held.
    pub fn cached_bytes(&self) -> usize {
        self.lru.cost()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_ranges_inside_the_chunk_only() {
        let mut cache = ReadAheadCache::new(READ_AHEAD_CACHE_BYTES_MAX);
        cache.insert(1, 100, Bytes::from(vec![7u8; 50]));
        assert_eq!(cache.get(1, 100, 50).unwrap().len(), 50);
        assert_eq!(cache.get(1, 120, 10).unwrap().len(), 10);
        assert!(cache.get(1, 99, 1).is_none());
        assert!(cache.get(1, 140, 11).is_none());
        assert!(cache.get(2, 100, 1).is_none());
        cache.forget(1);
        assert!(cache.get(1, 100, 1).is_none());
        assert_eq!(cache.cached_bytes(), 0);
    }

    #[test]
    fn stays_within_the_budget_least_recently_used_first_out() {
        let mut cache = ReadAheadCache::new(READ_AHEAD_CACHE_BYTES_MAX);
        let chunk = READ_AHEAD_CACHE_BYTES_MAX / 4;
        for key in 10..14 {
            cache.insert(key, 0, Bytes::from(vec![0u8; chunk]));
        }
        assert!(cache.get(10, 0, 1).is_some());
        cache.insert(14, 0, Bytes::from(vec![0u8; chunk]));
        assert_eq!(cache.cached_bytes(), READ_AHEAD_CACHE_BYTES_MAX);
        assert!(
            cache.get(11, 0, 1).is_none(),
            "the least recently used goes first"
        );
        assert!(cache.get(10, 0, 1).is_some());
        // Too large to keep.
        let too_large = Bytes::from(vec![0u8; READ_AHEAD_CHUNK_BYTES_MAX + 1]);
        cache.insert(15, 0, too_large);
        assert!(cache.get(15, 0, 1).is_none());
        assert_eq!(cache.cached_bytes(), READ_AHEAD_CACHE_BYTES_MAX);
    }
}
