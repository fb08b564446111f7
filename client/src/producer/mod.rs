//! A batching, pipelining producer on the blocking client.
//!
//! `Producer::send` partitions a record (explicit partition, the Java client's murmur2 of the
//! key, or the sticky partition for unkeyed records) and appends it to its partition's open batch
//! in the `Accumulator`. One sender thread takes ready batches (full at `batch_bytes`, or
//! `linger` old, or flushed), encodes them as RecordBatch v2 with the configured compression, and
//! writes Produce requests carrying one batch per partition to the leader's connection, up to
//! `in_flight_max` requests per connection without waiting for answers. One reader thread per
//! connection reads the answers in order, reports each batch to the delivery callback, and puts
//! batches that failed with a retriable error back in their partition's queue to be resent after
//! a backoff (their bytes unchanged, so an idempotent broker recognises a resend). Errors that
//! name a stale leader or an unknown partition make the sender refresh its metadata first.
//!
//! Bounds: the records waiting (`buffer_bytes_max`; `send` blocks while it is full), the bytes of
//! one request (`request_bytes_max`), the requests in flight per connection (`in_flight_max`),
//! the sends of one batch (`retries_max` + 1).
//!
//! Ordering: a partition's batches are sent in order. A batch to resend waits until nothing else
//! of its partition is in flight and then goes before every newer batch. With idempotence the
//! broker refuses the batches sent after a failed one as out of order, and they are resent behind
//! it, so order within a partition survives retries. Without idempotence a retry can land after a
//! later batch that succeeded, as in Kafka with `max.in.flight.requests.per.connection > 1`.

mod accumulator;
mod sender;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafka_protocol::records::Compression;

pub use accumulator::{
    record_bytes, BatchLimits, TopicPartition, BATCH_RECORDS_MAX,
    IDEMPOTENT_PARTITION_IN_FLIGHT_MAX,
};

use super::apis::ProducerIdentity;
use super::error::{ClientError, Result};
use super::partitioner::partition_for_key;
use super::types::{ClusterMetadata, ProduceRecord};
use super::{Client, ClientConfig};
use accumulator::Accumulator;

/// Requests in flight on one connection; the broker reads at most 64 ahead
/// (`CONNECTION_REQUESTS_IN_FLIGHT_MAX`), more would only queue in its socket.
pub const PRODUCER_IN_FLIGHT_MAX: usize = 64;
/// Largest batch; the broker refuses batches over 16 MiB (`BATCH_BYTES_MAX`), and compression
/// can only shrink a batch.
pub const PRODUCER_BATCH_BYTES_MAX: usize = 8 << 20;
/// Largest request; a quarter of the frame limit leaves room for the request's own fields.
pub const PRODUCER_REQUEST_BYTES_MAX: usize = super::FRAME_BYTES_MAX / 4;
/// Largest buffer of records waiting to be sent and acknowledged.
pub const PRODUCER_BUFFER_BYTES_MAX: usize = 1 << 30;
/// Sends of one batch after the first.
pub const PRODUCER_RETRIES_MAX: u32 = 1_000;
const _: () = assert!(PRODUCER_BATCH_BYTES_MAX <= PRODUCER_REQUEST_BYTES_MAX);
const _: () = assert!(PRODUCER_REQUEST_BYTES_MAX <= PRODUCER_BUFFER_BYTES_MAX);

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Client id, timeouts; `request_timeout` is also the Produce timeout sent to the broker.
    pub client: ClientConfig,
    /// 0 (no answer), 1 (leader) or -1 (all in-sync replicas).
    pub acks: i16,
    pub compression: Compression,
    /// A batch is sent once it holds this many bytes (`batch.size`).
    pub batch_bytes: usize,
    /// ... or once its first record waited this long (`linger.ms`).
    pub linger: Duration,
    /// Produce requests in flight per connection (`max.in.flight.requests.per.connection`).
    pub in_flight_max: usize,
    /// Sends of a batch after the first, on retriable errors (`retries`).
    pub retries_max: u32,
    /// Wait before the first resend; doubles with each further one up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// Producer id and sequence numbers, so the broker stores every batch once (needs acks=-1).
    pub idempotence: bool,
    /// Bytes of records not yet acknowledged (`buffer.memory`); `send` blocks beyond it.
    pub buffer_bytes_max: usize,
    /// Bytes of one Produce request (`max.request.size`); also the largest record.
    pub request_bytes_max: usize,
    /// How long `send` may block on a full buffer or on a topic's metadata (`max.block.ms`).
    pub block_max: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            client: ClientConfig {
                client_id: "sluice-producer".to_owned(),
                ..ClientConfig::default()
            },
            acks: -1,
            compression: Compression::None,
            batch_bytes: 16 * 1024,
            linger: Duration::from_millis(5),
            in_flight_max: 5,
            retries_max: 10,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            idempotence: false,
            buffer_bytes_max: 32 << 20,
            request_bytes_max: 1 << 20,
            block_max: Duration::from_secs(60),
        }
    }
}

impl ProducerConfig {
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, message: &str| {
            if ok {
                Ok(())
            } else {
                Err(ClientError::Config(message.to_owned()))
            }
        };
        check(matches!(self.acks, -1..=1), "acks is -1, 0 or 1")?;
        check(
            (1..=PRODUCER_BATCH_BYTES_MAX).contains(&self.batch_bytes),
            "batch bytes out of range",
        )?;
        check(
            (1..=PRODUCER_IN_FLIGHT_MAX).contains(&self.in_flight_max),
            "in-flight requests out of range",
        )?;
        check(self.retries_max <= PRODUCER_RETRIES_MAX, "too many retries")?;
        check(
            (self.batch_bytes..=PRODUCER_REQUEST_BYTES_MAX).contains(&self.request_bytes_max),
            "request bytes must be at least the batch bytes and within the frame limit",
        )?;
        check(
            (self.request_bytes_max..=PRODUCER_BUFFER_BYTES_MAX).contains(&self.buffer_bytes_max),
            "buffer bytes must hold at least one request",
        )?;
        check(
            !self.idempotence || self.acks == -1,
            "an idempotent producer needs acks=all",
        )?;
        Ok(())
    }

    fn batch_limits(&self) -> BatchLimits {
        BatchLimits {
            batch_bytes: self.batch_bytes,
            linger: self.linger,
            partition_in_flight_max: if self.idempotence {
                self.in_flight_max.min(IDEMPOTENT_PARTITION_IN_FLIGHT_MAX)
            } else {
                self.in_flight_max
            },
            idempotence: self.idempotence,
        }
    }

    /// The wait before send number `attempts + 1` of a batch.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(16);
        (self.retry_backoff * (1u32 << doublings)).min(self.retry_backoff_max)
    }
}

/// The outcome of one batch, handed to the delivery callback.
#[derive(Debug)]
pub struct Delivery<'a> {
    pub topic: &'a str,
    pub partition: i32,
    /// The batch's base offset (the records follow it densely), or -1 with acks=0.
    pub result: std::result::Result<i64, &'a ClientError>,
    /// The tags given to `send`, one per record, in offset order.
    pub tags: &'a [u64],
}

/// Called once per batch, from the producer's threads, in each partition's offset order. It must
/// not call the producer (it may run while `send` waits for buffer space).
pub type DeliveryCallback = Arc<dyn Fn(&Delivery<'_>) + Send + Sync>;

/// Counters of a producer's work so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerStats {
    pub requests: u64,
    pub batches: u64,
    /// Batches sent again after an error.
    pub resends: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    batches: AtomicU64,
    resends: AtomicU64,
}

/// Where each partition's leader is, as the last Metadata response said.
#[derive(Debug, Default)]
struct Leaders {
    /// Leader node of each partition of each known topic; -1 when it has none.
    partitions: HashMap<String, Vec<i32>>,
    /// `host:port` of each node.
    brokers: HashMap<i32, String>,
}

impl Leaders {
    fn leader(&self, topic_partition: &TopicPartition) -> Option<i32> {
        let leaders = self.partitions.get(&topic_partition.topic)?;
        let leader = *leaders.get(usize::try_from(topic_partition.partition).ok()?)?;
        (leader >= 0 && self.brokers.contains_key(&leader)).then_some(leader)
    }
}

struct State {
    accumulator: Accumulator,
    leaders: Leaders,
    /// Set by errors that name a stale leader or an unknown partition.
    metadata_stale: bool,
    /// Callers inside `flush`; while any, every open batch is ready.
    flushing: usize,
    closing: bool,
    /// Requests in flight per connection id.
    connection_in_flight: HashMap<u64, usize>,
    /// Batches handed to the callback whose bytes are not released yet; `flush` waits for them.
    delivering: usize,
}

struct Shared {
    config: ProducerConfig,
    bootstrap: String,
    identity: Option<ProducerIdentity>,
    state: Mutex<State>,
    /// The sender waits on this for work.
    sender_wake: Condvar,
    /// `send` and `flush` wait on this for buffer space and deliveries.
    progress: Condvar,
    /// Metadata requests, from `send` (a new topic) and the sender (a refresh).
    metadata_client: Mutex<Option<Client>>,
    on_delivery: DeliveryCallback,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("no thread panics holding the producer state")
    }

    /// Metadata of `topics` from the bootstrap broker, reconnecting after a failure.
    fn fetch_metadata(&self, topics: &[&str]) -> Result<ClusterMetadata> {
        let mut client = self
            .metadata_client
            .lock()
            .expect("no thread panics holding the metadata client");
        if client.is_none() {
            *client = Some(Client::connect_with(
                &self.bootstrap,
                self.config.client.clone(),
            )?);
        }
        let result = client
            .as_mut()
            .expect("just connected")
            .metadata(Some(topics));
        if result.is_err() {
            *client = None;
        }
        result
    }

    /// Installs the leaders and partition counts of a Metadata response.
    fn apply_metadata(&self, state: &mut State, metadata: &ClusterMetadata) {
        for broker in &metadata.brokers {
            let address = super::types::BrokerAddress {
                node_id: broker.node_id,
                host: broker.host.clone(),
                port: broker.port,
            }
            .address();
            state.leaders.brokers.insert(broker.node_id, address);
        }
        for topic in &metadata.topics {
            if topic.error_code != 0 || topic.partitions.is_empty() {
                continue;
            }
            let leaders: Vec<i32> = (0..topic.partitions.len() as i32)
                .map(|index| {
                    topic
                        .partitions
                        .iter()
                        .find(|p| p.partition == index)
                        .map_or(-1, |p| p.leader_id)
                })
                .collect();
            state
                .accumulator
                .set_partition_count(&topic.name, leaders.len() as i32);
            state.leaders.partitions.insert(topic.name.clone(), leaders);
        }
    }
}

/// Pause between metadata requests for a topic that does not exist yet or has no leader.
const METADATA_RETRY_BACKOFF: Duration = Duration::from_millis(50);

/// A producer. See the module comment. `send`, `flush` and `choose_partition` may be called from
/// several threads.
pub struct Producer {
    shared: Arc<Shared>,
    sender: Option<JoinHandle<()>>,
}

impl Producer {
    /// Connects to `bootstrap` for metadata (and a producer id, with idempotence) and starts
    /// the sender thread. Connections to partition leaders open when first needed.
    pub fn connect(
        bootstrap: &str,
        config: ProducerConfig,
        on_delivery: DeliveryCallback,
    ) -> Result<Producer> {
        config.validate()?;
        let mut client = Client::connect_with(bootstrap, config.client.clone())?;
        let identity = if config.idempotence {
            Some(client.init_producer_id()?)
        } else {
            None
        };
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |since| since.as_nanos() as u64)
            ^ u64::from(std::process::id());
        let shared = Arc::new(Shared {
            bootstrap: bootstrap.to_owned(),
            identity,
            state: Mutex::new(State {
                accumulator: Accumulator::new(config.batch_limits(), seed),
                leaders: Leaders::default(),
                metadata_stale: false,
                flushing: 0,
                closing: false,
                connection_in_flight: HashMap::new(),
                delivering: 0,
            }),
            config,
            sender_wake: Condvar::new(),
            progress: Condvar::new(),
            metadata_client: Mutex::new(Some(client)),
            on_delivery,
            counters: Counters::default(),
        });
        let sender_shared = shared.clone();
        let sender = std::thread::Builder::new()
            .name("sluice-producer".to_owned())
            .spawn(move || sender::run(&sender_shared))
            .map_err(|source| ClientError::Io {
                address: bootstrap.to_owned(),
                source,
            })?;
        Ok(Producer {
            shared,
            sender: Some(sender),
        })
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.shared.config
    }

    /// The producer id and epoch, with idempotence.
    pub fn identity(&self) -> Option<ProducerIdentity> {
        self.shared.identity
    }

    pub fn stats(&self) -> ProducerStats {
        let counters = &self.shared.counters;
        ProducerStats {
            requests: counters.requests.load(Ordering::Relaxed),
            batches: counters.batches.load(Ordering::Relaxed),
            resends: counters.resends.load(Ordering::Relaxed),
        }
    }

    /// The partition count of `topic`, fetching its metadata if it is not known yet.
    pub fn partition_count(&self, topic: &str) -> Result<i32> {
        if let Some(count) = self.shared.lock().accumulator.partition_count(topic) {
            return Ok(count);
        }
        let deadline = Instant::now() + self.shared.config.block_max;
        loop {
            let metadata = self.shared.fetch_metadata(&[topic])?;
            let ready = metadata.topic(topic).is_some_and(|t| {
                t.error_code == 0
                    && !t.partitions.is_empty()
                    && t.partitions.iter().all(|p| p.leader_id >= 0)
            });
            if ready {
                let mut state = self.shared.lock();
                self.shared.apply_metadata(&mut state, &metadata);
                return Ok(state
                    .accumulator
                    .partition_count(topic)
                    .expect("just applied"));
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout(format!(
                    "no metadata with leaders for topic {topic}"
                )));
            }
            std::thread::sleep(METADATA_RETRY_BACKOFF);
        }
    }

    /// The partition `send` would pick for a record with `key` and no explicit partition: the
    /// Java client's `toPositive(murmur2(key)) % partitions`, or the sticky partition.
    pub fn choose_partition(&self, topic: &str, key: Option<&[u8]>) -> Result<i32> {
        let count = self.partition_count(topic)?;
        match key {
            Some(key) => Ok(partition_for_key(key, count)),
            None => Ok(self
                .shared
                .lock()
                .accumulator
                .sticky_partition(topic)
                .expect("topic known")),
        }
    }

    /// Queues `record` for `topic` (in `partition`, or one chosen as `choose_partition` does)
    /// and returns its partition. `tag` comes back in the record's delivery report. Blocks while
    /// the buffer is full, at most `block_max`.
    pub fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        record: ProduceRecord,
        tag: u64,
    ) -> Result<i32> {
        let record_bytes = record_bytes(&record);
        let config = &self.shared.config;
        if record_bytes > config.request_bytes_max {
            return Err(ClientError::RecordTooLarge {
                record_bytes,
                request_bytes_max: config.request_bytes_max,
            });
        }
        let count = self.partition_count(topic)?;
        let partition = match (partition, &record.key) {
            (Some(partition), _) => partition,
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => self.choose_partition(topic, None)?,
        };
        if !(0..count).contains(&partition) {
            return Err(ClientError::Config(format!(
                "partition {partition} of topic {topic} with {count} partitions"
            )));
        }
        let mut state = self.wait_for_space(record_bytes)?;
        let wake = state
            .accumulator
            .append(topic, partition, record, tag, Instant::now());
        drop(state);
        if wake {
            self.shared.sender_wake.notify_one();
        }
        Ok(partition)
    }

    fn wait_for_space(&self, record_bytes: usize) -> Result<MutexGuard<'_, State>> {
        let deadline = Instant::now() + self.shared.config.block_max;
        let mut state = self.shared.lock();
        loop {
            if state.closing {
                return Err(ClientError::Closed("send after close".to_owned()));
            }
            let buffered = state.accumulator.buffered_bytes();
            if buffered == 0 || buffered + record_bytes <= self.shared.config.buffer_bytes_max {
                return Ok(state);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ClientError::Timeout(format!(
                    "buffer of {} bytes stayed full",
                    self.shared.config.buffer_bytes_max
                )));
            }
            // Full buffers make the sender send what it has without lingering.
            self.shared.sender_wake.notify_one();
            state = self
                .shared
                .progress
                .wait_timeout(state, deadline - now)
                .expect("no thread panics holding the producer state")
                .0;
        }
    }

    /// Sends every queued record now and waits until each was delivered (acknowledged or failed
    /// for good). Records other threads send meanwhile are waited for too.
    pub fn flush(&self) {
        let mut state = self.shared.lock();
        state.flushing += 1;
        self.shared.sender_wake.notify_one();
        while state.accumulator.buffered_bytes() > 0 || state.delivering > 0 {
            state = self
                .shared
                .progress
                .wait(state)
                .expect("no thread panics holding the producer state");
        }
        state.flushing -= 1;
    }

    /// Flushes, then stops the threads and closes the connections.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(sender) = self.sender.take() else {
            return;
        };
        self.flush();
        self.shared.lock().closing = true;
        self.shared.sender_wake.notify_one();
        sender
            .join()
            .expect("the producer's sender thread does not panic");
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_checks() {
        assert!(ProducerConfig::default().validate().is_ok());
        let bad = [
            ProducerConfig {
                acks: 2,
                ..ProducerConfig::default()
            },
            ProducerConfig {
                idempotence: true,
                acks: 1,
                ..ProducerConfig::default()
            },
            ProducerConfig {
                in_flight_max: 0,
                ..ProducerConfig::default()
            },
            ProducerConfig {
                batch_bytes: 2 << 20,
                ..ProducerConfig::default()
            },
            ProducerConfig {
                buffer_bytes_max: 1000,
                ..ProducerConfig::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_maximum() {
        let config = ProducerConfig::default();
        assert_eq!(config.backoff(1), Duration::from_millis(100));
        assert_eq!(config.backoff(2), Duration::from_millis(200));
        assert_eq!(config.backoff(4), Duration::from_millis(800));
        assert_eq!(config.backoff(5), Duration::from_secs(1));
        assert_eq!(config.backoff(100), Duration::from_secs(1));
    }
}
