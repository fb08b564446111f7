//! `StorageContext`: the caches the logs of one shard share, with their budgets. A shard makes
//! one when it starts and opens every log with it; two contexts never share an entry or a
//! budget, so several brokers (or a test's several shards) can run on one thread.

use std::cell::{Cell, RefCell, RefMut};
use std::rc::Rc;

use crate::index_cache::{IndexCache, SEALED_INDEX_CACHE_BYTES_MAX};
use crate::read_ahead::{ReadAheadCache, READ_AHEAD_CACHE_BYTES_MAX};
use crate::segment_files::{SegmentFiles, SEALED_SEGMENT_FILES_DEFAULT};
use crate::tail_cache::{TailCache, TAIL_CACHE_BYTES_DEFAULT, TAIL_CACHE_BYTES_MAX};

/// The budgets of a context's caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageBudgets {
    /// Bytes of recently appended batches kept for tail reads (at most
    /// [`TAIL_CACHE_BYTES_MAX`]); 0 disables the tail cache.
    pub tail_cache_bytes_max: usize,
    /// Open files of sealed segments kept (1..=[`crate::SEALED_SEGMENT_FILES_MAX`]).
    pub sealed_segment_files_max: usize,
    /// Bytes of loaded sealed-segment indexes kept.
    pub sealed_index_cache_bytes_max: usize,
    /// Bytes of readahead chunks kept.
    pub read_ahead_cache_bytes_max: usize,
}

impl Default for StorageBudgets {
    fn default() -> Self {
        StorageBudgets {
            tail_cache_bytes_max: TAIL_CACHE_BYTES_DEFAULT,
            sealed_segment_files_max: SEALED_SEGMENT_FILES_DEFAULT,
            sealed_index_cache_bytes_max: SEALED_INDEX_CACHE_BYTES_MAX,
            read_ahead_cache_bytes_max: READ_AHEAD_CACHE_BYTES_MAX,
        }
    }
}

/// The caches shared by the logs of one shard: the tail cache, the sealed-index cache, the
/// readahead cache and the open sealed-segment files, each within its budget.
///
/// Cheap to clone (an `Rc`); `!Send`, like the logs that use it. No cache operation awaits, so
/// a borrow of a cache never spans an await.
#[derive(Clone)]
pub struct StorageContext {
    inner: Rc<Caches>,
}

struct Caches {
    tail: RefCell<TailCache>,
    index: RefCell<IndexCache>,
    read_ahead: RefCell<ReadAheadCache>,
    segment_files: RefCell<SegmentFiles>,
    /// Keys of logs and segments (in the caches above) are unique within the context.
    next_key: Cell<u64>,
}

impl Default for StorageContext {
    fn default() -> Self {
        StorageContext::new(StorageBudgets::default())
    }
}

impl StorageContext {
    pub fn new(budgets: StorageBudgets) -> StorageContext {
        let caches = Caches {
            tail: RefCell::new(TailCache::new(budgets.tail_cache_bytes_max)),
            index: RefCell::new(IndexCache::new(budgets.sealed_index_cache_bytes_max)),
            read_ahead: RefCell::new(ReadAheadCache::new(budgets.read_ahead_cache_bytes_max)),
            segment_files: RefCell::new(SegmentFiles::new(budgets.sealed_segment_files_max)),
            next_key: Cell::new(0),
        };
        StorageContext {
            inner: Rc::new(caches),
        }
    }

    /// Sets the tail cache's budget (at most [`TAIL_CACHE_BYTES_MAX`]), evicting the oldest
    /// chunks to meet it. 0 disables the cache.
    pub fn set_tail_cache_bytes_max(&self, bytes_max: usize) {
        assert!(bytes_max <= TAIL_CACHE_BYTES_MAX);
        self.tail_cache().set_bytes_max(bytes_max);
    }

    pub fn tail_cache_bytes_max(&self) -> usize {
        self.inner.tail.borrow().bytes_max()
    }

    /// Bytes the tail cache holds, overheads included.
    pub fn tail_cache_bytes(&self) -> usize {
        self.inner.tail.borrow().cached_bytes()
    }

    /// Bytes of sealed-segment indexes loaded.
    pub fn sealed_index_cache_bytes(&self) -> usize {
        self.inner.index.borrow().cached_bytes()
    }

    /// Bytes of readahead chunks held.
    pub fn read_ahead_bytes(&self) -> usize {
        self.inner.read_ahead.borrow().cached_bytes()
    }

    /// Sets how many sealed-segment files stay open (1..=[`crate::SEALED_SEGMENT_FILES_MAX`]); closes
    /// the least recently used beyond it.
    pub fn set_sealed_segment_files_max(&self, max: usize) {
        self.segment_files().set_max(max);
    }

    pub fn sealed_segment_files_max(&self) -> usize {
        self.inner.segment_files.borrow().max()
    }

    /// How many sealed-segment files are open now.
    pub fn sealed_segment_files_open(&self) -> usize {
        self.inner.segment_files.borrow().open_count()
    }

    /// A key no other log or segment of this context has or will have.
    pub(crate) fn new_key(&self) -> u64 {
        let key = self.inner.next_key.get() + 1;
        self.inner.next_key.set(key);
        key
    }

    pub(crate) fn tail_cache(&self) -> RefMut<'_, TailCache> {
        self.inner.tail.borrow_mut()
    }

    pub(crate) fn index_cache(&self) -> RefMut<'_, IndexCache> {
        self.inner.index.borrow_mut()
    }

    pub(crate) fn read_ahead(&self) -> RefMut<'_, ReadAheadCache> {
        self.inner.read_ahead.borrow_mut()
    }

    pub(crate) fn segment_files(&self) -> RefMut<'_, SegmentFiles> {
        self.inner.segment_files.borrow_mut()
    }
}
