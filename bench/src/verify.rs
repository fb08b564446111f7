//! Per-partition delivery checks: every (producer, partition) stream carries sequence numbers
//! 0, 1, 2, … and a consumer reading the partition in offset order must see each exactly once, in
//! order.

use std::collections::{BTreeMap, HashMap};

use crate::value::ValueHeader;

/// One producer's stream into one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub run_id: u32,
    pub producer_id: u32,
    pub partition: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyCounts {
    /// Sequence numbers never seen: holes, plus (when the producers' counts are known) records
    /// acknowledged but never read.
    pub lost: u64,
    /// Sequence numbers seen more than once.
    pub duplicated: u64,
    /// Sequence numbers seen after a higher one of the same stream.
    pub reordered: u64,
    /// Records of other runs or not written by sluice-bench; not checked.
    pub foreign: u64,
}

/// Sequence numbers not seen yet below a stream's highest, as disjoint ranges `start -> end`
/// (end exclusive), so a large hole costs one entry.
#[derive(Debug, Default, Clone)]
struct Holes {
    ranges: BTreeMap<u64, u64>,
    count: u64,
}

impl Holes {
    fn add(&mut self, start: u64, end: u64) {
        assert!(start < end);
        if let Some(last_end) = self.ranges.values_mut().next_back() {
            assert!(*last_end <= start, "holes are added in increasing order");
            if *last_end == start {
                *last_end = end;
                self.count += end - start;
                return;
            }
        }
        self.ranges.insert(start, end);
        self.count += end - start;
    }

    /// Fills `sequence` if it is a hole; false when it is not (it was seen before).
    fn fill(&mut self, sequence: u64) -> bool {
        let Some((&start, &end)) = self.ranges.range(..=sequence).next_back() else {
            return false;
        };
        if sequence >= end {
            return false;
        }
        self.ranges.remove(&start);
        if start < sequence {
            self.ranges.insert(start, sequence);
        }
        if sequence + 1 < end {
            self.ranges.insert(sequence + 1, end);
        }
        self.count -= 1;
        true
    }
}

#[derive(Debug, Default, Clone)]
struct Stream {
    sequence_next: u64,
    holes: Holes,
    duplicated: u64,
    reordered: u64,
}

impl Stream {
    fn observe(&mut self, sequence: u64) {
        if sequence >= self.sequence_next {
            if sequence > self.sequence_next {
                self.holes.add(self.sequence_next, sequence);
            }
            self.sequence_next = sequence + 1;
        } else if self.holes.fill(sequence) {
            self.reordered += 1;
        } else {
            self.duplicated += 1;
        }
    }
}

/// What one consumer saw. Consumers own disjoint partitions, so verifiers merge by union.
#[derive(Debug, Default, Clone)]
pub struct Verifier {
    /// Only this run's records are checked; `None` checks every run's (each is its own stream).
    run_id: Option<u32>,
    streams: HashMap<StreamKey, Stream>,
    foreign: u64,
}

impl Verifier {
    pub fn new(run_id: Option<u32>) -> Self {
        Verifier {
            run_id,
            ..Verifier::default()
        }
    }

    /// Checks one record read from `partition`.
    pub fn observe(&mut self, partition: i32, header: Option<ValueHeader>) {
        let header = match header {
            Some(header) if self.run_id.is_none_or(|run_id| run_id == header.run_id) => header,
            _ => {
                self.foreign += 1;
                return;
            }
        };
        // A record read from another partition than the one it was produced to is lost there.
        let key = StreamKey {
            run_id: header.run_id,
            producer_id: header.producer_id,
            partition: u32::try_from(partition).expect("partition is non-negative"),
        };
        self.streams
            .entry(key)
            .or_default()
            .observe(header.sequence);
    }

    pub fn merge(&mut self, other: Verifier) {
        assert_eq!(self.run_id, other.run_id);
        self.foreign += other.foreign;
        for (key, stream) in other.streams {
            let previous = self.streams.insert(key, stream);
            assert!(previous.is_none(), "consumers own disjoint partitions");
        }
    }

    /// The counts; `produced` (records acknowledged per stream) adds never-read tails to `lost`.
    pub fn counts(&self, produced: Option<&HashMap<StreamKey, u64>>) -> VerifyCounts {
        let mut counts = VerifyCounts {
            foreign: self.foreign,
            ..VerifyCounts::default()
        };
        for stream in self.streams.values() {
            counts.lost += stream.holes.count;
            counts.duplicated += stream.duplicated;
            counts.reordered += stream.reordered;
        }
        for (key, &records) in produced.into_iter().flatten() {
            let read_next = self
                .streams
                .get(key)
                .map_or(0, |stream| stream.sequence_next);
            counts.lost += records.saturating_sub(read_next);
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: u32 = 42;

    fn header(producer_id: u32, sequence: u64) -> Option<ValueHeader> {
        Some(ValueHeader {
            run_id: RUN,
            producer_id,
            partition: 0,
            sequence,
            send_timestamp_ns: 0,
        })
    }

    fn feed(sequences: &[u64]) -> VerifyCounts {
        let mut verifier = Verifier::new(Some(RUN));
        for &sequence in sequences {
            verifier.observe(0, header(0, sequence));
        }
        verifier.counts(None)
    }

    #[test]
    fn in_order_stream_is_clean() {
        assert_eq!(feed(&[0, 1, 2, 3]), VerifyCounts::default());
    }

    #[test]
    fn holes_are_lost() {
        let counts = feed(&[0, 3, 4, 9]);
        assert_eq!(
            (counts.lost, counts.duplicated, counts.reordered),
            (6, 0, 0)
        );
        // A stream that does not start at zero lost its head.
        assert_eq!(feed(&[2, 3]).lost, 2);
    }

    #[test]
    fn late_arrivals_are_reordered_not_lost() {
        let counts = feed(&[0, 2, 1, 5, 3, 4]);
        assert_eq!(
            (counts.lost, counts.duplicated, counts.reordered),
            (0, 0, 3)
        );
        let counts = feed(&[0, 4, 2]);
        assert_eq!(
            (counts.lost, counts.duplicated, counts.reordered),
            (2, 0, 1)
        );
    }

    #[test]
    fn repeats_are_duplicates() {
        let counts = feed(&[0, 1, 1, 2, 0, 2]);
        assert_eq!(
            (counts.lost, counts.duplicated, counts.reordered),
            (0, 3, 0)
        );
        // A filled hole seen again is a duplicate, not a second reorder.
        let counts = feed(&[0, 2, 1, 1]);
        assert_eq!(
            (counts.lost, counts.duplicated, counts.reordered),
            (0, 1, 1)
        );
    }

    #[test]
    fn streams_are_independent_and_tails_count_as_lost() {
        let mut verifier = Verifier::new(Some(RUN));
        verifier.observe(0, header(0, 0));
        verifier.observe(0, header(1, 0));
        verifier.observe(1, header(0, 0));
        verifier.observe(0, header(0, 1));
        verifier.observe(0, header(1, 1));
        verifier.observe(
            0,
            Some(ValueHeader {
                run_id: RUN + 1,
                ..header(0, 7).unwrap()
            }),
        );
        verifier.observe(0, None);
        let produced: HashMap<StreamKey, u64> = [
            (
                StreamKey {
                    run_id: RUN,
                    producer_id: 0,
                    partition: 0,
                },
                2,
            ),
            (
                StreamKey {
                    run_id: RUN,
                    producer_id: 1,
                    partition: 0,
                },
                5,
            ),
            (
                StreamKey {
                    run_id: RUN,
                    producer_id: 0,
                    partition: 1,
                },
                1,
            ),
            (
                StreamKey {
                    run_id: RUN,
                    producer_id: 1,
                    partition: 1,
                },
                4,
            ),
        ]
        .into_iter()
        .collect();
        let counts = verifier.counts(Some(&produced));
        assert_eq!(counts.lost, 3 + 4);
        assert_eq!(counts.foreign, 2);
        assert_eq!(counts.duplicated + counts.reordered, 0);
    }

    #[test]
    fn without_a_run_filter_each_run_is_its_own_stream() {
        let mut verifier = Verifier::new(None);
        for run_id in [RUN, RUN + 1] {
            for sequence in 0..3 {
                verifier.observe(
                    0,
                    Some(ValueHeader {
                        run_id,
                        ..header(0, sequence).unwrap()
                    }),
                );
            }
        }
        assert_eq!(verifier.counts(None), VerifyCounts::default());
    }

    #[test]
    fn merge_unions_partitions() {
        let mut left = Verifier::new(Some(RUN));
        left.observe(0, header(0, 1));
        let mut right = Verifier::new(Some(RUN));
        right.observe(1, header(0, 0));
        right.observe(1, header(0, 0));
        left.merge(right);
        let counts = left.counts(None);
        assert_eq!((counts.lost, counts.duplicated), (1, 1));
    }
}
