//! The cache of the open files of sealed segments, one per storage context, at most
//! [`crate::StorageContext::sealed_segment_files_max`] of them, least recently used closed first.
//!
//! Every open file is a file descriptor, and the process has a fixed number of them. An active
//! segment keeps its file open (it is appended to); a sealed segment's file is opened when a read
//! first needs it, kept here while it is used, and closed when colder segments' files push it
//! out. So a partition costs one descriptor however many sealed segments it has, and a context
//! (one per shard) at most `sealed_segment_files_max` more. A read of a cold segment reopens its file.
//!
//! A read holds its own reference to the file, so closing a file here never fails a read in
//! flight: the descriptor is closed when the last reference drops.

use std::rc::Rc;

use crate::io::SegmentFile;
use crate::lru::Lru;

/// Sealed-segment files one executor keeps open unless set otherwise: reads of that many
/// different sealed segments (consumers far behind, timestamp lookups) are served without a
/// reopen, while a broker with a few executors stays far below a 1,024-descriptor limit's
/// share for them.
pub const SEALED_SEGMENT_FILES_DEFAULT: usize = 128;

/// Largest limit an executor accepts: bounds the cache's table and documents the order of
/// magnitude the broker budgets for.
pub const SEALED_SEGMENT_FILES_MAX: usize = 1 << 16;

/// The open files of sealed segments by segment key, at most a set number of them.
pub(crate) struct SegmentFiles {
    lru: Lru<Rc<dyn SegmentFile>>,
}

impl SegmentFiles {
    pub fn new(max: usize) -> SegmentFiles {
        assert!((1..=SEALED_SEGMENT_FILES_MAX).contains(&max));
        SegmentFiles { lru: Lru::new(max) }
    }

    /// Sets how many sealed-segment files are kept open (at least 1); drops the least recently
    /// used beyond it. A dropped file's descriptor closes once no read holds it (glommio closes
    /// a dropped file asynchronously).
    pub fn set_max(&mut self, max: usize) {
        assert!((1..=SEALED_SEGMENT_FILES_MAX).contains(&max));
        self.lru.set_cost_max(max);
    }

    /// How many sealed-segment files are kept open at most.
    pub fn max(&self) -> usize {
        self.lru.cost_max()
    }

    /// How many sealed-segment files are open now.
    pub fn open_count(&self) -> usize {
        self.lru.len()
    }

    pub fn get(&mut self, key: u64) -> Option<Rc<dyn SegmentFile>> {
        self.lru.get(key).map(Rc::clone)
    }

    /// Keeps `file` open under `key`, dropping the least recently used files beyond the limit.
    pub fn insert(&mut self, key: u64, file: Rc<dyn SegmentFile>) {
        self.lru.insert(key, file, 1);
    }

    /// Takes the file of `key` out of the cache, if it is open, for the caller to close.
    pub fn take(&mut self, key: u64) -> Option<Rc<dyn SegmentFile>> {
        self.lru.remove(key)
    }
}
