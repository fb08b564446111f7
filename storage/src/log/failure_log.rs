//! Rate-limited logging of a log's I/O failures and fenced corrupt ranges.

use std::cell::Cell;
use std::path::Path;

use super::clock::now_ms;
use crate::fence::Fence;
use crate::StorageError;

/// Logs the first I/O failure of a run of failures of one kind of operation, and the first
/// success after it. A full or failing disk fails every append until it recovers; logging each
/// failed request would flood the log. Other errors (out of range, closed) are not logged here.
pub(super) struct FailureLog {
    what: &'static str,
    failing: Cell<bool>,
}

impl FailureLog {
    pub(super) fn new(what: &'static str) -> FailureLog {
        FailureLog {
            what,
            failing: Cell::new(false),
        }
    }

    pub(super) fn observe<T>(&self, dir: &Path, result: &Result<T, StorageError>) {
        match result {
            Err(StorageError::Io(error)) if !self.failing.replace(true) => log::error!(
                "{} in {} fail: {error}; further failures are logged only after one succeeds",
                self.what,
                dir.display()
            ),
            Ok(_) if self.failing.replace(false) => {
                log::info!("{} in {} succeed again", self.what, dir.display())
            }
            _ => {}
        }
    }
}

/// Counts the corrupt ranges a log fences and logs them: at most one line per
/// `CORRUPTION_LOG_INTERVAL_MS`, with the number of ranges not logged since, so a badly damaged
/// disk cannot flood the log.
pub(super) struct CorruptionLog {
    pub(super) fenced: Cell<u64>,
    last_logged_ms: Cell<Option<i64>>,
    unlogged: Cell<u64>,
}

/// Least time between two log lines about newly fenced ranges of one log.
const CORRUPTION_LOG_INTERVAL_MS: i64 = 10_000;

impl CorruptionLog {
    pub(super) fn new(fenced_at_open: u64) -> CorruptionLog {
        CorruptionLog {
            fenced: Cell::new(fenced_at_open),
            last_logged_ms: Cell::new(None),
            unlogged: Cell::new(0),
        }
    }

    pub(super) fn observe(&self, path: &Path, fence: &Fence) {
        self.fenced.set(self.fenced.get() + 1);
        let now = now_ms();
        let due = self
            .last_logged_ms
            .get()
            .is_none_or(|last| now.saturating_sub(last) >= CORRUPTION_LOG_INTERVAL_MS);
        if !due {
            self.unlogged.set(self.unlogged.get() + 1);
            return;
        }
        self.last_logged_ms.set(Some(now));
        log::error!(
            "{}: offsets [{}, {}) at bytes [{}, {}) fail their checks; fenced (reads of them fail, the batches after them are served); {} more ranges fenced since the last such line",
            path.display(),
            fence.offset,
            fence.next_offset,
            fence.position,
            fence.end_position,
            self.unlogged.replace(0)
        );
    }
}
