//! A consumer: fetches its partitions in offset order, checks every record against the
//! verifier and, in the e2e workload, times each record from its embedded send time.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use client::{Client, FetchPosition, FetchResult, TIMESTAMP_EARLIEST, TIMESTAMP_LATEST};
use hdrhistogram::Histogram;

use super::{client_config, Shared};
use crate::stats::{latency_histogram, record_latency};
use crate::value::ValueHeader;
use crate::verify::Verifier;

/// How long a fetch waits for data on the broker.
const FETCH_WAIT_MS: i32 = 100;
/// Bytes one fetch response may carry in all, and per partition; well under FRAME_BYTES_MAX.
const FETCH_BYTES_MAX: i32 = 32 << 20;
const FETCH_PARTITION_BYTES_MAX: i32 = 8 << 20;
const _: () = assert!(FETCH_BYTES_MAX as usize <= client::FRAME_BYTES_MAX / 2);
/// How long e2e consumers may take, once the producers are done, to read what they wrote.
const DRAIN_DURATION_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerMode {
    /// Read from the start to the end offsets seen when starting.
    Drain {
        deadline: Option<Duration>,
        records_max: Option<u64>,
    },
    /// Read from the end while producers run, then drain to the end offsets they left.
    EndToEnd,
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub id: u32,
    pub partitions: Vec<i32>,
    pub mode: ConsumerMode,
}

#[derive(Debug)]
pub struct ConsumerResult {
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    /// Per record: receive time minus embedded send time (e2e only).
    pub latency: Histogram<u64>,
    pub verifier: Verifier,
    /// Set when the drain did not reach the end offsets in time.
    pub drain_timed_out: bool,
}

struct Position {
    partition: i32,
    offset: i64,
    end: Option<i64>,
}

/// Connects and finds the start offsets; done before the producers start so that an e2e
/// consumer sees everything they write.
pub fn prepare(shared: &Shared, config: &ConsumerConfig) -> anyhow::Result<(Client, Vec<i64>)> {
    let mut client = Client::connect_with(&shared.bootstrap, client_config("consumer", config.id))
        .with_context(|| format!("consumer {} connecting to {}", config.id, shared.bootstrap))?;
    let timestamp = match config.mode {
        ConsumerMode::Drain { .. } => TIMESTAMP_EARLIEST,
        ConsumerMode::EndToEnd => TIMESTAMP_LATEST,
    };
    let mut offsets = Vec::with_capacity(config.partitions.len());
    for &partition in &config.partitions {
        offsets.push(client.list_offsets(&shared.topic, partition, timestamp)?);
    }
    Ok((client, offsets))
}

pub fn run(
    shared: &Shared,
    config: &ConsumerConfig,
    mut client: Client,
    start_offsets: Vec<i64>,
    start: Instant,
) -> anyhow::Result<ConsumerResult> {
    let mut positions: Vec<Position> = config
        .partitions
        .iter()
        .zip(start_offsets)
        .map(|(&partition, offset)| Position {
            partition,
            offset,
            end: None,
        })
        .collect();
    if let ConsumerMode::Drain { .. } = config.mode {
        set_end_offsets(&mut client, &shared.topic, &mut positions)?;
    }
    let mut result = ConsumerResult {
        records: 0,
        bytes: 0,
        elapsed: Duration::ZERO,
        latency: latency_histogram(),
        verifier: Verifier::new(match config.mode {
            // Reading what earlier runs wrote: check every run's streams.
            ConsumerMode::Drain { .. } => None,
            ConsumerMode::EndToEnd => Some(shared.run_id),
        }),
        drain_timed_out: false,
    };
    let mut drain_deadline = None;
    loop {
        if positions
            .iter()
            .all(|p| p.end.is_some_and(|end| p.offset >= end))
        {
            break;
        }
        match config.mode {
            ConsumerMode::Drain {
                deadline,
                records_max,
            } => {
                let consumed = shared.progress.consumed_records.load(Ordering::Relaxed);
                if deadline.is_some_and(|deadline| start.elapsed() >= deadline)
                    || records_max.is_some_and(|max| consumed >= max)
                {
                    break;
                }
            }
            ConsumerMode::EndToEnd => {
                if drain_deadline.is_none() && shared.producers_done.load(Ordering::Acquire) {
                    set_end_offsets(&mut client, &shared.topic, &mut positions)?;
                    drain_deadline = Some(Instant::now() + DRAIN_DURATION_MAX);
                }
                if drain_deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    result.drain_timed_out = true;
                    break;
                }
            }
        }
        fetch_once(shared, config, &mut client, &mut positions, &mut result)?;
    }
    result.elapsed = start.elapsed();
    Ok(result)
}

fn set_end_offsets(
    client: &mut Client,
    topic: &str,
    positions: &mut [Position],
) -> anyhow::Result<()> {
    for position in positions {
        position.end = Some(client.list_offsets(topic, position.partition, TIMESTAMP_LATEST)?);
    }
    Ok(())
}

fn fetch_once(
    shared: &Shared,
    config: &ConsumerConfig,
    client: &mut Client,
    positions: &mut [Position],
    result: &mut ConsumerResult,
) -> anyhow::Result<()> {
    let requested: Vec<FetchPosition<'_>> = positions
        .iter()
        .filter(|p| p.end.is_none_or(|end| p.offset < end))
        .map(|p| FetchPosition {
            topic: &shared.topic,
            partition: p.partition,
            offset: p.offset,
        })
        .collect();
    if requested.is_empty() {
        // Every partition reached its end offset; the caller's loop stops next.
        return Ok(());
    }
    let fetched = client
        .fetch_many(
            &requested,
            FETCH_WAIT_MS,
            FETCH_BYTES_MAX,
            FETCH_PARTITION_BYTES_MAX,
        )
        .with_context(|| format!("consumer {} fetching", config.id))?;
    assert_eq!(
        fetched.len(),
        requested.len(),
        "one fetch result per position"
    );
    for (asked, answer) in requested.iter().zip(fetched) {
        if let Some(error) = answer.error {
            bail!(
                "consumer {} fetching partition {}: {error:?}",
                config.id,
                asked.partition
            );
        }
        observe_records(shared, config, result, asked.partition, &answer);
        advance(positions, asked.partition, answer.next_offset);
    }
    Ok(())
}

/// Counts one partition's fetched records, checks them, and measures their latency in
/// end-to-end mode.
fn observe_records(
    shared: &Shared,
    config: &ConsumerConfig,
    result: &mut ConsumerResult,
    partition: i32,
    answer: &FetchResult,
) {
    let measure_latency = config.mode == ConsumerMode::EndToEnd;
    let received_ns = shared.clock.unix_ns_now();
    let mut bytes = 0;
    for record in &answer.records {
        let value = record.value.as_deref().unwrap_or_default();
        bytes += value.len() as u64;
        let header = ValueHeader::decode(value);
        if measure_latency {
            if let Some(header) = header.filter(|header| header.run_id == shared.run_id) {
                let latency_ns = received_ns.saturating_sub(header.send_timestamp_ns);
                record_latency(&mut result.latency, Duration::from_nanos(latency_ns), 1);
            }
        }
        result.verifier.observe(partition, header);
    }
    let records = answer.records.len() as u64;
    result.records += records;
    result.bytes += bytes;
    shared.progress.add_consumed(records, bytes);
}

/// Moves a partition's position to the offset after what was fetched.
fn advance(positions: &mut [Position], partition: i32, next_offset: i64) {
    let position = positions
        .iter_mut()
        .find(|p| p.partition == partition)
        .expect("fetched partitions are ours");
    assert!(
        next_offset >= position.offset,
        "fetch never moves backwards"
    );
    position.offset = next_offset;
}
