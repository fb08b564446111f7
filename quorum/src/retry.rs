//! Retrying a write to the Raft directory that failed (ENOSPC, EDQUOT, EIO): the node must not
//! go on as if the bytes were durable, and stopping for good would keep its broker fenced until
//! restarted, so the driver waits here, acknowledging nothing (it steps no message while it
//! waits), and tries again with backoff until the write succeeds or the node is stopped.

use std::cell::Cell;
use std::io;
use std::time::Duration;

/// The first wait after a failed write.
const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// The longest wait between two attempts: a node whose disk has space again resumes at most
/// this long after.
pub const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(1_000);

/// One write's attempts.
pub struct Retry<'a> {
    what: &'static str,
    failures: u32,
    /// Set when the node is being stopped: it then stops waiting and the error ends the node.
    stopping: &'a Cell<bool>,
}

impl<'a> Retry<'a> {
    pub fn new(what: &'static str, stopping: &'a Cell<bool>) -> Retry<'a> {
        Retry {
            what,
            failures: 0,
            stopping,
        }
    }

    /// After a failed attempt: waits the backoff and answers whether to try again (false once
    /// the node is stopping). The first failure of a run is logged, not every retry.
    pub async fn again(&mut self, error: &io::Error) -> bool {
        if self.stopping.get() {
            return false;
        }
        if self.failures == 0 {
            log::warn!(
                "quorum: {} failed ({error}); acknowledging nothing and retrying until it succeeds",
                self.what
            );
        }
        self.failures += 1;
        glommio::timer::sleep(backoff(self.failures)).await;
        !self.stopping.get()
    }

    /// After the attempt that succeeded.
    pub fn succeeded(&self) {
        if self.failures > 0 {
            log::info!(
                "quorum: {} succeeded after {} failed attempts",
                self.what,
                self.failures
            );
        }
    }
}

/// The wait after `failures` failed attempts: doubling from the minimum, capped.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (RETRY_BACKOFF_MIN * 2u32.pow(doublings)).min(RETRY_BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_maximum() {
        assert_eq!(backoff(1), RETRY_BACKOFF_MIN);
        assert_eq!(backoff(2), RETRY_BACKOFF_MIN * 2);
        assert_eq!(backoff(7), RETRY_BACKOFF_MIN * 64);
        assert_eq!(backoff(8), RETRY_BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), RETRY_BACKOFF_MAX);
    }
}
