//! A producer on the batching client (`client::producer::Producer`): hands records over one
//! at a time and lets the client batch, compress and pipeline them. Each record's latency runs
//! from its send (in fixed-rate mode, its scheduled send) to the acknowledgement of its batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use client::producer::{Delivery, DeliveryCallback, Producer, ProducerConfig as ClientConfig};
use client::ProduceRecord;
use hdrhistogram::Histogram;

use super::producer_config::{ProducerConfig, ProducerResult, Quota, SizeDraw};
use super::{client_config, Shared};
use crate::args::KeyDistribution;
use crate::clock::Clock;
use crate::schedule::Schedule;
use crate::stats::{latency_histogram, record_latency};
use crate::value::ValueHeader;
use crate::verify::StreamKey;

/// Values are cut from buffers of this size, so building a record allocates rarely.
const VALUE_CHUNK_BYTES: usize = 1 << 20;
/// Bytes of one Produce request, as Kafka's `max.request.size` default; more when a batch is
/// bigger.
const REQUEST_BYTES_MAX: usize = 1 << 20;
/// Records between two updates of the shared progress counters.
const PROGRESS_RECORDS_PER_UPDATE: u64 = 64;

/// What the delivery callback gathers, on the producer's reader threads.
struct Acknowledged {
    latency: Histogram<u64>,
    /// Records acknowledged per partition.
    records: HashMap<i32, u64>,
    /// The first failed batch, if any.
    error: Option<String>,
}

/// Draws each record's key.
struct Keys {
    distribution: KeyDistribution,
    texts: Vec<Bytes>,
    state: u64,
    next: u64,
}

impl Keys {
    fn new(distribution: KeyDistribution, seed: u64) -> Keys {
        let count = match distribution {
            KeyDistribution::None => 0,
            KeyDistribution::Random(count) | KeyDistribution::Sequential(count) => count,
        };
        Keys {
            distribution,
            texts: (0..count)
                .map(|index| Bytes::from(format!("key-{index}")))
                .collect(),
            state: seed | 1,
            next: 0,
        }
    }

    fn draw(&mut self) -> Option<Bytes> {
        let index = match self.distribution {
            KeyDistribution::None => return None,
            KeyDistribution::Sequential(count) => {
                let index = self.next % count;
                self.next += 1;
                index
            }
            KeyDistribution::Random(count) => {
                self.state ^= self.state << 13;
                self.state ^= self.state >> 7;
                self.state ^= self.state << 17;
                self.state % count
            }
        };
        Some(self.texts[index as usize].clone())
    }
}

fn callback(clock: Clock, acknowledged: Arc<Mutex<Acknowledged>>) -> DeliveryCallback {
    Arc::new(move |delivery: &Delivery<'_>| {
        let now_ns = clock.unix_ns_now();
        let mut acknowledged = acknowledged.lock().expect("callback does not panic");
        match delivery.result {
            Ok(_) => {
                for &send_ns in delivery.tags {
                    let latency = Duration::from_nanos(now_ns.saturating_sub(send_ns));
                    record_latency(&mut acknowledged.latency, latency, 1);
                }
                *acknowledged.records.entry(delivery.partition).or_default() +=
                    delivery.tags.len() as u64;
            }
            Err(error) => {
                acknowledged
                    .error
                    .get_or_insert_with(|| format!("partition {}: {error}", delivery.partition));
            }
        }
    })
}

fn client_settings(config: &ProducerConfig) -> ClientConfig {
    let request_bytes_max = REQUEST_BYTES_MAX.max(config.batch_bytes);
    ClientConfig {
        client: client_config("producer", config.id),
        acks: config.acks.wire(),
        compression: config.compression.codec(),
        batch_bytes: config.batch_bytes,
        linger: config.linger,
        in_flight_max: config.max_in_flight,
        idempotence: config.idempotence,
        request_bytes_max,
        buffer_bytes_max: config.buffer_bytes.max(request_bytes_max),
        ..ClientConfig::default()
    }
}

/// Builds one producer's records: keys, value sizes, and per-partition sequence numbers in the
/// value headers. Values are cut from shared chunks, so building a record rarely allocates.
struct RecordSource {
    run_id: u32,
    producer_id: u32,
    keys: Keys,
    sizes: SizeDraw,
    sequences: HashMap<i32, u64>,
    chunk: BytesMut,
}

impl RecordSource {
    fn new(shared: &Shared, config: &ProducerConfig) -> RecordSource {
        let seed =
            0x9e37_79b9_7f4a_7c15 ^ (u64::from(shared.run_id) << 20) ^ u64::from(config.id + 1);
        RecordSource {
            run_id: shared.run_id,
            producer_id: config.id,
            keys: Keys::new(config.keys, seed.rotate_left(7)),
            sizes: SizeDraw::new(seed, config.record_size),
            sequences: HashMap::new(),
            chunk: BytesMut::new(),
        }
    }

    /// The next record, its partition (as the producer would choose it) and its value bytes.
    fn next(
        &mut self,
        producer: &Producer,
        topic: &str,
        send_ns: u64,
    ) -> anyhow::Result<(i32, ProduceRecord, usize)> {
        let key = self.keys.draw();
        let partition = producer
            .choose_partition(topic, key.as_deref())
            .context("choosing a partition")?;
        let sequence = self.sequences.entry(partition).or_default();
        let length = self.sizes.next();
        if self.chunk.len() < length {
            self.chunk = BytesMut::zeroed(VALUE_CHUNK_BYTES.max(length));
        }
        let mut value = self.chunk.split_to(length);
        ValueHeader {
            run_id: self.run_id,
            producer_id: self.producer_id,
            partition: partition as u32,
            sequence: *sequence,
            send_timestamp_ns: send_ns,
        }
        .encode(&mut value);
        *sequence += 1;
        let record = ProduceRecord {
            key,
            value: Some(value.freeze()),
            headers: Vec::new(),
            timestamp_ms: (send_ns / 1_000_000) as i64,
        };
        Ok((partition, record, length))
    }
}

pub fn run(
    shared: &Shared,
    config: &ProducerConfig,
    start: Instant,
) -> anyhow::Result<ProducerResult> {
    let acknowledged = Arc::new(Mutex::new(Acknowledged {
        latency: latency_histogram(),
        records: HashMap::new(),
        error: None,
    }));
    let producer = Producer::connect(
        &shared.bootstrap,
        client_settings(config),
        callback(shared.clock, acknowledged.clone()),
    )
    .with_context(|| format!("producer {} connecting to {}", config.id, shared.bootstrap))?;
    let schedule = config.schedule.map(|s| Schedule::new(s.records_per_sec, 1));
    let (records, bytes) = send_all(shared, config, &producer, schedule, start)?;
    producer.flush();
    let mut elapsed = start.elapsed();
    if let Some(schedule) = schedule {
        elapsed = elapsed.max(schedule.due_offset(records));
    }
    let stats = producer.stats();
    producer.close();
    let acknowledged = Arc::try_unwrap(acknowledged)
        .map_err(|_| anyhow::anyhow!("the producer's threads ended"))?
        .into_inner()
        .expect("callback does not panic");
    if let Some(error) = acknowledged.error {
        bail!("producer {}: a batch failed: {error}", config.id);
    }
    Ok(ProducerResult {
        records,
        bytes,
        requests: stats.requests,
        batches: stats.batches,
        resends: stats.resends,
        elapsed,
        latency: acknowledged.latency,
        produced: streams(shared, config, acknowledged.records),
    })
}

/// Hands records to the producer until the quota is reached, each at its due time; returns the
/// records and value bytes sent.
fn send_all(
    shared: &Shared,
    config: &ProducerConfig,
    producer: &Producer,
    schedule: Option<Schedule>,
    start: Instant,
) -> anyhow::Result<(u64, u64)> {
    let mut source = RecordSource::new(shared, config);
    let (mut records, mut bytes, mut unreported) = (0u64, 0u64, (0u64, 0u64));
    while let Some(due) = next_due(config.quota, schedule, records, start) {
        let send_ns = shared.clock.unix_ns_at(due);
        let (partition, record, length) = source.next(producer, &shared.topic, send_ns)?;
        producer
            .send(&shared.topic, Some(partition), record, send_ns)
            .with_context(|| format!("producer {} sending", config.id))?;
        records += 1;
        bytes += length as u64;
        unreported = (unreported.0 + 1, unreported.1 + length as u64);
        if unreported.0 == PROGRESS_RECORDS_PER_UPDATE {
            shared.progress.add_produced(unreported.0, unreported.1);
            unreported = (0, 0);
        }
    }
    shared.progress.add_produced(unreported.0, unreported.1);
    Ok((records, bytes))
}

/// The acknowledged records per partition, keyed as the verifier counts them.
fn streams(
    shared: &Shared,
    config: &ProducerConfig,
    acknowledged: HashMap<i32, u64>,
) -> HashMap<StreamKey, u64> {
    acknowledged
        .into_iter()
        .map(|(partition, count)| {
            let key = StreamKey {
                run_id: shared.run_id,
                producer_id: config.id,
                partition: partition as u32,
            };
            (key, count)
        })
        .collect()
}

/// When the next record is due (now, without a schedule), or `None` when the producer is done.
/// A late producer sends at once; its records keep their due times.
fn next_due(
    quota: Quota,
    schedule: Option<Schedule>,
    sent: u64,
    start: Instant,
) -> Option<Instant> {
    let due = match schedule {
        Some(schedule) => {
            let offset = schedule.due_offset(sent);
            if let Quota::Until(duration) = quota {
                if offset >= duration {
                    return None;
                }
            }
            std::thread::sleep(schedule.wait(sent, start.elapsed()));
            start + offset
        }
        None => {
            let now = Instant::now();
            if let Quota::Until(duration) = quota {
                if now.duration_since(start) >= duration {
                    return None;
                }
            }
            now
        }
    };
    match quota {
        Quota::Records(total) if sent >= total => None,
        _ => Some(due),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_their_distribution() {
        let mut none = Keys::new(KeyDistribution::None, 1);
        assert_eq!(none.draw(), None);
        let mut sequential = Keys::new(KeyDistribution::Sequential(3), 1);
        let drawn: Vec<_> = (0..5).map(|_| sequential.draw().unwrap()).collect();
        assert_eq!(drawn, ["key-0", "key-1", "key-2", "key-0", "key-1"]);
        let mut random = Keys::new(KeyDistribution::Random(4), 99);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            seen.insert(random.draw().unwrap());
        }
        assert_eq!(seen.len(), 4, "all four keys come up");
    }

    #[test]
    fn records_are_due_on_schedule_and_stop_at_the_quota() {
        let start = Instant::now() - Duration::from_secs(10);
        let schedule = Some(Schedule::new(1_000, 1));
        let until = Quota::Until(Duration::from_secs(1));
        assert_eq!(
            next_due(until, schedule, 5, start),
            Some(start + Duration::from_millis(5))
        );
        assert_eq!(next_due(until, schedule, 1_000, start), None);
        assert_eq!(next_due(Quota::Records(3), None, 3, start), None);
        assert!(next_due(Quota::Records(3), None, 2, start).is_some());
        assert_eq!(next_due(until, None, 0, start), None, "time is up");
    }
}
