//! A per-executor cache of the loaded indexes of sealed segments, bounded by
//! [`SEALED_INDEX_CACHE_BYTES_MAX`]. Sealed segments keep only their 64-byte header in memory;
//! their entries are loaded from the index file on first use and evicted least recently used,
//! so resident index memory does not grow with the amount of stored data.
//!
//! Thread-local: a `PartitionLog` lives on one executor thread, and so do its segments' keys.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::index_file::LoadedIndex;

/// Bytes of sealed-segment indexes one executor keeps loaded. At the default interval of 4 KiB
/// an entry (24 bytes) covers 4 KiB of log, so 32 MiB holds the indexes of about 5 GiB of
/// sealed segments; older lookups pay one index-file read. Active segments' indexes are not
/// counted: they are bounded by `segment_bytes / index_interval_bytes` entries each.
pub const SEALED_INDEX_CACHE_BYTES_MAX: usize = 32 << 20;

struct Cached {
    index: Rc<LoadedIndex>,
    last_used: u64,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<u64, Cached>,
    bytes: usize,
    clock: u64,
    next_key: u64,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// A key no other segment on this thread has or will have.
pub(crate) fn new_key() -> u64 {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        cache.next_key += 1;
        cache.next_key
    })
}

pub(crate) fn get(key: u64) -> Option<Rc<LoadedIndex>> {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        cache.clock += 1;
        let clock = cache.clock;
        let cached = cache.entries.get_mut(&key)?;
        cached.last_used = clock;
        Some(Rc::clone(&cached.index))
    })
}

/// Caches `index` under `key`, evicting the least recently used indexes to stay within the
/// budget. An index larger than the whole budget is not kept (the caller still uses it).
pub(crate) fn insert(key: u64, index: Rc<LoadedIndex>) {
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        cache.remove(key);
        let bytes = index.memory_bytes();
        if bytes > SEALED_INDEX_CACHE_BYTES_MAX {
            return;
        }
        while cache.bytes + bytes > SEALED_INDEX_CACHE_BYTES_MAX {
            cache.evict_least_recently_used();
        }
        cache.clock += 1;
        let last_used = cache.clock;
        cache.bytes += bytes;
        cache.entries.insert(key, Cached { index, last_used });
        assert!(cache.bytes <= SEALED_INDEX_CACHE_BYTES_MAX);
    })
}

/// Drops the index of a segment that is gone. Safe during thread teardown.
pub(crate) fn forget(key: u64) {
    let _ = CACHE.try_with(|cache| cache.borrow_mut().remove(key));
}

/// Bytes currently held (for tests and reports).
pub fn cached_bytes() -> usize {
    CACHE.with(|cache| cache.borrow().bytes)
}

impl Cache {
    fn remove(&mut self, key: u64) {
        if let Some(cached) = self.entries.remove(&key) {
            self.bytes -= cached.index.memory_bytes();
        }
    }

    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, cached)| cached.last_used)
            .map(|(key, _)| *key)
            .expect("over budget with nothing cached");
        self.remove(oldest);
    }
}
