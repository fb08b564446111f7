//! Rate-limited logging of errors that can repeat many times a second (a failing accept, a
//! refused connection): the first occurrence is logged at once, later ones are counted and
//! logged once per interval with their count.

use std::time::{Duration, Instant};

/// Shortest time between two log lines of one [`RateLimitedLog`]: at most a handful of lines
/// a minute per kind of error, however fast it repeats.
pub const REPEATED_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Counts occurrences of one kind of error and says when to log them.
#[derive(Debug)]
pub struct RateLimitedLog {
    interval: Duration,
    last_logged: Option<Instant>,
    /// Occurrences since the last log line.
    unlogged: u64,
}

impl RateLimitedLog {
    pub fn new(interval: Duration) -> RateLimitedLog {
        RateLimitedLog {
            interval,
            last_logged: None,
            unlogged: 0,
        }
    }

    /// Records one occurrence at `now`. Returns how many occurrences the caller should report
    /// in one log line now (this one included), or `None` while the interval since the last
    /// line has not passed.
    pub fn observe(&mut self, now: Instant) -> Option<u64> {
        self.unlogged += 1;
        let due = self
            .last_logged
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if !due {
            return None;
        }
        self.last_logged = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_the_first_then_once_per_interval_with_the_count() {
        let mut log = RateLimitedLog::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(log.observe(start), Some(1));
        for millis in 1..=999 {
            assert_eq!(
                log.observe(start + Duration::from_millis(millis * 10)),
                None
            );
        }
        assert_eq!(log.observe(start + Duration::from_secs(10)), Some(1000));
        assert_eq!(log.observe(start + Duration::from_secs(11)), None);
        assert_eq!(log.observe(start + Duration::from_secs(25)), Some(2));
    }
}
