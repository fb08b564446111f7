//! Fixed-rate sending. Batch `k` of a producer is due at `start + k * batch_records / rate`; a
//! producer that falls behind sends at once and its latencies are measured from the due time, so
//! the wait a stalled broker imposes on the requests queued behind it is counted (no coordinated
//! omission).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Records per second for this producer.
    pub records_per_sec: u64,
    pub batch_records: u64,
}

impl Schedule {
    pub fn new(records_per_sec: u64, batch_records: u64) -> Self {
        assert!(records_per_sec > 0 && batch_records > 0);
        Schedule {
            records_per_sec,
            batch_records,
        }
    }

    /// When batch `batch_index` is due, counted from the producer's start.
    pub fn due_offset(&self, batch_index: u64) -> Duration {
        let records = u128::from(batch_index) * u128::from(self.batch_records);
        let nanos = records * 1_000_000_000 / u128::from(self.records_per_sec);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// How long to sleep before sending batch `batch_index` when `elapsed` has passed since the
    /// start; zero when the batch is already late.
    pub fn wait(&self, batch_index: u64, elapsed: Duration) -> Duration {
        self.due_offset(batch_index).saturating_sub(elapsed)
    }
}

/// Splits a total rate over `producers`, giving the remainder to the first ones, so the sum is
/// exactly `total`.
pub fn split_evenly(total: u64, parts: u64, index: u64) -> u64 {
    assert!(parts > 0 && index < parts);
    total / parts + u64::from(index < total % parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_follow_the_rate() {
        let schedule = Schedule::new(1_000, 10);
        assert_eq!(schedule.due_offset(0), Duration::ZERO);
        assert_eq!(schedule.due_offset(1), Duration::from_millis(10));
        assert_eq!(schedule.due_offset(100), Duration::from_secs(1));

        // Rates that do not divide a second evenly do not drift: 3 records/s, batch of 1.
        let schedule = Schedule::new(3, 1);
        assert_eq!(schedule.due_offset(1), Duration::from_nanos(333_333_333));
        assert_eq!(schedule.due_offset(3), Duration::from_secs(1));
        assert_eq!(
            schedule.due_offset(3_000_000),
            Duration::from_secs(1_000_000)
        );
    }

    #[test]
    fn late_batches_do_not_wait() {
        let schedule = Schedule::new(100, 1);
        assert_eq!(
            schedule.wait(5, Duration::from_millis(20)),
            Duration::from_millis(30)
        );
        assert_eq!(schedule.wait(5, Duration::from_millis(50)), Duration::ZERO);
        assert_eq!(schedule.wait(5, Duration::from_secs(9)), Duration::ZERO);
    }

    #[test]
    fn huge_indexes_saturate() {
        let schedule = Schedule::new(1, 1_000_000);
        assert_eq!(
            schedule.due_offset(u64::MAX),
            Duration::from_nanos(u64::MAX)
        );
    }

    #[test]
    fn split_sums_to_total() {
        assert_eq!(
            (0..3).map(|i| split_evenly(10, 3, i)).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        assert_eq!((0..4).map(|i| split_evenly(2, 4, i)).sum::<u64>(), 2);
    }
}
