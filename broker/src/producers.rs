//! Idempotent-producer state of one partition, kept by the partition's owner shard.
//!
//! For each producer id: its current epoch and the sequence ranges and offsets of its last
//! [`PRODUCER_BATCHES_KEPT`] batches. A batch is checked and reserved synchronously, in append
//! order, before it is handed to storage, so pipelined batches of one producer see each other;
//! its offsets are filled in when the append completes. A retried batch that matches a kept
//! one is answered with the original offsets and not appended again.
//!
//! The state is derived data: after a restart it is rebuilt by scanning the partition's log
//! ([`ProducerStates::observe_stored`]).

use std::collections::{HashMap, VecDeque};

use kafka_protocol::error::ResponseError;

/// Batches remembered per producer: the most a Kafka client keeps in flight per connection, so
/// any retry it can send is still recognised.
pub const PRODUCER_BATCHES_KEPT: usize = 5;

/// Producer ids remembered per partition; beyond this the least recently active is forgotten
/// (and treated like an expired one). Bounds memory per partition.
pub const PARTITION_PRODUCERS_MAX: usize = 10_000;

/// Kafka's `producer.id.expiration.ms` default: one day without a write forgets a producer.
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 86_400_000;

/// File in a partition directory holding the last producer-state snapshot.
pub const SNAPSHOT_FILE_NAME: &str = "producer-state.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct Snapshot {
    /// The state covers every batch below this offset.
    next_offset: i64,
    states: serde_json::Value,
}

/// The idempotence fields of one RecordBatch v2 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    /// Records in the batch minus one (lastOffsetDelta).
    pub last_offset_delta: i32,
    pub transactional: bool,
}

impl BatchIdentity {
    /// Reads the header fields of a batch that already passed validation.
    pub fn parse(batch: &[u8]) -> BatchIdentity {
        let header = record_batch::BatchHeader::parse(batch).expect("validated batches parse");
        BatchIdentity::of(&header)
    }

    pub fn of(header: &record_batch::BatchHeader) -> BatchIdentity {
        BatchIdentity {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
            last_offset_delta: header.last_offset_delta,
            transactional: header.is_transactional(),
        }
    }

    pub fn is_idempotent(&self) -> bool {
        self.producer_id >= 0
    }

    /// The batch's last sequence number; sequences wrap from i32::MAX to 0.
    pub fn last_sequence(&self) -> i32 {
        add_sequence(self.base_sequence, self.last_offset_delta)
    }
}

fn add_sequence(sequence: i32, delta: i32) -> i32 {
    let sum = i64::from(sequence) + i64::from(delta);
    (sum % (i64::from(i32::MAX) + 1)) as i32
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct KeptBatch {
    first_sequence: i32,
    last_sequence: i32,
    /// -1 while the append is in flight.
    first_offset: i64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<KeptBatch>,
    last_write_ms: i64,
}

/// What to do with an incoming idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Append it; its sequence range is reserved.
    Append,
    /// Already stored at this first offset: answer with it and do not append.
    Duplicate { first_offset: i64 },
    /// A retry of a batch whose append is still in flight.
    DuplicateInFlight,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStates {
    /// Checks an idempotent batch against the producer's state and, when it is to be appended,
    /// reserves its sequence range.
    pub fn check_and_reserve(
        &mut self,
        batch: &BatchIdentity,
        now_ms: i64,
    ) -> Result<Verdict, ResponseError> {
        assert!(batch.is_idempotent());
        if batch.base_sequence < 0 || batch.producer_epoch < 0 {
            return Err(ResponseError::InvalidRecord);
        }
        self.expire(now_ms);
        let Some(entry) = self.producers.get_mut(&batch.producer_id) else {
            // Unknown (new or expired) producer: accept it from any sequence, as Kafka 2.5+
            // does, and start tracking.
            self.make_room();
            let mut entry = ProducerEntry {
                epoch: batch.producer_epoch,
                batches: VecDeque::new(),
                last_write_ms: now_ms,
            };
            keep(&mut entry, batch, -1);
            self.producers.insert(batch.producer_id, entry);
            return Ok(Verdict::Append);
        };
        if batch.producer_epoch < entry.epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        if batch.producer_epoch > entry.epoch {
            // A bumped epoch starts its sequences again at 0.
            if batch.base_sequence != 0 {
                return Err(ResponseError::OutOfOrderSequenceNumber);
            }
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        } else {
            let last_sequence = batch.last_sequence();
            if let Some(kept) = entry.batches.iter().find(|kept| {
                kept.first_sequence == batch.base_sequence && kept.last_sequence == last_sequence
            }) {
                return Ok(if kept.first_offset < 0 {
                    Verdict::DuplicateInFlight
                } else {
                    Verdict::Duplicate {
                        first_offset: kept.first_offset,
                    }
                });
            }
            if let Some(newest) = entry.batches.back() {
                if batch.base_sequence != add_sequence(newest.last_sequence, 1) {
                    return Err(ResponseError::OutOfOrderSequenceNumber);
                }
            }
        }
        entry.last_write_ms = now_ms;
        keep(entry, batch, -1);
        Ok(Verdict::Append)
    }

    /// Records where a reserved batch was stored.
    pub fn complete(&mut self, batch: &BatchIdentity, first_offset: i64) {
        let Some(entry) = self.producers.get_mut(&batch.producer_id) else {
            return;
        };
        let first_sequence = batch.base_sequence;
        if let Some(kept) = entry
            .batches
            .iter_mut()
            .find(|k| k.first_sequence == first_sequence && k.first_offset < 0)
        {
            kept.first_offset = first_offset;
        }
    }

    /// Forgets a producer whose reserved batch failed to append: the sequence range it reserved
    /// may or may not be on disk, so the next batch is accepted as from an unknown producer.
    pub fn abandon(&mut self, producer_id: i64) {
        self.producers.remove(&producer_id);
    }

    /// Replays a batch found in the log (at start-up).
    pub fn observe_stored(&mut self, batch: &BatchIdentity, first_offset: i64, timestamp_ms: i64) {
        if !batch.is_idempotent() || batch.base_sequence < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: batch.producer_epoch,
                batches: VecDeque::new(),
                last_write_ms: timestamp_ms,
            });
        if batch.producer_epoch > entry.epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        }
        entry.last_write_ms = entry.last_write_ms.max(timestamp_ms);
        keep(entry, batch, first_offset);
    }

    /// Whether a reserved batch is still being appended (its offsets unknown).
    pub fn has_in_flight(&self) -> bool {
        self.producers
            .values()
            .any(|e| e.batches.iter().any(|b| b.first_offset < 0))
    }

    /// Writes a snapshot of this state, valid for the log up to (excluding) `next_offset`.
    /// Replaced atomically; not fsync'd: a snapshot lost in a crash only means a longer scan.
    pub fn write_snapshot(&self, dir: &std::path::Path, next_offset: i64) -> std::io::Result<()> {
        assert!(
            !self.has_in_flight(),
            "a snapshot holds completed batches only"
        );
        let snapshot = Snapshot {
            next_offset,
            states: serde_json::to_value(self).expect("producer state serializes"),
        };
        let tmp = dir.join(format!("{SNAPSHOT_FILE_NAME}.tmp"));
        std::fs::write(
            &tmp,
            serde_json::to_vec(&snapshot).expect("snapshot serializes"),
        )?;
        std::fs::rename(&tmp, dir.join(SNAPSHOT_FILE_NAME))
    }

    /// The last snapshot in `dir` and the offset its state covers up to, if one is readable.
    pub fn read_snapshot(dir: &std::path::Path) -> Option<(ProducerStates, i64)> {
        let bytes = std::fs::read(dir.join(SNAPSHOT_FILE_NAME)).ok()?;
        let snapshot: Snapshot = serde_json::from_slice(&bytes).ok()?;
        let states: ProducerStates = serde_json::from_value(snapshot.states).ok()?;
        Some((states, snapshot.next_offset))
    }

    /// Drops producers idle for longer than [`PRODUCER_ID_EXPIRATION_MS`].
    pub fn expire(&mut self, now_ms: i64) {
        if self.producers.len() < 64 {
            // Cheap enough to keep; a scan per append would cost more than the memory.
            return;
        }
        self.producers
            .retain(|_, entry| now_ms - entry.last_write_ms <= PRODUCER_ID_EXPIRATION_MS);
    }

    fn make_room(&mut self) {
        if self.producers.len() < PARTITION_PRODUCERS_MAX {
            return;
        }
        let oldest = self
            .producers
            .iter()
            .min_by_key(|(_, entry)| entry.last_write_ms)
            .map(|(id, _)| *id);
        if let Some(id) = oldest {
            self.producers.remove(&id);
        }
    }
}

fn keep(entry: &mut ProducerEntry, batch: &BatchIdentity, first_offset: i64) {
    if entry.batches.len() == PRODUCER_BATCHES_KEPT {
        entry.batches.pop_front();
    }
    entry.batches.push_back(KeptBatch {
        first_sequence: batch.base_sequence,
        last_sequence: batch.last_sequence(),
        first_offset,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchIdentity {
        BatchIdentity {
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            last_offset_delta: records - 1,
            transactional: false,
        }
    }

    fn append(
        states: &mut ProducerStates,
        b: &BatchIdentity,
        offset: i64,
    ) -> Result<Verdict, ResponseError> {
        let verdict = states.check_and_reserve(b, 0)?;
        if verdict == Verdict::Append {
            states.complete(b, offset);
        }
        Ok(verdict)
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        let mut states = ProducerStates::default();
        assert_eq!(
            append(&mut states, &batch(7, 0, 0, 10), 100),
            Ok(Verdict::Append)
        );
        assert_eq!(
            append(&mut states, &batch(7, 0, 10, 5), 110),
            Ok(Verdict::Append)
        );
        assert_eq!(
            append(&mut states, &batch(7, 0, 0, 10), 0),
            Ok(Verdict::Duplicate { first_offset: 100 })
        );
        assert_eq!(
            append(&mut states, &batch(7, 0, 10, 5), 0),
            Ok(Verdict::Duplicate { first_offset: 110 })
        );
        assert_eq!(
            append(&mut states, &batch(7, 0, 15, 1), 115),
            Ok(Verdict::Append)
        );
    }

    #[test]
    fn gaps_and_reordering_are_refused() {
        let mut states = ProducerStates::default();
        append(&mut states, &batch(1, 0, 0, 3), 0).unwrap();
        assert_eq!(
            append(&mut states, &batch(1, 0, 5, 1), 0),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            append(&mut states, &batch(1, 0, 1, 2), 0),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            append(&mut states, &batch(1, 0, 3, 1), 3),
            Ok(Verdict::Append)
        );
    }

    #[test]
    fn stale_epochs_are_fenced_and_new_epochs_restart_at_zero() {
        let mut states = ProducerStates::default();
        append(&mut states, &batch(1, 3, 0, 1), 0).unwrap();
        assert_eq!(
            append(&mut states, &batch(1, 2, 1, 1), 0),
            Err(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(
            append(&mut states, &batch(1, 4, 9, 1), 0),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            append(&mut states, &batch(1, 4, 0, 1), 1),
            Ok(Verdict::Append)
        );
        assert_eq!(
            append(&mut states, &batch(1, 3, 1, 1), 0),
            Err(ResponseError::InvalidProducerEpoch)
        );
    }

    #[test]
    fn only_the_last_five_batches_are_recognised() {
        let mut states = ProducerStates::default();
        for i in 0..7 {
            append(&mut states, &batch(1, 0, i, 1), i64::from(i)).unwrap();
        }
        assert_eq!(
            append(&mut states, &batch(1, 0, 2, 1), 0),
            Ok(Verdict::Duplicate { first_offset: 2 })
        );
        // Batch 1 is no longer kept: a retry of it is out of order, not silently re-appended.
        assert_eq!(
            append(&mut states, &batch(1, 0, 1, 1), 0),
            Err(ResponseError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn pipelined_batches_see_reservations() {
        let mut states = ProducerStates::default();
        let (first, second) = (batch(1, 0, 0, 4), batch(1, 0, 4, 4));
        assert_eq!(states.check_and_reserve(&first, 0), Ok(Verdict::Append));
        assert_eq!(states.check_and_reserve(&second, 0), Ok(Verdict::Append));
        assert_eq!(
            states.check_and_reserve(&first, 0),
            Ok(Verdict::DuplicateInFlight)
        );
        states.complete(&first, 40);
        states.complete(&second, 44);
        assert_eq!(
            states.check_and_reserve(&second, 0),
            Ok(Verdict::Duplicate { first_offset: 44 })
        );
    }

    #[test]
    fn state_rebuilt_from_the_log_recognises_retries() {
        let mut states = ProducerStates::default();
        states.observe_stored(&batch(9, 1, 0, 2), 0, 1_000);
        states.observe_stored(&batch(9, 1, 2, 2), 2, 1_000);
        assert_eq!(
            states.check_and_reserve(&batch(9, 1, 2, 2), 2_000),
            Ok(Verdict::Duplicate { first_offset: 2 })
        );
        assert_eq!(
            states.check_and_reserve(&batch(9, 1, 4, 1), 2_000),
            Ok(Verdict::Append)
        );
    }

    #[test]
    fn snapshots_round_trip() {
        let dir = std::env::temp_dir().join(format!(
            "sluice-producers-{}",
            crate::cluster::metadata::random_uuid().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut states = ProducerStates::default();
        append(&mut states, &batch(4, 2, 0, 3), 10).unwrap();
        states.write_snapshot(&dir, 13).unwrap();
        let (mut restored, next_offset) = ProducerStates::read_snapshot(&dir).unwrap();
        assert_eq!(next_offset, 13);
        assert_eq!(
            restored.check_and_reserve(&batch(4, 2, 0, 3), 0),
            Ok(Verdict::Duplicate { first_offset: 10 })
        );
        std::fs::write(dir.join(SNAPSHOT_FILE_NAME), b"{garbage").unwrap();
        assert!(ProducerStates::read_snapshot(&dir).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sequences_wrap() {
        let mut states = ProducerStates::default();
        append(&mut states, &batch(1, 0, i32::MAX - 1, 2), 0).unwrap();
        assert_eq!(
            append(&mut states, &batch(1, 0, 0, 1), 2),
            Ok(Verdict::Append)
        );
    }
}
