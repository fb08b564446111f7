//! The sender thread and the reader thread of each connection.
//!
//! The sender owns the write half of every connection. Under the state lock it plans one round:
//! refresh metadata, open missing connections, or take ready batches for each leader whose
//! connection has room for another request. Without the lock it encodes the batches, hands the
//! request's bookkeeping to the connection's reader (a bounded channel, `in_flight_max` deep) and
//! writes the request. The reader reads the answers in order and settles each batch: delivered,
//! failed, or queued to be resent. A connection that fails is marked broken: the reader settles
//! the rest of its requests as I/O failures (so they are resent), and the sender drops it and
//! opens a new one when next needed.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ProduceResponse};
use kafka_protocol::ResponseError;

use super::accumulator::{DrainedBatch, TopicPartition};
use super::{Delivery, Shared, State};
use crate::apis::{parse_produce_many, produce_request_many, PartitionBatch};
use crate::codec::{
    decode_response_frame, encode_request_frame, frame_body_bytes, FRAME_PREFIX_BYTES,
};
use crate::error::{ClientError, Result};
use crate::idempotent::is_resendable;
use crate::records::{encode_record_batch_as, BatchProducer};
use crate::Client;

/// Longest the sender sleeps without a reason to wake; it wakes earlier for every new batch,
/// answer, deadline or broken connection.
const SENDER_IDLE_WAIT_MAX: Duration = Duration::from_millis(200);

/// One request in flight: what the reader needs to settle its answer.
struct InFlight {
    correlation_id: i32,
    version: i16,
    batches: Vec<DrainedBatch>,
}

struct Connection {
    id: u64,
    address: String,
    stream: TcpStream,
    produce_version: i16,
    correlation_id_next: i32,
    entries: SyncSender<InFlight>,
    broken: Arc<AtomicBool>,
}

/// What one planning round decided.
enum Plan {
    Exit,
    RefreshMetadata(Vec<String>),
    Work {
        connect: Vec<(i32, String)>,
        requests: Vec<(i32, Vec<DrainedBatch>)>,
    },
}

struct Sender {
    connections: HashMap<i32, Connection>,
    readers: Vec<JoinHandle<()>>,
    connection_id_next: u64,
    /// Consecutive failed connects per node, and when to try again.
    connect_failures: HashMap<i32, (u32, Instant)>,
    metadata_not_before: Instant,
}

pub(super) fn run(shared: &Arc<Shared>) {
    let mut sender = Sender {
        connections: HashMap::new(),
        readers: Vec::new(),
        connection_id_next: 1,
        connect_failures: HashMap::new(),
        metadata_not_before: Instant::now(),
    };
    loop {
        match sender.plan(shared) {
            Plan::Exit => break,
            Plan::RefreshMetadata(topics) => sender.refresh_metadata(shared, &topics),
            Plan::Work { connect, requests } => {
                for (node, address) in connect {
                    sender.connect(shared, node, address);
                }
                for (node, batches) in requests {
                    sender.send_request(shared, node, batches);
                }
            }
        }
    }
    // Dropping the connections ends their readers once they settled what is in flight.
    sender.connections.clear();
    for reader in sender.readers {
        reader
            .join()
            .expect("a producer reader thread does not panic");
    }
}

impl Sender {
    fn plan(&mut self, shared: &Shared) -> Plan {
        let mut state = shared.lock();
        loop {
            self.retire_broken();
            if state.closing && state.accumulator.buffered_bytes() == 0 && state.delivering == 0 {
                return Plan::Exit;
            }
            let now = Instant::now();
            if state.metadata_stale && now >= self.metadata_not_before {
                let topics = state.leaders.partitions.keys().cloned().collect();
                return Plan::RefreshMetadata(topics);
            }
            let (connect, requests) = self.take_work(shared, &mut state, now);
            if !connect.is_empty() || !requests.is_empty() {
                return Plan::Work { connect, requests };
            }
            let wake = [
                state.accumulator.next_deadline(now),
                state.metadata_stale.then_some(self.metadata_not_before),
            ]
            .into_iter()
            .flatten()
            .chain(self.connect_failures.values().map(|(_, at)| *at))
            .min();
            let wait = wake.map_or(SENDER_IDLE_WAIT_MAX, |at| {
                at.saturating_duration_since(now)
                    .clamp(Duration::from_micros(50), SENDER_IDLE_WAIT_MAX)
            });
            state = shared
                .sender_wake
                .wait_timeout(state, wait)
                .expect("no thread panics holding the producer state")
                .0;
        }
    }

    fn retire_broken(&mut self) {
        self.connections
            .retain(|_, connection| !connection.broken.load(Ordering::Acquire));
    }

    /// Connections to open and requests to send now, grouped by leader.
    #[allow(clippy::type_complexity)]
    fn take_work(
        &mut self,
        shared: &Shared,
        state: &mut MutexGuard<'_, State>,
        now: Instant,
    ) -> (Vec<(i32, String)>, Vec<(i32, Vec<DrainedBatch>)>) {
        let config = &shared.config;
        let mut by_leader: BTreeMap<i32, Vec<TopicPartition>> = BTreeMap::new();
        for topic_partition in state.accumulator.waiting_partitions() {
            match state.leaders.leader(&topic_partition) {
                Some(node) => by_leader.entry(node).or_default().push(topic_partition),
                None => state.metadata_stale = true,
            }
        }
        // A nearly full buffer or a flush sends batches without waiting for their linger.
        let flushing = state.flushing > 0
            || state.accumulator.buffered_bytes() + config.request_bytes_max
                > config.buffer_bytes_max;
        let mut connect = Vec::new();
        let mut requests = Vec::new();
        for (node, partitions) in by_leader {
            let Some(connection) = self.connections.get(&node) else {
                let due = self
                    .connect_failures
                    .get(&node)
                    .is_none_or(|(_, at)| now >= *at);
                if due {
                    connect.push((node, state.leaders.brokers[&node].clone()));
                }
                continue;
            };
            loop {
                let in_flight = state
                    .connection_in_flight
                    .get(&connection.id)
                    .copied()
                    .unwrap_or(0);
                if in_flight >= config.in_flight_max {
                    break;
                }
                let batches = state.accumulator.drain(
                    &partitions,
                    connection.id,
                    config.request_bytes_max,
                    now,
                    flushing,
                );
                if batches.is_empty() {
                    break;
                }
                if config.acks != 0 {
                    *state.connection_in_flight.entry(connection.id).or_default() += 1;
                }
                requests.push((node, batches));
            }
        }
        (connect, requests)
    }

    fn refresh_metadata(&mut self, shared: &Shared, topics: &[String]) {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let result = shared.fetch_metadata(&names);
        let mut state = shared.lock();
        if let Ok(metadata) = result {
            shared.apply_metadata(&mut state, &metadata);
            state.metadata_stale = false;
        }
        // Leaders that are still unknown are asked for again after a backoff, not in a loop.
        self.metadata_not_before = Instant::now() + shared.config.retry_backoff;
    }

    fn connect(&mut self, shared: &Arc<Shared>, node: i32, address: String) {
        match open_connection(shared, &address, self.connection_id_next) {
            Ok((connection, reader)) => {
                self.connection_id_next += 1;
                self.connect_failures.remove(&node);
                self.connections.insert(node, connection);
                self.readers.push(reader);
            }
            Err(error) => {
                let failures = self.connect_failures.get(&node).map_or(0, |(n, _)| *n) + 1;
                let retry_at = Instant::now() + shared.config.backoff(failures);
                self.connect_failures.insert(node, (failures, retry_at));
                if failures > shared.config.retries_max {
                    self.connect_failures.remove(&node);
                    fail_waiting_of_node(shared, node, &error);
                }
            }
        }
    }

    fn send_request(&mut self, shared: &Shared, node: i32, mut batches: Vec<DrainedBatch>) {
        let config = &shared.config;
        let mut failed = Vec::new();
        batches.retain_mut(|batch| match encode(shared, batch) {
            Ok(()) => true,
            Err(error) => {
                failed.push((std::mem::replace(batch, empty_batch(batch)), error));
                false
            }
        });
        let connection = self
            .connections
            .get_mut(&node)
            .expect("planned on a live connection");
        if !failed.is_empty() {
            let in_flight_done = batches.is_empty() && config.acks != 0;
            settle_failed(shared, failed, in_flight_done.then_some(connection.id));
        }
        if batches.is_empty() {
            return;
        }
        for batch in &mut batches {
            if batch.attempts > 0 {
                shared.counters.resends.fetch_add(1, Ordering::Relaxed);
            }
            batch.attempts += 1;
        }
        shared.counters.requests.fetch_add(1, Ordering::Relaxed);
        shared
            .counters
            .batches
            .fetch_add(batches.len() as u64, Ordering::Relaxed);
        let frame = match request_frame(shared, connection, &batches) {
            Ok(frame) => frame,
            Err(error) => {
                let failed = batches
                    .into_iter()
                    .map(|b| (b, error.duplicate()))
                    .collect();
                let in_flight_done = (config.acks != 0).then_some(connection.id);
                return settle_failed(shared, failed, in_flight_done);
            }
        };
        if config.acks == 0 {
            connection.write_unanswered(shared, &frame, batches);
        } else {
            connection.hand_over(shared, &frame, batches);
        }
    }
}

impl Connection {
    /// acks=0: nothing will answer, so the batches are settled once the request is written.
    fn write_unanswered(&mut self, shared: &Shared, frame: &[u8], batches: Vec<DrainedBatch>) {
        let written = self.stream.write_all(frame);
        let results = batches
            .iter()
            .map(|_| match &written {
                Ok(()) => Ok(-1),
                Err(source) => Err(io_error(&self.address, source)),
            })
            .collect();
        if written.is_err() {
            self.mark_broken(shared);
        }
        settle(shared, None, batches, results);
    }

    /// Gives the request's bookkeeping to the reader, then writes it; the reader settles it.
    fn hand_over(&mut self, shared: &Shared, frame: &[u8], batches: Vec<DrainedBatch>) {
        let entry = InFlight {
            correlation_id: self.correlation_id_next - 1,
            version: self.produce_version,
            batches,
        };
        match self.entries.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                unreachable!("in-flight requests are counted before they are planned")
            }
            Err(TrySendError::Disconnected(entry)) => {
                // The reader is gone; settle here as a broken connection.
                self.mark_broken(shared);
                let error = ClientError::Io {
                    address: self.address.clone(),
                    source: std::io::Error::from(std::io::ErrorKind::BrokenPipe),
                };
                let results = entry
                    .batches
                    .iter()
                    .map(|_| Err(error.duplicate()))
                    .collect();
                return settle(shared, Some(self.id), entry.batches, results);
            }
        }
        if self.stream.write_all(frame).is_err() {
            // The reader settles the request as an I/O failure.
            self.mark_broken(shared);
        }
    }

    fn mark_broken(&self, shared: &Shared) {
        self.broken.store(true, Ordering::Release);
        let _ = self.stream.shutdown(Shutdown::Both);
        shared.sender_wake.notify_one();
    }
}

fn empty_batch(batch: &DrainedBatch) -> DrainedBatch {
    DrainedBatch {
        topic_partition: batch.topic_partition.clone(),
        records: Vec::new(),
        encoded: None,
        tags: Vec::new(),
        bytes: 0,
        base_sequence: -1,
        attempts: 0,
    }
}

/// Encodes a batch once; a resend keeps its bytes.
fn encode(shared: &Shared, batch: &mut DrainedBatch) -> Result<()> {
    if batch.encoded.is_some() {
        return Ok(());
    }
    let producer = match shared.identity {
        Some(identity) => BatchProducer {
            producer_id: identity.producer_id,
            producer_epoch: identity.producer_epoch,
            base_sequence: batch.base_sequence,
        },
        None => BatchProducer::NONE,
    };
    let bytes = encode_record_batch_as(&batch.records, shared.config.compression, producer)?;
    batch.encoded = Some(bytes);
    batch.records = Vec::new();
    Ok(())
}

fn request_frame(
    shared: &Shared,
    connection: &mut Connection,
    batches: &[DrainedBatch],
) -> Result<bytes::Bytes> {
    let entries: Vec<PartitionBatch<'_>> = batches
        .iter()
        .map(|batch| PartitionBatch {
            topic: &batch.topic_partition.topic,
            partition: batch.topic_partition.partition,
            batch: batch.encoded.clone().expect("encoded before the request"),
        })
        .collect();
    let config = &shared.config;
    let timeout_ms = i32::try_from(config.client.request_timeout.as_millis()).unwrap_or(i32::MAX);
    let request = produce_request_many(&entries, config.acks, timeout_ms);
    let correlation_id = connection.correlation_id_next;
    connection.correlation_id_next = correlation_id.wrapping_add(1);
    encode_request_frame(
        ApiKey::Produce,
        connection.produce_version,
        correlation_id,
        &config.client.client_id,
        &request,
    )
}

fn open_connection(
    shared: &Arc<Shared>,
    address: &str,
    id: u64,
) -> Result<(Connection, JoinHandle<()>)> {
    let client = Client::connect_with(address, shared.config.client.clone())?;
    let (stream, versions, _) = client.into_parts();
    let produce_version = versions.require(ApiKey::Produce)?;
    let io = |source| ClientError::Io {
        address: address.to_owned(),
        source,
    };
    let read_stream = stream.try_clone().map_err(io)?;
    let (entries, entries_receiver) = sync_channel(shared.config.in_flight_max);
    let broken = Arc::new(AtomicBool::new(false));
    let reader = {
        let (shared, broken, address) = (shared.clone(), broken.clone(), address.to_owned());
        std::thread::Builder::new()
            .name("sluice-producer-reader".to_owned())
            .spawn(move || {
                read_answers(
                    &shared,
                    id,
                    &address,
                    read_stream,
                    entries_receiver,
                    &broken,
                )
            })
            .map_err(io)?
    };
    let connection = Connection {
        id,
        address: address.to_owned(),
        stream,
        produce_version,
        // ApiVersions used the first ids of this connection.
        correlation_id_next: 1 << 16,
        entries,
        broken,
    };
    Ok((connection, reader))
}

/// The reader thread of one connection: settles each request in flight, in order, until the
/// sender drops the connection.
fn read_answers(
    shared: &Shared,
    connection_id: u64,
    address: &str,
    mut stream: TcpStream,
    entries: Receiver<InFlight>,
    broken: &AtomicBool,
) {
    while let Ok(entry) = entries.recv() {
        let response = if broken.load(Ordering::Acquire) {
            Err(ClientError::Io {
                address: address.to_owned(),
                source: std::io::Error::from(std::io::ErrorKind::BrokenPipe),
            })
        } else {
            read_response(&mut stream, address, &entry)
        };
        if response.is_err() {
            broken.store(true, Ordering::Release);
            let _ = stream.shutdown(Shutdown::Both);
            shared.sender_wake.notify_one();
        }
        let results = match &response {
            Ok(response) => {
                let entries: Vec<PartitionBatch<'_>> = entry
                    .batches
                    .iter()
                    .map(|batch| PartitionBatch {
                        topic: &batch.topic_partition.topic,
                        partition: batch.topic_partition.partition,
                        batch: bytes::Bytes::new(),
                    })
                    .collect();
                parse_produce_many(response, &entries)
            }
            Err(error) => entry
                .batches
                .iter()
                .map(|_| Err(error.duplicate()))
                .collect(),
        };
        settle(shared, Some(connection_id), entry.batches, results);
    }
}

/// Reads and decodes the answer to `entry`. Any failure means the connection can no longer be
/// trusted, so it is reported as an I/O error: the request's batches are resent elsewhere.
fn read_response(
    stream: &mut TcpStream,
    address: &str,
    entry: &InFlight,
) -> Result<ProduceResponse> {
    let io = |source| ClientError::Io {
        address: address.to_owned(),
        source,
    };
    let mut prefix = [0u8; FRAME_PREFIX_BYTES];
    stream.read_exact(&mut prefix).map_err(io)?;
    let body_bytes = frame_body_bytes(prefix)?;
    let mut body = BytesMut::zeroed(body_bytes);
    stream.read_exact(&mut body).map_err(io)?;
    decode_response_frame(
        ApiKey::Produce,
        entry.version,
        entry.correlation_id,
        body.freeze(),
    )
    .map_err(|error| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            error.to_string(),
        ))
    })
}

fn io_error(address: &str, source: &std::io::Error) -> ClientError {
    ClientError::Io {
        address: address.to_owned(),
        source: std::io::Error::new(source.kind(), source.to_string()),
    }
}

/// Whether a failed batch goes back to its queue. With idempotence, OUT_OF_ORDER_SEQUENCE_NUMBER
/// for a batch sent after one that now waits to be resent is that batch's consequence, not a
/// loss: it is resent behind it.
fn should_resend(
    shared: &Shared,
    state: &State,
    batch: &DrainedBatch,
    error: &ClientError,
) -> bool {
    if batch.attempts > shared.config.retries_max {
        return false;
    }
    if is_resendable(error) {
        return true;
    }
    shared.config.idempotence
        && error.kafka_error() == Some(ResponseError::OutOfOrderSequenceNumber)
        && state.accumulator.has_resend(&batch.topic_partition)
}

fn names_stale_metadata(error: &ClientError) -> bool {
    matches!(
        error.kafka_error(),
        Some(
            ResponseError::NotLeaderOrFollower
                | ResponseError::UnknownTopicOrPartition
                | ResponseError::LeaderNotAvailable
        )
    )
}

/// Settles the batches of one request: resends go back to their queues, the rest are reported
/// to the callback and then leave the buffer. `connection_id`: the request counted as in flight
/// on that connection.
fn settle(
    shared: &Shared,
    connection_id: Option<u64>,
    batches: Vec<DrainedBatch>,
    results: Vec<Result<i64>>,
) {
    assert_eq!(batches.len(), results.len());
    let mut delivered = Vec::with_capacity(batches.len());
    {
        let mut state = shared.lock();
        if let Some(id) = connection_id {
            let in_flight = state
                .connection_in_flight
                .get_mut(&id)
                .expect("a request in flight was counted");
            *in_flight -= 1;
        }
        let now = Instant::now();
        for (batch, result) in batches.into_iter().zip(results) {
            match result {
                Err(error) if should_resend(shared, &state, &batch, &error) => {
                    state.metadata_stale |= names_stale_metadata(&error);
                    let backoff = shared.config.backoff(batch.attempts);
                    state.accumulator.requeue(batch, backoff, now);
                }
                result => delivered.push((batch, result)),
            }
        }
        state.delivering += delivered.len();
    }
    report(shared, &delivered);
    {
        let mut state = shared.lock();
        for (batch, _) in &delivered {
            state.accumulator.complete(batch);
        }
        state.delivering -= delivered.len();
    }
    shared.progress.notify_all();
    shared.sender_wake.notify_one();
}

fn report(shared: &Shared, delivered: &[(DrainedBatch, Result<i64>)]) {
    for (batch, result) in delivered {
        (shared.on_delivery)(&Delivery {
            topic: &batch.topic_partition.topic,
            partition: batch.topic_partition.partition,
            result: result.as_ref().copied(),
            tags: &batch.tags,
        });
    }
}

/// Batches that failed before they were sent (encoding, framing): reported, not resent.
fn settle_failed(
    shared: &Shared,
    failed: Vec<(DrainedBatch, ClientError)>,
    connection_id: Option<u64>,
) {
    let (batches, errors): (Vec<_>, Vec<_>) = failed.into_iter().unzip();
    let results = errors.into_iter().map(Err).collect();
    // Not resendable: retrying cannot fix an encoding error. Count them past their attempts.
    let batches = batches
        .into_iter()
        .map(|mut batch| {
            batch.attempts = u32::MAX;
            batch
        })
        .collect();
    settle(shared, connection_id, batches, results);
}

/// A node that cannot be reached after every retry: its waiting batches fail.
fn fail_waiting_of_node(shared: &Shared, node: i32, error: &ClientError) {
    let taken = {
        let mut state = shared.lock();
        let partitions: Vec<TopicPartition> = state
            .accumulator
            .waiting_partitions()
            .into_iter()
            .filter(|tp| state.leaders.leader(tp) == Some(node))
            .collect();
        let taken = state.accumulator.take_waiting(&partitions);
        state.delivering += 1;
        taken
    };
    let delivered: Vec<_> = taken
        .into_iter()
        .map(|batch| (batch, Err(error.duplicate())))
        .collect();
    report(shared, &delivered);
    shared.lock().delivering -= 1;
    shared.progress.notify_all();
}
