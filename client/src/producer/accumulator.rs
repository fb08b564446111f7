//! The producer's batching state, pure: per-partition queues of open batches (records not yet
//! sent) and of batches waiting to be resent, readiness (full, lingered, flushing), the sticky
//! partition of unkeyed records, and the idempotent sequence numbers. It does no I/O and takes
//! the current time as an argument, so its unit tests drive the clock.
//!
//! A partition's batches leave in the order they were closed. A batch to resend always goes
//! before any open batch of its partition, and only once nothing of that partition is in flight,
//! so with idempotence the broker sees every partition's sequence numbers in order.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::types::ProduceRecord;

/// Bytes a record adds to a batch beyond its key, value and headers: the varint lengths, deltas
/// and attributes of the RecordBatch v2 record framing, rounded up.
pub const RECORD_OVERHEAD_BYTES: usize = 24;
/// Records in one batch; the broker accepts more, but one batch is one allocation of this many
/// records on both sides.
pub const BATCH_RECORDS_MAX: usize = 100_000;
/// Batches of one partition in flight with idempotence. The broker remembers the last 5 batches
/// of each producer (`PRODUCER_BATCHES_KEPT`), as Kafka does; a retry of an older one could not
/// be recognised as a duplicate.
pub const IDEMPOTENT_PARTITION_IN_FLIGHT_MAX: usize = 5;

/// What makes a batch ready, and what bounds the records waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// A batch is full at this many bytes (Kafka's `batch.size`).
    pub batch_bytes: usize,
    /// A batch that is not full leaves this long after its first record (`linger.ms`).
    pub linger: Duration,
    /// Batches of one partition in flight at once.
    pub partition_in_flight_max: usize,
    pub idempotence: bool,
}

/// A record's bytes as counted against `batch_bytes` and the buffer.
pub fn record_bytes(record: &ProduceRecord) -> usize {
    let headers: usize = record
        .headers
        .iter()
        .map(|(name, value)| name.len() + value.as_ref().map_or(0, Bytes::len) + 4)
        .sum();
    RECORD_OVERHEAD_BYTES
        + record.key.as_ref().map_or(0, Bytes::len)
        + record.value.as_ref().map_or(0, Bytes::len)
        + headers
}

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// Records gathered for one partition, not yet numbered or encoded.
#[derive(Debug)]
pub struct OpenBatch {
    pub records: Vec<ProduceRecord>,
    /// The caller's tag of each record, handed back in its delivery report.
    pub tags: Vec<u64>,
    pub bytes: usize,
    pub created: Instant,
}

/// A batch taken out for sending: numbered (with idempotence) and, once encoded, resent as the
/// same bytes.
#[derive(Debug)]
pub struct DrainedBatch {
    pub topic_partition: TopicPartition,
    /// Records to encode; empty once `encoded` is set.
    pub records: Vec<ProduceRecord>,
    pub encoded: Option<Bytes>,
    pub tags: Vec<u64>,
    /// Bytes counted against the buffer, released when the batch is delivered.
    pub bytes: usize,
    pub base_sequence: i32,
    /// Sends so far; 0 before the first.
    pub attempts: u32,
}

#[derive(Debug, Default)]
struct PartitionQueue {
    open: VecDeque<OpenBatch>,
    resend: VecDeque<DrainedBatch>,
    resend_not_before: Option<Instant>,
    in_flight: usize,
    /// The connection the batches in flight went out on; a partition sends on another connection
    /// only once they are all back, so batches never overtake each other across connections.
    in_flight_connection: u64,
    sequence_next: i32,
}

impl PartitionQueue {
    fn open_ready(&self, limits: &BatchLimits, now: Instant, flushing: bool) -> bool {
        let Some(front) = self.open.front() else {
            return false;
        };
        self.open.len() > 1
            || front.bytes >= limits.batch_bytes
            || front.records.len() >= BATCH_RECORDS_MAX
            || flushing
            || now.saturating_duration_since(front.created) >= limits.linger
    }

    /// Whether the partition may send a batch on `connection` now.
    fn sendable(
        &self,
        limits: &BatchLimits,
        connection: u64,
        now: Instant,
        flushing: bool,
    ) -> bool {
        if self.in_flight > 0 && self.in_flight_connection != connection {
            return false;
        }
        if !self.resend.is_empty() {
            return self.in_flight == 0 && self.resend_not_before.is_none_or(|t| now >= t);
        }
        self.in_flight < limits.partition_in_flight_max && self.open_ready(limits, now, flushing)
    }

    /// When this partition becomes sendable by time alone, if it waits for time.
    fn deadline(&self, limits: &BatchLimits) -> Option<Instant> {
        if !self.resend.is_empty() {
            return self.resend_not_before;
        }
        self.open.front().map(|front| front.created + limits.linger)
    }
}

/// Sequences wrap from i32::MAX to 0, as in Kafka.
fn add_sequence(sequence: i32, delta: usize) -> i32 {
    assert!(sequence >= 0);
    let sum = i64::from(sequence) + delta as i64;
    (sum % (i64::from(i32::MAX) + 1)) as i32
}

/// Batching state of one producer. See the module comment.
#[derive(Debug)]
pub struct Accumulator {
    limits: BatchLimits,
    topics: HashMap<String, Vec<PartitionQueue>>,
    /// Bytes of records appended and not yet delivered.
    buffered_bytes: usize,
    sticky: HashMap<String, i32>,
    random_state: u64,
    /// Where the next drain starts in its list of partitions, so that requests cut short by
    /// their size limit do not always favour the first partitions.
    drain_rotation: usize,
}

impl Accumulator {
    pub fn new(limits: BatchLimits, seed: u64) -> Self {
        assert!(limits.batch_bytes > 0 && limits.partition_in_flight_max > 0);
        Accumulator {
            limits,
            topics: HashMap::new(),
            buffered_bytes: 0,
            sticky: HashMap::new(),
            random_state: seed | 1,
            drain_rotation: 0,
        }
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// Sets the partition count of a topic; queues are never removed, so a count that shrinks
    /// keeps the queues of the partitions beyond it (their batches still go out).
    pub fn set_partition_count(&mut self, topic: &str, partitions: i32) {
        assert!(partitions > 0);
        let queues = self.topics.entry(topic.to_owned()).or_default();
        while queues.len() < partitions as usize {
            queues.push(PartitionQueue::default());
        }
        if let Some(sticky) = self.sticky.get(topic) {
            if *sticky >= partitions {
                self.sticky.remove(topic);
            }
        }
    }

    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        self.topics.get(topic).map(|queues| queues.len() as i32)
    }

    /// The partition an unkeyed record of `topic` goes to: the same one until a batch of it
    /// fills up, then another one at random (Kafka's sticky partitioner, KIP-480).
    pub fn sticky_partition(&mut self, topic: &str) -> Option<i32> {
        let count = self.partition_count(topic)?;
        if let Some(&partition) = self.sticky.get(topic) {
            return Some(partition);
        }
        let partition = (self.next_random() % count as u64) as i32;
        self.sticky.insert(topic.to_owned(), partition);
        Some(partition)
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.random_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random_state = x;
        x
    }

    /// Appends a record to its partition's last open batch, or to a new one. Returns true when
    /// the append made a batch ready that was not (so the sender should wake up).
    pub fn append(
        &mut self,
        topic: &str,
        partition: i32,
        record: ProduceRecord,
        tag: u64,
        now: Instant,
    ) -> bool {
        let limits = self.limits;
        let bytes = record_bytes(&record);
        let queues = self
            .topics
            .get_mut(topic)
            .expect("topic known before append");
        let queue = &mut queues[usize::try_from(partition).expect("partition >= 0")];
        let fits = queue.open.back().is_some_and(|last| {
            last.bytes + bytes <= limits.batch_bytes && last.records.len() < BATCH_RECORDS_MAX
        });
        let mut woke = false;
        if !fits {
            // A new batch: the sender must learn its linger deadline; and the previous one is
            // now full.
            queue.open.push_back(OpenBatch {
                records: Vec::new(),
                tags: Vec::new(),
                bytes: 0,
                created: now,
            });
            woke = true;
        }
        let last = queue.open.back_mut().expect("just ensured");
        last.records.push(record);
        last.tags.push(tag);
        last.bytes += bytes;
        let full = last.bytes >= limits.batch_bytes || last.records.len() >= BATCH_RECORDS_MAX;
        self.buffered_bytes += bytes;
        if full && self.sticky.get(topic) == Some(&partition) {
            self.rotate_sticky(topic, partition);
        }
        woke || full || limits.linger.is_zero()
    }

    fn rotate_sticky(&mut self, topic: &str, current: i32) {
        let count = self.partition_count(topic).expect("topic known");
        let mut next = (self.next_random() % count as u64) as i32;
        if count > 1 && next == current {
            next = (next + 1) % count;
        }
        self.sticky.insert(topic.to_owned(), next);
    }

    /// Takes at most one batch per partition of `partitions` that may send on `connection` now,
    /// up to `request_bytes_max` in all (always at least one batch). Resends come back as they
    /// were; new batches get their sequence numbers here.
    pub fn drain(
        &mut self,
        partitions: &[TopicPartition],
        connection: u64,
        request_bytes_max: usize,
        now: Instant,
        flushing: bool,
    ) -> Vec<DrainedBatch> {
        let limits = self.limits;
        let mut drained: Vec<DrainedBatch> = Vec::new();
        let mut request_bytes = 0;
        let start = match partitions.len() {
            0 => 0,
            count => self.drain_rotation % count,
        };
        self.drain_rotation = self.drain_rotation.wrapping_add(1);
        let rotated = partitions[start..].iter().chain(&partitions[..start]);
        for topic_partition in rotated {
            let Some(queue) = self.queue_mut(topic_partition) else {
                continue;
            };
            if !queue.sendable(&limits, connection, now, flushing) {
                continue;
            }
            let next_bytes = match queue.resend.front() {
                Some(batch) => batch.bytes,
                None => queue.open.front().expect("sendable").bytes,
            };
            if !drained.is_empty() && request_bytes + next_bytes > request_bytes_max {
                break;
            }
            request_bytes += next_bytes;
            let batch = match queue.resend.pop_front() {
                Some(batch) => batch,
                None => {
                    let open = queue.open.pop_front().expect("sendable");
                    let base_sequence = if limits.idempotence {
                        queue.sequence_next
                    } else {
                        -1
                    };
                    if limits.idempotence {
                        queue.sequence_next = add_sequence(base_sequence, open.records.len());
                    }
                    DrainedBatch {
                        topic_partition: topic_partition.clone(),
                        records: open.records,
                        encoded: None,
                        tags: open.tags,
                        bytes: open.bytes,
                        base_sequence,
                        attempts: 0,
                    }
                }
            };
            queue.in_flight += 1;
            queue.in_flight_connection = connection;
            drained.push(batch);
        }
        drained
    }

    fn queue_mut(&mut self, topic_partition: &TopicPartition) -> Option<&mut PartitionQueue> {
        self.topics
            .get_mut(&topic_partition.topic)?
            .get_mut(usize::try_from(topic_partition.partition).ok()?)
    }

    fn queue(&self, topic_partition: &TopicPartition) -> Option<&PartitionQueue> {
        self.topics
            .get(&topic_partition.topic)?
            .get(usize::try_from(topic_partition.partition).ok()?)
    }

    /// A batch came back acknowledged, or failed for good: its bytes leave the buffer.
    pub fn complete(&mut self, batch: &DrainedBatch) {
        let queue = self
            .queue_mut(&batch.topic_partition)
            .expect("a drained batch's partition has a queue");
        assert!(
            queue.in_flight > 0,
            "completed a batch that was not in flight"
        );
        queue.in_flight -= 1;
        assert!(self.buffered_bytes >= batch.bytes);
        self.buffered_bytes -= batch.bytes;
    }

    /// A batch failed and will be sent again, after `backoff`, behind the partition's other
    /// batches waiting to be resent (responses arrive in send order, so this keeps their order).
    pub fn requeue(&mut self, batch: DrainedBatch, backoff: Duration, now: Instant) {
        assert!(batch.encoded.is_some(), "only sent batches are resent");
        let queue = self
            .queue_mut(&batch.topic_partition)
            .expect("a drained batch's partition has a queue");
        assert!(
            queue.in_flight > 0,
            "requeued a batch that was not in flight"
        );
        queue.in_flight -= 1;
        queue.resend_not_before = Some(now + backoff);
        queue.resend.push_back(batch);
    }

    /// Whether a batch of this partition waits to be resent: a later batch that the broker
    /// refused as out of order was refused because of it, and is resent behind it.
    pub fn has_resend(&self, topic_partition: &TopicPartition) -> bool {
        self.queue(topic_partition)
            .is_some_and(|queue| !queue.resend.is_empty())
    }

    /// Partitions with something that may be sent now or later (not in flight).
    pub fn waiting_partitions(&self) -> Vec<TopicPartition> {
        let mut waiting = Vec::new();
        for (topic, queues) in &self.topics {
            for (partition, queue) in queues.iter().enumerate() {
                if !queue.open.is_empty() || !queue.resend.is_empty() {
                    waiting.push(TopicPartition {
                        topic: topic.clone(),
                        partition: partition as i32,
                    });
                }
            }
        }
        waiting.sort();
        waiting
    }

    /// Whether `topic_partition` may send on `connection` now.
    #[cfg(test)]
    pub fn sendable(
        &self,
        topic_partition: &TopicPartition,
        connection: u64,
        now: Instant,
        flushing: bool,
    ) -> bool {
        self.queue(topic_partition)
            .is_some_and(|queue| queue.sendable(&self.limits, connection, now, flushing))
    }

    /// The earliest time after `now` a waiting partition becomes ready by time alone. A
    /// partition whose time has come but that waits for its batches in flight is left out: an
    /// answer wakes the sender for it.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.topics
            .values()
            .flatten()
            .filter_map(|queue| queue.deadline(&self.limits))
            .filter(|deadline| *deadline > now)
            .min()
    }

    /// Takes every batch of `partitions` that is not in flight (open or waiting to be resent),
    /// to fail them; their bytes leave the buffer.
    pub fn take_waiting(&mut self, partitions: &[TopicPartition]) -> Vec<DrainedBatch> {
        let mut taken = Vec::new();
        for topic_partition in partitions {
            let Some(queue) = self.queue_mut(topic_partition) else {
                continue;
            };
            let mut batches: Vec<DrainedBatch> = queue.resend.drain(..).collect();
            batches.extend(queue.open.drain(..).map(|open| DrainedBatch {
                topic_partition: topic_partition.clone(),
                records: open.records,
                encoded: None,
                tags: open.tags,
                bytes: open.bytes,
                base_sequence: -1,
                attempts: 0,
            }));
            for batch in &batches {
                assert!(self.buffered_bytes >= batch.bytes);
                self.buffered_bytes -= batch.bytes;
            }
            taken.extend(batches);
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> BatchLimits {
        BatchLimits {
            batch_bytes: 1_000,
            linger: Duration::from_millis(10),
            partition_in_flight_max: 5,
            idempotence: true,
        }
    }

    fn record(value_bytes: usize) -> ProduceRecord {
        ProduceRecord {
            key: None,
            value: Some(Bytes::from(vec![7u8; value_bytes])),
            headers: vec![],
            timestamp_ms: 0,
        }
    }

    fn tp(partition: i32) -> TopicPartition {
        TopicPartition {
            topic: "t".into(),
            partition,
        }
    }

    fn accumulator(partitions: i32) -> Accumulator {
        let mut accumulator = Accumulator::new(limits(), 1);
        accumulator.set_partition_count("t", partitions);
        accumulator
    }

    #[test]
    fn batches_fill_up_to_batch_bytes_and_linger_otherwise() {
        let mut acc = accumulator(1);
        let t0 = Instant::now();
        let each = 200 - RECORD_OVERHEAD_BYTES;
        for tag in 0..5 {
            acc.append("t", 0, record(each), tag, t0);
        }
        assert_eq!(acc.buffered_bytes(), 1_000);
        // Exactly full: ready without waiting for the linger.
        assert!(acc.sendable(&tp(0), 1, t0, false));
        acc.append("t", 0, record(each), 5, t0);
        let drained = acc.drain(&[tp(0)], 1, usize::MAX, t0, false);
        assert_eq!(drained.len(), 1);
        assert_eq!(drained[0].tags, vec![0, 1, 2, 3, 4]);
        // The sixth record is alone in its batch until the linger passes, or a flush.
        assert!(!acc.sendable(&tp(0), 1, t0, false));
        assert!(acc.sendable(&tp(0), 1, t0, true));
        assert_eq!(acc.next_deadline(t0), Some(t0 + Duration::from_millis(10)));
        assert_eq!(acc.next_deadline(t0 + Duration::from_millis(10)), None);
        assert!(acc.sendable(&tp(0), 1, t0 + Duration::from_millis(10), false));
    }

    #[test]
    fn sequences_are_assigned_at_drain_per_partition() {
        let mut acc = accumulator(2);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(1);
        for tag in 0..3 {
            acc.append("t", 0, record(10), tag, t0);
        }
        acc.append("t", 1, record(10), 9, t0);
        let first = acc.drain(&[tp(0), tp(1)], 1, usize::MAX, later, false);
        assert_eq!(
            first
                .iter()
                .map(|b| (b.topic_partition.partition, b.base_sequence))
                .collect::<Vec<_>>(),
            vec![(0, 0), (1, 0)]
        );
        acc.append("t", 0, record(10), 3, later);
        let second = acc.drain(&[tp(0)], 1, usize::MAX, later, true);
        assert_eq!(second[0].base_sequence, 3);
        for batch in first.iter().chain(&second) {
            acc.complete(batch);
        }
        assert_eq!(acc.buffered_bytes(), 0);
    }

    #[test]
    fn resends_go_first_once_nothing_is_in_flight() {
        let mut acc = accumulator(1);
        let t0 = Instant::now();
        let mut sent = Vec::new();
        for tag in 0..3 {
            acc.append("t", 0, record(990 - RECORD_OVERHEAD_BYTES), tag, t0);
            let mut batch = acc.drain(&[tp(0)], 1, usize::MAX, t0, true).remove(0);
            batch.encoded = Some(Bytes::from_static(b"x"));
            sent.push(batch);
        }
        acc.append("t", 0, record(10), 3, t0);
        // Batch 0 fails; 1 and 2 are still in flight, so nothing may go out.
        let backoff = Duration::from_millis(100);
        let mut sent = sent.into_iter();
        acc.requeue(sent.next().unwrap(), backoff, t0);
        assert!(acc.has_resend(&tp(0)));
        assert!(!acc.sendable(&tp(0), 1, t0 + backoff, true));
        // The later ones come back refused (out of order) and queue up behind it.
        acc.requeue(sent.next().unwrap(), backoff, t0);
        acc.requeue(sent.next().unwrap(), backoff, t0);
        assert!(!acc.sendable(&tp(0), 1, t0, true), "backoff first");
        let at = t0 + backoff;
        let mut resent = Vec::new();
        for round in 0..3 {
            let batch = acc.drain(&[tp(0)], 1, usize::MAX, at, true).remove(0);
            if round < 2 {
                assert!(
                    acc.drain(&[tp(0)], 1, usize::MAX, at, true).is_empty(),
                    "resends go one at a time"
                );
            }
            acc.complete(&batch);
            resent.push(batch.base_sequence);
        }
        assert_eq!(resent, vec![0, 1, 2]);
        let last = acc.drain(&[tp(0)], 1, usize::MAX, at, true);
        assert_eq!(last[0].base_sequence, 3);
        assert_eq!(last[0].tags, vec![3]);
    }

    #[test]
    fn in_flight_batches_pin_a_partition_to_its_connection() {
        let mut acc = accumulator(1);
        let t0 = Instant::now();
        acc.append("t", 0, record(10), 0, t0);
        let batch = acc.drain(&[tp(0)], 1, usize::MAX, t0, true).remove(0);
        acc.append("t", 0, record(10), 1, t0);
        assert!(!acc.sendable(&tp(0), 2, t0, true));
        assert!(acc.sendable(&tp(0), 1, t0, true));
        acc.complete(&batch);
        assert!(acc.sendable(&tp(0), 2, t0, true));
    }

    #[test]
    fn drain_respects_request_bytes_and_partition_in_flight() {
        let mut acc = accumulator(3);
        let t0 = Instant::now();
        for partition in 0..3 {
            acc.append("t", partition, record(400), 0, t0);
        }
        let all = [tp(0), tp(1), tp(2)];
        let drained = acc.drain(&all, 1, 900, t0, true);
        assert_eq!(drained.len(), 2, "two batches of 424 bytes fit in 900");
        let drained = acc.drain(&all, 1, 10, t0, true);
        assert_eq!(drained.len(), 1, "one batch always goes");
        for _ in 0..10 {
            acc.append("t", 0, record(990), 0, t0);
        }
        let mut in_flight = 1;
        while !acc.drain(&[tp(0)], 1, usize::MAX, t0, true).is_empty() {
            in_flight += 1;
        }
        assert_eq!(in_flight, IDEMPOTENT_PARTITION_IN_FLIGHT_MAX);
    }

    #[test]
    fn sticky_partition_moves_when_its_batch_fills() {
        let mut acc = accumulator(4);
        let t0 = Instant::now();
        let first = acc.sticky_partition("t").unwrap();
        assert_eq!(acc.sticky_partition("t"), Some(first));
        let half = 500 - RECORD_OVERHEAD_BYTES;
        acc.append("t", first, record(half), 0, t0);
        assert_eq!(acc.sticky_partition("t"), Some(first));
        acc.append("t", first, record(half), 1, t0);
        let second = acc.sticky_partition("t").unwrap();
        assert_ne!(second, first);
        assert!((0..4).contains(&second));
        assert_eq!(acc.sticky_partition("unknown"), None);
    }

    #[test]
    fn sequences_wrap() {
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 5), 3);
    }
}
