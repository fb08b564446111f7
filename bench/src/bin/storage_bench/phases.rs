//! The bench's phases, run one after another on one glommio executor.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use hdrhistogram::Histogram;
use storage::{LogConfig, PartitionLog, StorageContext, ValidatedBatches};

/// Latencies above this (µs) are clamped: a minute per operation means the disk is gone anyway.
const LATENCY_US_MAX: u64 = 60_000_000;

pub struct PhaseConfig {
    pub data_dir: PathBuf,
    pub batch: ValidatedBatches,
    pub appenders: usize,
    /// `PartitionLog::set_append_writes_in_flight` of every log.
    pub append_writes_in_flight: usize,
    pub phase_duration: Duration,
    pub phase_bytes_max: u64,
    pub tail_window_bytes: u64,
    pub cold_log_bytes: u64,
    pub readers: usize,
    pub read_bytes: usize,
    pub segment_bytes: u64,
    /// Partition counts for the start-up phase (none: no start-up phase).
    pub startup_partitions: Vec<usize>,
    pub startup_bytes: u64,
}

/// The figures of one phase.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PhaseResult {
    pub bytes: u64,
    pub secs: f64,
    pub mb_per_sec: f64,
    /// Appends (with their sync, in append_sync) or reads.
    pub operations: u64,
    pub latency_us_p50: u64,
    pub latency_us_p99: u64,
    pub latency_us_max: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Results {
    pub append_sync: PhaseResult,
    pub append: PhaseResult,
    pub tail_read: PhaseResult,
    /// The same reads with the tail cache disabled: from disk, through the readahead chunks.
    pub tail_read_uncached: PhaseResult,
    /// Writing the cold-read phase's log (appends without sync, as `append`).
    pub cold_write: PhaseResult,
    /// Opening (recovering) the closed cold log: the start-up cost of that partition.
    pub cold_open_secs: f64,
    pub cold_read: PhaseResult,
    /// One entry per `--startup-partitions` count.
    pub startup: Vec<StartupResult>,
}

/// What the tasks of one phase share: bytes claimed so far, operations done, latencies.
struct Tally {
    bytes: Cell<u64>,
    operations: Cell<u64>,
    latencies_us: RefCell<Histogram<u64>>,
}

impl Tally {
    fn new() -> Rc<Tally> {
        let histogram = Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid bounds");
        Rc::new(Tally {
            bytes: Cell::new(0),
            operations: Cell::new(0),
            latencies_us: RefCell::new(histogram),
        })
    }

    fn record(&self, bytes: u64, started: Instant) {
        self.bytes.set(self.bytes.get() + bytes);
        self.operations.set(self.operations.get() + 1);
        let latency_us = (started.elapsed().as_micros() as u64).clamp(1, LATENCY_US_MAX);
        self.latencies_us.borrow_mut().record(latency_us).unwrap();
    }

    fn result(&self, elapsed: Duration) -> PhaseResult {
        let secs = elapsed.as_secs_f64().max(1e-9);
        let latencies = self.latencies_us.borrow();
        PhaseResult {
            bytes: self.bytes.get(),
            secs,
            mb_per_sec: self.bytes.get() as f64 / secs / 1e6,
            operations: self.operations.get(),
            latency_us_p50: latencies.value_at_quantile(0.50),
            latency_us_p99: latencies.value_at_quantile(0.99),
            latency_us_max: latencies.max(),
        }
    }
}

pub async fn run_all(config: &PhaseConfig) -> Result<Results> {
    // The one shard of this benchmark: its logs share the caches, as a broker shard's do.
    let storage = StorageContext::default();
    let deadline = || Some(Instant::now() + config.phase_duration);
    let log = open_log(config, &storage, "append-sync").await?;
    let append_sync = append_phase(&log, config, true, deadline(), config.phase_bytes_max).await?;
    print_phase("append_sync", &append_sync);
    close_log(log).await?;

    let log = open_log(config, &storage, "append").await?;
    let append = append_phase(&log, config, false, deadline(), config.phase_bytes_max).await?;
    print_phase("append", &append);
    let tail_read = tail_read_phase(&log, config).await?;
    print_phase("tail_read", &tail_read);
    let tail_cache_bytes_max = storage.tail_cache_bytes_max();
    storage.set_tail_cache_bytes_max(0);
    let tail_read_uncached = tail_read_phase(&log, config).await?;
    print_phase("tail_read_uncached", &tail_read_uncached);
    storage.set_tail_cache_bytes_max(tail_cache_bytes_max);
    close_log(log).await?;

    let log = open_log(config, &storage, "cold").await?;
    let cold_write = append_phase(&log, config, false, None, config.cold_log_bytes).await?;
    print_phase("cold_write", &cold_write);
    close_log(log).await?;
    let opening = Instant::now();
    let log = open_log(config, &storage, "cold").await?;
    let cold_open_secs = opening.elapsed().as_secs_f64();
    println!("cold_open: {cold_open_secs:.3} s to open (recover) the cold log");
    let cold_read = cold_read_phase(&log, config).await?;
    print_phase("cold_read", &cold_read);
    close_log(log).await?;
    let mut startup = Vec::with_capacity(config.startup_partitions.len());
    for &partitions in &config.startup_partitions {
        startup.push(startup_phase(config, &storage, partitions, config.startup_bytes).await?);
    }
    Ok(Results {
        append_sync,
        append,
        tail_read,
        tail_read_uncached,
        cold_write,
        cold_open_secs,
        cold_read,
        startup,
    })
}

fn print_phase(name: &str, result: &PhaseResult) {
    println!(
        "{name}: {:.1} MB/s ({} bytes in {:.2} s, {} ops; latency µs p50 {} p99 {} max {})",
        result.mb_per_sec,
        result.bytes,
        result.secs,
        result.operations,
        result.latency_us_p50,
        result.latency_us_p99,
        result.latency_us_max
    );
}

async fn open_log(
    config: &PhaseConfig,
    storage: &StorageContext,
    name: &str,
) -> Result<Rc<PartitionLog>> {
    let log = open_dir(config, storage, &config.data_dir.join(name)).await?;
    log.set_append_writes_in_flight(config.append_writes_in_flight);
    Ok(log)
}

async fn close_log(log: Rc<PartitionLog>) -> Result<()> {
    let Ok(log) = Rc::try_unwrap(log) else {
        bail!("a phase still holds the log");
    };
    log.close().await?;
    Ok(())
}

/// `config.appenders` tasks append the bench batch (and with `sync`, wait for `sync_to` its last
/// offset) until `deadline` or until `bytes_max` bytes are claimed.
async fn append_phase(
    log: &Rc<PartitionLog>,
    config: &PhaseConfig,
    sync: bool,
    deadline: Option<Instant>,
    bytes_max: u64,
) -> Result<PhaseResult> {
    let tally = Tally::new();
    let claimed = Rc::new(Cell::new(0u64));
    let started = Instant::now();
    let tasks: Vec<_> = (0..config.appenders)
        .map(|_| {
            let (log, tally, claimed) = (Rc::clone(log), Rc::clone(&tally), Rc::clone(&claimed));
            let batch = config.batch.clone();
            glommio::spawn_local(async move {
                let batch_bytes = batch.len_bytes() as u64;
                while claimed.get() + batch_bytes <= bytes_max
                    && deadline.is_none_or(|deadline| Instant::now() < deadline)
                {
                    claimed.set(claimed.get() + batch_bytes);
                    let operation_started = Instant::now();
                    let appended = log.append(batch.clone()).await?;
                    if sync {
                        log.sync_to(appended.last_offset).await?;
                    }
                    tally.record(batch_bytes, operation_started);
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let result = tally.result(started.elapsed());
    // The phase's data is made durable outside the measurement, so the next phase starts clean.
    log.sync_to(i64::MAX).await?;
    Ok(result)
}

/// Reads the last `tail_window_bytes` of the log from the oldest to the newest batch, again and
/// again, until the phase's time is up.
async fn tail_read_phase(log: &PartitionLog, config: &PhaseConfig) -> Result<PhaseResult> {
    let batch_bytes = config.batch.len_bytes() as u64;
    let records_per_batch = config.batch.record_count();
    let end = log.log_end_offset();
    let window_batches = (config.tail_window_bytes / batch_bytes).max(1) as i64;
    let start = (end - window_batches * records_per_batch).max(log.log_start_offset());
    ensure!(start < end, "the append phase wrote nothing to read back");
    let tally = Tally::new();
    let deadline = Instant::now() + config.phase_duration;
    let started = Instant::now();
    while Instant::now() < deadline {
        read_range(log, start, end, config.read_bytes, &tally).await?;
    }
    Ok(tally.result(started.elapsed()))
}

/// `config.readers` tasks read the whole log once, each a contiguous share of its batches.
async fn cold_read_phase(log: &Rc<PartitionLog>, config: &PhaseConfig) -> Result<PhaseResult> {
    let records_per_batch = config.batch.record_count();
    let (start, end) = (log.log_start_offset(), log.log_end_offset());
    let batches = (end - start) / records_per_batch;
    ensure!(batches > 0, "the cold log is empty");
    let readers = (config.readers as i64).min(batches);
    let tally = Tally::new();
    let started = Instant::now();
    let tasks: Vec<_> = (0..readers)
        .map(|reader| {
            let from = start + batches * reader / readers * records_per_batch;
            let to = start + batches * (reader + 1) / readers * records_per_batch;
            let (log, tally, read_bytes) = (Rc::clone(log), Rc::clone(&tally), config.read_bytes);
            glommio::spawn_local(
                async move { read_range(&log, from, to, read_bytes, &tally).await },
            )
        })
        .collect();
    for task in tasks {
        task.await?;
    }
    let result = tally.result(started.elapsed());
    ensure!(
        result.bytes == batches as u64 * config.batch.len_bytes() as u64,
        "the cold read did not return every batch once"
    );
    Ok(result)
}

/// Reads the batches with offsets in `[from, to)` in reads of at most `read_bytes`; counts only
/// the bytes of those batches.
async fn read_range(
    log: &PartitionLog,
    from: i64,
    to: i64,
    read_bytes: usize,
    tally: &Tally,
) -> Result<()> {
    let mut offset = from;
    while offset < to {
        let started = Instant::now();
        let bytes = log.read(offset, read_bytes).await?;
        let (next_offset, bytes_below_to) = walk_batches(&bytes, offset, to)?;
        tally.record(bytes_below_to, started);
        offset = next_offset;
        glommio::yield_if_needed().await;
    }
    Ok(())
}

/// The offset after the last batch in `bytes` (which starts with the batch holding `offset`) and
/// the bytes of the batches that start below `to`.
fn walk_batches(bytes: &[u8], offset: i64, to: i64) -> Result<(i64, u64)> {
    ensure!(
        !bytes.is_empty(),
        "read at offset {offset} returned nothing"
    );
    let mut position = 0usize;
    let mut next_offset = offset;
    let mut bytes_below_to = 0u64;
    while position < bytes.len() {
        let batch = &bytes[position..];
        let header = record_batch::BatchHeader::parse(batch)?;
        let base_offset = header.base_offset;
        if position == 0 {
            ensure!(
                base_offset <= offset,
                "the first batch starts after {offset}"
            );
        } else {
            ensure!(base_offset == next_offset, "offsets are not dense");
        }
        let total_bytes = header.total_bytes();
        if base_offset < to {
            bytes_below_to += total_bytes as u64;
        }
        next_offset = header.next_offset();
        position += total_bytes;
    }
    ensure!(position == bytes.len(), "read returned a partial batch");
    Ok((next_offset, bytes_below_to))
}

/// Start-up cost of a shard's worth of partitions: how long opening (recovering) them takes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StartupResult {
    pub partitions: usize,
    pub bytes: u64,
    pub write_secs: f64,
    /// Opening every partition one after another, as a shard does at start-up.
    pub open_secs: f64,
}

/// Writes `total_bytes` spread evenly over `partitions` logs, closes them, then opens them all
/// again one after another and reports how long that took. Writes are O_DIRECT, so the page cache
/// holds none of the data when recovery reads it.
pub async fn startup_phase(
    config: &PhaseConfig,
    storage: &StorageContext,
    partitions: usize,
    total_bytes: u64,
) -> Result<StartupResult> {
    assert!(partitions > 0);
    let dir = config.data_dir.join(format!("startup-{partitions}"));
    let batch_bytes = config.batch.len_bytes() as u64;
    let partition_bytes = (total_bytes / partitions as u64).max(batch_bytes);
    let writing = Instant::now();
    let mut bytes = 0;
    for partition in 0..partitions {
        let log = open_partition(config, storage, &dir, partition).await?;
        bytes += append_phase(&log, config, false, None, partition_bytes)
            .await?
            .bytes;
        close_log(log).await?;
    }
    let write_secs = writing.elapsed().as_secs_f64();
    let opening = Instant::now();
    let mut logs = Vec::with_capacity(partitions);
    for partition in 0..partitions {
        logs.push(open_partition(config, storage, &dir, partition).await?);
    }
    let open_secs = opening.elapsed().as_secs_f64();
    for log in logs {
        close_log(log).await?;
    }
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    let result = StartupResult {
        partitions,
        bytes,
        write_secs,
        open_secs,
    };
    println!(
        "startup: {partitions} partitions holding {bytes} bytes open in {open_secs:.3} s \
         (written in {write_secs:.1} s)"
    );
    Ok(result)
}

async fn open_partition(
    config: &PhaseConfig,
    storage: &StorageContext,
    dir: &Path,
    partition: usize,
) -> Result<Rc<PartitionLog>> {
    open_dir(config, storage, &dir.join(format!("bench-{partition}"))).await
}

async fn open_dir(
    config: &PhaseConfig,
    storage: &StorageContext,
    path: &Path,
) -> Result<Rc<PartitionLog>> {
    let log_config = LogConfig {
        segment_bytes: config.segment_bytes,
        ..LogConfig::default()
    };
    let log = PartitionLog::open(storage, path, log_config)
        .await
        .with_context(|| format!("opening the log in {}", path.display()))?;
    Ok(Rc::new(log))
}
