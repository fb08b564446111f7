//! Latency histograms and the counters the progress line reads while actors run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Latencies above an hour are clamped to it; nothing a benchmark waits for takes longer.
pub const LATENCY_NS_MAX: u64 = 3_600 * 1_000_000_000;
/// Three significant digits: 0.1% error at every magnitude.
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;

pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_NS_MAX, LATENCY_SIGNIFICANT_DIGITS)
        .expect("latency histogram bounds are valid")
}

pub fn record_latency(histogram: &mut Histogram<u64>, latency: Duration, count: u64) {
    let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
    histogram
        .record_n(nanos.clamp(1, LATENCY_NS_MAX), count)
        .expect("clamped into the histogram's range");
}

/// Totals shared by all actors, read once a second for the progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub produced_records: AtomicU64,
    pub produced_bytes: AtomicU64,
    pub consumed_records: AtomicU64,
    pub consumed_bytes: AtomicU64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProgressSnapshot {
    pub produced_records: u64,
    pub produced_bytes: u64,
    pub consumed_records: u64,
    pub consumed_bytes: u64,
}

impl Progress {
    pub fn add_produced(&self, records: u64, bytes: u64) {
        self.produced_records.fetch_add(records, Ordering::Relaxed);
        self.produced_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn add_consumed(&self, records: u64, bytes: u64) {
        self.consumed_records.fetch_add(records, Ordering::Relaxed);
        self.consumed_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> ProgressSnapshot {
        ProgressSnapshot {
            produced_records: self.produced_records.load(Ordering::Relaxed),
            produced_bytes: self.produced_bytes.load(Ordering::Relaxed),
            consumed_records: self.consumed_records.load(Ordering::Relaxed),
            consumed_bytes: self.consumed_bytes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_are_clamped_into_range() {
        let mut histogram = latency_histogram();
        record_latency(&mut histogram, Duration::ZERO, 1);
        record_latency(&mut histogram, Duration::from_secs(10_000), 2);
        record_latency(&mut histogram, Duration::from_micros(250), 1);
        assert_eq!(histogram.len(), 4);
        assert_eq!(histogram.min(), 1);
        assert!(histogram.max() >= LATENCY_NS_MAX);
        let p50 = histogram.value_at_quantile(0.5);
        assert!((249_000..=251_000).contains(&p50), "{p50}");
    }
}
