//! A per-executor cache of the open files of sealed segments, at most
//! [`sealed_segment_files_max`] of them, least recently used closed first.
//!
//! Every open file is a file descriptor, and the process has a fixed number of them. An active
//! segment keeps its file open (it is appended to); a sealed segment's file is opened when a read
//! first needs it, kept here while it is used, and closed when colder segments' files push it
//! out. So a partition costs one descriptor however many sealed segments it has, and an executor
//! at most `sealed_segment_files_max` more. A read of a cold segment reopens its file.
//!
//! A read holds its own reference to the file, so closing a file here never fails a read in
//! flight: the descriptor is closed when the last reference drops.
//!
//! Thread-local: a `PartitionLog` lives on one executor thread, and so do its segments' keys.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::io::SegmentFile;

/// Sealed-segment files one executor keeps open unless set otherwise: reads of that many
/// different sealed segments (consumers far behind, timestamp lookups) are served without a
/// reopen, while a broker with a few executors stays far below a 1,024-descriptor limit's
/// share for them.
pub const SEALED_SEGMENT_FILES_DEFAULT: usize = 128;

/// Largest limit an executor accepts: bounds the cache's table and documents the order of
/// magnitude the broker budgets for.
pub const SEALED_SEGMENT_FILES_MAX: usize = 1 << 16;

struct Open {
    file: Rc<dyn SegmentFile>,
    last_used: u64,
}

struct Files {
    entries: HashMap<u64, Open>,
    clock: u64,
    max: usize,
}

thread_local! {
    static FILES: RefCell<Files> = RefCell::new(Files {
        entries: HashMap::new(),
        clock: 0,
        max: SEALED_SEGMENT_FILES_DEFAULT,
    });
}

/// Sets how many sealed-segment files this executor keeps open (at least 1); closes the least
/// recently used beyond it.
pub fn set_sealed_segment_files_max(max: usize) {
    assert!((1..=SEALED_SEGMENT_FILES_MAX).contains(&max));
    FILES.with(|files| {
        let mut files = files.borrow_mut();
        files.max = max;
        while files.entries.len() > files.max {
            files.evict_least_recently_used();
        }
    })
}

/// How many sealed-segment files this executor keeps open at most.
pub fn sealed_segment_files_max() -> usize {
    FILES.with(|files| files.borrow().max)
}

/// How many sealed-segment files this executor holds open now (for tests and reports).
pub fn sealed_segment_files_open() -> usize {
    FILES.with(|files| files.borrow().entries.len())
}

pub(crate) fn get(key: u64) -> Option<Rc<dyn SegmentFile>> {
    FILES.with(|files| {
        let mut files = files.borrow_mut();
        files.clock += 1;
        let clock = files.clock;
        let open = files.entries.get_mut(&key)?;
        open.last_used = clock;
        Some(Rc::clone(&open.file))
    })
}

/// Keeps `file` open under `key`, closing the least recently used files beyond the limit.
pub(crate) fn insert(key: u64, file: Rc<dyn SegmentFile>) {
    FILES.with(|files| {
        let mut files = files.borrow_mut();
        files.entries.remove(&key);
        while files.entries.len() >= files.max {
            files.evict_least_recently_used();
        }
        files.clock += 1;
        let last_used = files.clock;
        files.entries.insert(key, Open { file, last_used });
        assert!(files.entries.len() <= files.max);
    })
}

/// Takes the file of `key` out of the cache, if it is open, for the caller to close.
pub(crate) fn take(key: u64) -> Option<Rc<dyn SegmentFile>> {
    FILES
        .try_with(|files| files.borrow_mut().entries.remove(&key))
        .ok()
        .flatten()
        .map(|open| open.file)
}

/// Drops the file of a segment that is gone. Safe during thread teardown.
pub(crate) fn forget(key: u64) {
    drop(take(key));
}

impl Files {
    /// Drops the least recently used file; its descriptor closes once no read holds it (glommio
    /// closes a dropped file asynchronously).
    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, open)| open.last_used)
            .map(|(key, _)| *key)
            .expect("over the limit with nothing open");
        self.entries.remove(&oldest);
    }
}
