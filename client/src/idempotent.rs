//! Idempotent produce: every batch carries the producer id, epoch and a per-partition base
//! sequence, so the broker can recognise a resent batch and answer with its original offset
//! instead of appending it twice.
//!
//! `ProducerSequences` is the pure part: it numbers batches and advances a partition's sequence
//! only once the broker acknowledged the batch. `IdempotentProducer` adds the connection and the
//! resend loop: after an I/O error it reconnects and resends the very same bytes, so a batch that
//! the broker stored before the connection broke (or before it restarted) is not duplicated.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::records::Compression;
use kafka_protocol::ResponseError;

use super::apis::ProducerIdentity;
use super::error::{ClientError, Result};
use super::records::{encode_record_batch_as, BatchProducer};
use super::types::ProduceRecord;
use super::{Client, ClientConfig};

/// Sends of one batch, the first included. Each failed one waits a backoff first, which doubles
/// from SEND_BACKOFF_INITIAL; 8 attempts wait about 13 s in all, long enough for a broker to
/// restart.
pub const SEND_ATTEMPTS_MAX: u32 = 8;
const SEND_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const SEND_BACKOFF_MAX: Duration = Duration::from_secs(4);
/// Idempotent batches are acknowledged by all in-sync replicas, as Kafka requires.
pub const ACKS_ALL: i16 = -1;

/// Sequences wrap from i32::MAX to 0, as in Kafka.
fn add_sequence(sequence: i32, delta: i32) -> i32 {
    assert!(sequence >= 0 && delta >= 0);
    let sum = i64::from(sequence) + i64::from(delta);
    (sum % (i64::from(i32::MAX) + 1)) as i32
}

/// A batch numbered and encoded, not yet acknowledged. Resending it must reuse `bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBatch {
    pub topic: String,
    pub partition: i32,
    pub base_sequence: i32,
    pub record_count: i32,
    pub bytes: Bytes,
}

/// The next sequence of each partition one producer id and epoch wrote to.
#[derive(Debug, Clone)]
pub struct ProducerSequences {
    identity: ProducerIdentity,
    /// Missing partitions start at 0. Grows with the partitions written to, which the topics'
    /// partition counts bound.
    sequence_next: HashMap<(String, i32), i32>,
}

impl ProducerSequences {
    pub fn new(identity: ProducerIdentity) -> Self {
        assert!(identity.producer_id >= 0 && identity.producer_epoch >= 0);
        ProducerSequences {
            identity,
            sequence_next: HashMap::new(),
        }
    }

    pub fn identity(&self) -> ProducerIdentity {
        self.identity
    }

    pub fn sequence_next(&self, topic: &str, partition: i32) -> i32 {
        self.sequence_next
            .get(&(topic.to_owned(), partition))
            .copied()
            .unwrap_or(0)
    }

    /// Encodes `records` as the partition's next batch. Does not advance the sequence.
    pub fn encode(
        &self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
        compression: Compression,
    ) -> Result<PendingBatch> {
        let base_sequence = self.sequence_next(topic, partition);
        let producer = BatchProducer {
            producer_id: self.identity.producer_id,
            producer_epoch: self.identity.producer_epoch,
            base_sequence,
        };
        let bytes = encode_record_batch_as(records, compression, producer)?;
        Ok(PendingBatch {
            topic: topic.to_owned(),
            partition,
            base_sequence,
            record_count: i32::try_from(records.len()).expect("BATCH_RECORDS_MAX fits in i32"),
            bytes,
        })
    }

    /// The broker stored `batch`: the partition's next batch starts after its records.
    pub fn acknowledge(&mut self, batch: &PendingBatch) {
        let key = (batch.topic.clone(), batch.partition);
        let sequence_next = self.sequence_next.entry(key).or_insert(0);
        assert_eq!(
            *sequence_next, batch.base_sequence,
            "batches of a partition are acknowledged in the order they were numbered"
        );
        *sequence_next = add_sequence(batch.base_sequence, batch.record_count);
    }

    /// A new epoch (after InitProducerId bumped it) restarts every partition at sequence 0.
    pub fn restart(&mut self, identity: ProducerIdentity) {
        *self = ProducerSequences::new(identity);
    }
}

/// Whether sending the same batch again may succeed. OUT_OF_ORDER_SEQUENCE_NUMBER and
/// INVALID_PRODUCER_EPOCH are final: resending cannot fix them, and sending other records in
/// their place would reorder the partition.
pub fn is_resendable(error: &ClientError) -> bool {
    match error {
        ClientError::Io { .. } => true,
        ClientError::Kafka(error) => {
            error.error.is_retriable()
                && !matches!(
                    error.error,
                    ResponseError::OutOfOrderSequenceNumber | ResponseError::InvalidProducerEpoch
                )
        }
        _ => false,
    }
}

fn backoff(attempt: u32) -> Duration {
    assert!(attempt >= 1);
    let factor = 1u32 << (attempt - 1).min(16);
    (SEND_BACKOFF_INITIAL * factor).min(SEND_BACKOFF_MAX)
}

/// A producer whose batches the broker deduplicates per partition.
///
/// Batches go out one at a time, each acknowledged by all replicas (acks=all) before the next,
/// so a partition's batches can never be reordered. After `produce` returns an error the outcome
/// of that batch is unknown; drop the producer (or call `bump_epoch`) before producing again.
pub struct IdempotentProducer {
    client: Client,
    sequences: ProducerSequences,
    compression: Compression,
}

impl IdempotentProducer {
    /// Takes over `client` and asks its broker for a producer id.
    pub fn new(mut client: Client) -> Result<Self> {
        let identity = client.init_producer_id()?;
        Ok(IdempotentProducer {
            client,
            sequences: ProducerSequences::new(identity),
            compression: Compression::None,
        })
    }

    pub fn connect(bootstrap: &str, config: ClientConfig) -> Result<Self> {
        Self::new(Client::connect_with(bootstrap, config)?)
    }

    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    pub fn identity(&self) -> ProducerIdentity {
        self.sequences.identity()
    }

    pub fn sequence_next(&self, topic: &str, partition: i32) -> i32 {
        self.sequences.sequence_next(topic, partition)
    }

    /// The connection, for requests other than Produce (e.g. Metadata).
    pub fn client(&mut self) -> &mut Client {
        &mut self.client
    }

    /// Produces `records` as one batch and returns its base offset. `acks` must be all (-1).
    /// I/O errors and retriable broker errors resend the same bytes up to SEND_ATTEMPTS_MAX
    /// times in all, reconnecting after an I/O error.
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
        acks: i16,
    ) -> Result<i64> {
        if acks != ACKS_ALL {
            return Err(ClientError::Config(format!(
                "an idempotent producer needs acks=all, not {acks}"
            )));
        }
        let batch = self
            .sequences
            .encode(topic, partition, records, self.compression)?;
        let base_offset = self.send(&batch)?;
        self.sequences.acknowledge(&batch);
        Ok(base_offset)
    }

    /// Asks the broker for the next epoch of this producer id; sequences restart at 0. Needs
    /// InitProducerId v3+.
    pub fn bump_epoch(&mut self) -> Result<ProducerIdentity> {
        let identity = self
            .client
            .init_producer_id_as(Some(self.sequences.identity()))?;
        self.sequences.restart(identity);
        Ok(identity)
    }

    fn send(&mut self, batch: &PendingBatch) -> Result<i64> {
        let mut attempt = 1;
        let mut connected = true;
        loop {
            let result = if connected {
                self.send_once(batch)
            } else {
                self.client.reconnect().and_then(|()| self.send_once(batch))
            };
            match result {
                Ok(base_offset) => return Ok(base_offset),
                Err(error) if attempt < SEND_ATTEMPTS_MAX && is_resendable(&error) => {
                    // The old connection may be mid-frame after an I/O error.
                    connected = !matches!(error, ClientError::Io { .. });
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn send_once(&mut self, batch: &PendingBatch) -> Result<i64> {
        self.client
            .produce_batch(&batch.topic, batch.partition, batch.bytes.clone(), ACKS_ALL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    fn record(value: &'static str) -> ProduceRecord {
        ProduceRecord {
            key: None,
            value: Some(Bytes::from_static(value.as_bytes())),
            headers: vec![],
            timestamp_ms: 1_700_000_000_000,
        }
    }

    fn identity() -> ProducerIdentity {
        ProducerIdentity {
            producer_id: 4242,
            producer_epoch: 3,
        }
    }

    #[test]
    fn batch_header_carries_producer_id_epoch_and_base_sequence() {
        let mut sequences = ProducerSequences::new(identity());
        let first = sequences
            .encode("t", 0, &[record("a"), record("b")], Compression::None)
            .unwrap();
        sequences.acknowledge(&first);
        let second = sequences
            .encode(
                "t",
                0,
                &[record("c"), record("d"), record("e")],
                Compression::None,
            )
            .unwrap();
        let infos = RecordBatchDecoder::decode_batch_info(&mut second.bytes.clone()).unwrap();
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].producer_id, 4242);
        assert_eq!(infos[0].producer_epoch, 3);
        assert_eq!(infos[0].base_sequence, 2);
        assert_eq!(infos[0].record_count, 3);
        let decoded = RecordBatchDecoder::decode(&mut second.bytes.clone()).unwrap();
        let record_sequences: Vec<_> = decoded.records.iter().map(|r| r.sequence).collect();
        assert_eq!(record_sequences, vec![2, 3, 4]);
        assert!(decoded.records.iter().all(|r| r.producer_id == 4242));
    }

    #[test]
    fn sequences_advance_per_partition_only_when_acknowledged() {
        let mut sequences = ProducerSequences::new(identity());
        let a0 = sequences
            .encode(
                "a",
                0,
                &[record("x"), record("x"), record("x")],
                Compression::None,
            )
            .unwrap();
        // Not acknowledged yet: encoding again numbers the same batch the same way.
        let a0_again = sequences
            .encode(
                "a",
                0,
                &[record("x"), record("x"), record("x")],
                Compression::None,
            )
            .unwrap();
        assert_eq!(a0, a0_again);
        sequences.acknowledge(&a0);
        let a1 = sequences
            .encode("a", 1, &[record("y"), record("y")], Compression::None)
            .unwrap();
        let b0 = sequences
            .encode("b", 0, &[record("z")], Compression::None)
            .unwrap();
        assert_eq!((a1.base_sequence, b0.base_sequence), (0, 0));
        sequences.acknowledge(&a1);
        sequences.acknowledge(&b0);
        assert_eq!(sequences.sequence_next("a", 0), 3);
        assert_eq!(sequences.sequence_next("a", 1), 2);
        assert_eq!(sequences.sequence_next("b", 0), 1);
        assert_eq!(sequences.sequence_next("b", 1), 0);
        sequences.restart(ProducerIdentity {
            producer_id: 4242,
            producer_epoch: 4,
        });
        assert_eq!(sequences.sequence_next("a", 0), 0);
    }

    #[test]
    fn sequences_wrap_to_zero_after_i32_max() {
        assert_eq!(add_sequence(i32::MAX - 1, 1), i32::MAX);
        assert_eq!(add_sequence(i32::MAX, 1), 0);
        assert_eq!(add_sequence(i32::MAX - 1, 5), 3);
        let mut sequences = ProducerSequences::new(identity());
        sequences
            .sequence_next
            .insert(("t".to_owned(), 0), i32::MAX - 1);
        // A batch straddling the wrap stays one batch; the broker wraps the sequences after
        // its base.
        let batch = sequences
            .encode(
                "t",
                0,
                &[record("a"), record("a"), record("a"), record("a")],
                Compression::None,
            )
            .unwrap();
        let infos = RecordBatchDecoder::decode_batch_info(&mut batch.bytes.clone()).unwrap();
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].base_sequence, i32::MAX - 1);
        sequences.acknowledge(&batch);
        assert_eq!(sequences.sequence_next("t", 0), 2);
    }

    #[test]
    fn only_transient_errors_are_resent() {
        let io = ClientError::Io {
            address: "x".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        };
        assert!(is_resendable(&io));
        let kafka = |error: ResponseError| {
            ClientError::Kafka(super::super::KafkaError {
                error,
                message: None,
                context: String::new(),
            })
        };
        assert!(is_resendable(&kafka(ResponseError::NotLeaderOrFollower)));
        assert!(!is_resendable(&kafka(
            ResponseError::OutOfOrderSequenceNumber
        )));
        assert!(!is_resendable(&kafka(ResponseError::InvalidProducerEpoch)));
        assert!(!is_resendable(&ClientError::protocol("garbled")));
        assert_eq!(backoff(1), SEND_BACKOFF_INITIAL);
        assert_eq!(backoff(30), SEND_BACKOFF_MAX);
    }
}
