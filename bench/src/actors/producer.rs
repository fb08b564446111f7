//! A producer. With `--client simple` (here) it sends batches of `batch_records` records to the
//! topic's partitions in turn, one request in flight, and times each request from its
//! (scheduled) send to its acknowledgement. The timed span includes encoding the RecordBatch (CRC
//! included), as it does in any client. With `--client batching` the work is in `batching`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{BufMut, BytesMut};
use client::{Client, IdempotentProducer, ProduceRecord};

use super::producer_config::{ProducerConfig, ProducerResult, Quota, SizeDraw};
use super::{client_config, Shared};
use crate::args::{Acks, ClientKind};
use crate::stats::{latency_histogram, record_latency};
use crate::value::{ValueHeader, VALUE_HEADER_BYTES};
use crate::verify::StreamKey;

enum Sender {
    Plain(Client),
    Idempotent(IdempotentProducer),
}

impl Sender {
    fn send(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
        acks: Acks,
    ) -> anyhow::Result<()> {
        match self {
            Sender::Plain(client) => {
                client.produce(topic, partition, records, acks.wire())?;
            }
            Sender::Idempotent(producer) => {
                producer.produce(topic, partition, records, acks.wire())?;
            }
        }
        Ok(())
    }
}

pub fn run(
    shared: &Shared,
    config: &ProducerConfig,
    start: Instant,
) -> anyhow::Result<ProducerResult> {
    match config.client {
        ClientKind::Batching => super::batching::run(shared, config, start),
        ClientKind::Simple => run_simple(shared, config, start),
    }
}

fn run_simple(
    shared: &Shared,
    config: &ProducerConfig,
    start: Instant,
) -> anyhow::Result<ProducerResult> {
    let client = Client::connect_with(&shared.bootstrap, client_config("producer", config.id))
        .with_context(|| format!("producer {} connecting to {}", config.id, shared.bootstrap))?;
    let mut sender = if config.idempotence {
        Sender::Idempotent(IdempotentProducer::new(client)?)
    } else {
        Sender::Plain(client)
    };
    let mut sizes = SizeDraw::new(
        0x9e37_79b9_7f4a_7c15 ^ (u64::from(shared.run_id) << 20) ^ u64::from(config.id + 1),
        config.record_size,
    );
    let mut result = ProducerResult {
        records: 0,
        bytes: 0,
        requests: 0,
        batches: 0,
        resends: 0,
        elapsed: Duration::ZERO,
        latency: latency_histogram(),
        produced: HashMap::new(),
    };
    let mut records = Vec::with_capacity(config.batch_records as usize);
    let mut batch_index = 0u64;
    while let Some(count) = batch_count(config, batch_index, result.records, start.elapsed()) {
        let due = match config.schedule {
            Some(schedule) => {
                std::thread::sleep(schedule.wait(batch_index, start.elapsed()));
                start + schedule.due_offset(batch_index)
            }
            None => Instant::now(),
        };
        let partition = (u64::from(config.id) + batch_index) % u64::from(config.partitions);
        let key = StreamKey {
            run_id: shared.run_id,
            producer_id: config.id,
            partition: partition as u32,
        };
        let sequence_first = result.produced.get(&key).copied().unwrap_or(0);
        let header = ValueHeader {
            run_id: shared.run_id,
            producer_id: config.id,
            partition: key.partition,
            sequence: sequence_first,
            send_timestamp_ns: shared.clock.unix_ns_at(due),
        };
        let bytes = build_records(&mut records, header, count, &mut sizes);
        sender
            .send(&shared.topic, partition as i32, &records, config.acks)
            .with_context(|| format!("producer {} sending to partition {partition}", config.id))?;
        record_latency(&mut result.latency, due.elapsed(), 1);
        *result.produced.entry(key).or_default() += count;
        result.records += count;
        result.bytes += bytes;
        result.requests += 1;
        result.batches += 1;
        shared.progress.add_produced(count, bytes);
        batch_index += 1;
    }
    result.elapsed = start.elapsed();
    if let Some(schedule) = config.schedule {
        // At a fixed rate the run spans the schedule, up to when the next batch would be due.
        result.elapsed = result.elapsed.max(schedule.due_offset(batch_index));
    }
    Ok(result)
}

/// How many records the next batch carries, `None` when the producer is done.
fn batch_count(
    config: &ProducerConfig,
    batch_index: u64,
    sent: u64,
    elapsed: Duration,
) -> Option<u64> {
    match config.quota {
        Quota::Records(total) => {
            let left = total - sent;
            (left > 0).then(|| left.min(config.batch_records))
        }
        Quota::Until(duration) => {
            // At a fixed rate, batches due after the end are not sent even if the producer is late.
            let now = match config.schedule {
                Some(schedule) => schedule.due_offset(batch_index),
                None => elapsed,
            };
            (now < duration).then_some(config.batch_records)
        }
    }
}

/// Fills `records` with `count` values of drawn sizes, all cut from one buffer; returns the
/// value bytes.
fn build_records(
    records: &mut Vec<ProduceRecord>,
    header: ValueHeader,
    count: u64,
    sizes: &mut SizeDraw,
) -> u64 {
    records.clear();
    let lengths: Vec<usize> = (0..count).map(|_| sizes.next()).collect();
    let total: usize = lengths.iter().sum();
    let mut buffer = BytesMut::with_capacity(total);
    buffer.put_bytes(0, total);
    let timestamp_ms = (header.send_timestamp_ns / 1_000_000) as i64;
    for (index, length) in lengths.into_iter().enumerate() {
        assert!(length >= VALUE_HEADER_BYTES);
        let mut value = buffer.split_to(length);
        ValueHeader {
            sequence: header.sequence + index as u64,
            ..header
        }
        .encode(&mut value);
        records.push(ProduceRecord {
            key: None,
            value: Some(value.freeze()),
            headers: Vec::new(),
            timestamp_ms,
        });
    }
    total as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::RecordSize;

    #[test]
    fn built_records_carry_consecutive_sequences_and_sizes_in_range() {
        let size = RecordSize {
            bytes_min: 40,
            bytes_max: 90,
        };
        let mut sizes = SizeDraw::new(12345, size);
        let header = ValueHeader {
            run_id: 9,
            producer_id: 2,
            partition: 1,
            sequence: 100,
            send_timestamp_ns: 5_000_000,
        };
        let mut records = Vec::new();
        let bytes = build_records(&mut records, header, 50, &mut sizes);
        assert_eq!(records.len(), 50);
        let mut total = 0;
        for (index, record) in records.iter().enumerate() {
            let value = record.value.as_ref().unwrap();
            assert!((40..=90).contains(&value.len()));
            total += value.len() as u64;
            let decoded = ValueHeader::decode(value).unwrap();
            assert_eq!(decoded.sequence, 100 + index as u64);
            assert_eq!(decoded.producer_id, 2);
            assert_eq!(record.timestamp_ms, 5);
        }
        assert_eq!(bytes, total);
    }
}
