//! The cache of the loaded indexes of sealed segments, one per storage context, bounded by
//! [`SEALED_INDEX_CACHE_BYTES_MAX`] by default. Sealed segments keep only their 64-byte header
//! in memory; their entries are loaded from the index file on first use and evicted least
//! recently used, so resident index memory does not grow with the amount of stored data.

use std::rc::Rc;

use crate::index_file::LoadedIndex;
use crate::lru::Lru;

/// Bytes of sealed-segment indexes one executor keeps loaded. At the default interval of 4 KiB
/// an entry (24 bytes) covers 4 KiB of log, so 32 MiB holds the indexes of about 5 GiB of
/// sealed segments; older lookups pay one index-file read. Active segments' indexes are not
/// counted: they are bounded by `segment_bytes / index_interval_bytes` entries each.
pub const SEALED_INDEX_CACHE_BYTES_MAX: usize = 32 << 20;

/// Loaded sealed-segment indexes by segment key, within a byte budget.
pub(crate) struct IndexCache {
    lru: Lru<Rc<LoadedIndex>>,
}

impl IndexCache {
    pub fn new(bytes_max: usize) -> IndexCache {
        IndexCache {
            lru: Lru::new(bytes_max),
        }
    }

    pub fn get(&mut self, key: u64) -> Option<Rc<LoadedIndex>> {
        self.lru.get(key).map(Rc::clone)
    }

    /// Caches `index` under `key`, evicting the least recently used indexes to stay within the
    /// budget. An index larger than the whole budget is not kept (the caller still uses it).
    pub fn insert(&mut self, key: u64, index: Rc<LoadedIndex>) {
        let bytes = index.memory_bytes();
        self.lru.insert(key, index, bytes);
    }

    /// Drops the index of a segment that is gone.
    pub fn forget(&mut self, key: u64) {
        self.lru.remove(key);
    }

    /// Bytes currently held.
    pub fn cached_bytes(&self) -> usize {
        self.lru.cost()
    }
}
