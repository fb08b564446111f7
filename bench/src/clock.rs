//! One time base for every actor: Unix nanoseconds advanced by a monotonic clock, so embedded
//! send times and receive times compare without wall-clock jumps in between.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    start_unix_ns: u64,
}

impl Clock {
    pub fn new() -> Self {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Clock {
            start: Instant::now(),
            start_unix_ns: u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    pub fn unix_ns_at(&self, instant: Instant) -> u64 {
        let since_start = instant.saturating_duration_since(self.start).as_nanos();
        self.start_unix_ns
            .saturating_add(u64::try_from(since_start).unwrap_or(u64::MAX))
    }

    pub fn unix_ns_now(&self) -> u64 {
        self.unix_ns_at(Instant::now())
    }
}
