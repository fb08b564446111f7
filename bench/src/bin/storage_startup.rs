//! sluice-storage-startup: how long opening many partition logs takes, and how much index memory
//! they hold, after a clean close, after a crash (no clean-shutdown marker), and with every index
//! file removed (a full scan of every segment, which is what every open did before indexes were
//! persisted).
//!
//! It builds `--partitions` logs holding `--total-bytes` together through `storage::PartitionLog`
//! in `--dir`, evicts the files from the page cache before each timed open (so reads come from
//! the disk), prints one line per scenario, and removes the data unless `--keep`.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use bytes::Bytes;
use clap::Parser;
use client::records::encode_record_batch;
use client::ProduceRecord;
use glommio::LocalExecutorBuilder;
use storage::{LogConfig, PartitionLog, StorageContext, ValidatedBatches};

/// Appends in flight while building the data: enough to keep the disk busy.
const BUILD_APPENDS_IN_FLIGHT_MAX: usize = 32;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "sluice-storage-startup",
    about = "Times opening partition logs"
)]
struct Args {
    /// Data directory (created; removed afterwards unless --keep).
    #[arg(long)]
    dir: PathBuf,
    #[arg(long, default_value_t = 1000)]
    partitions: usize,
    /// Bytes stored across all partitions.
    #[arg(long, default_value_t = 10 << 30)]
    total_bytes: u64,
    /// Bytes of one appended batch.
    #[arg(long, default_value_t = 64 << 10)]
    batch_bytes: usize,
    #[arg(long, default_value_t = 1 << 30)]
    segment_bytes: u64,
    #[arg(long, default_value_t = 4096)]
    index_interval_bytes: u64,
    /// Keep the data directory (and reuse it if it already holds the data).
    #[arg(long)]
    keep: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.partitions > 0 && args.batch_bytes >= 1024);
    let worker_args = args.clone();
    LocalExecutorBuilder::default()
        .spawn(move || async move { run(&worker_args).await })
        .map_err(|error| anyhow::anyhow!("starting the executor: {error}"))?
        .join()
        .map_err(|error| anyhow::anyhow!("executor panicked: {error:?}"))??;
    if !args.keep {
        std::fs::remove_dir_all(&args.dir).context("removing the data")?;
    }
    Ok(())
}

fn config(args: &Args) -> LogConfig {
    LogConfig {
        segment_bytes: args.segment_bytes,
        index_interval_bytes: args.index_interval_bytes,
        ..LogConfig::default()
    }
}

fn partition_dir(args: &Args, partition: usize) -> PathBuf {
    args.dir.join(format!("bench-{partition}"))
}

async fn run(args: &Args) -> Result<()> {
    // The one shard of this benchmark.
    let storage = StorageContext::default();
    let started = Instant::now();
    let logs = open_all(args, &storage).await?;
    let logs = build(args, logs).await?;
    println!(
        "built {} partitions, {:.2} GB in {:.1} s",
        args.partitions,
        args.total_bytes as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
    close_all(logs).await?;

    let logs = timed_open(args, &storage, "after clean close").await?;
    // A crash: the logs are dropped without close, so no clean-shutdown marker is left.
    drop(logs);
    let logs = timed_open(args, &storage, "after crash (no marker)").await?;
    drop(logs);
    remove_indexes(&args.dir)?;
    let logs = timed_open(args, &storage, "without index files (full scan)").await?;
    close_all(logs).await?;
    Ok(())
}

async fn open_all(args: &Args, storage: &StorageContext) -> Result<Vec<PartitionLog>> {
    let mut logs = Vec::with_capacity(args.partitions);
    for partition in 0..args.partitions {
        let dir = partition_dir(args, partition);
        logs.push(PartitionLog::open(storage, &dir, config(args)).await?);
    }
    Ok(logs)
}

async fn close_all(logs: Vec<PartitionLog>) -> Result<()> {
    for log in logs {
        log.close().await?;
    }
    Ok(())
}

/// Appends batches round-robin over the partitions until each holds its share, with up to
/// `BUILD_APPENDS_IN_FLIGHT_MAX` appends running at once.
async fn build(args: &Args, logs: Vec<PartitionLog>) -> Result<Vec<PartitionLog>> {
    let logs: Vec<Rc<PartitionLog>> = logs.into_iter().map(Rc::new).collect();
    let per_partition = args.total_bytes / args.partitions as u64;
    let batch = batch_of(args.batch_bytes)?;
    let batches_per_partition = per_partition.div_ceil(batch.len() as u64);
    let mut in_flight = Vec::with_capacity(BUILD_APPENDS_IN_FLIGHT_MAX);
    for _ in 0..batches_per_partition {
        for log in &logs {
            let log = Rc::clone(log);
            let batches = ValidatedBatches::validate(batch.clone())?;
            in_flight.push(glommio::spawn_local(
                async move { log.append(batches).await },
            ));
            if in_flight.len() == BUILD_APPENDS_IN_FLIGHT_MAX {
                for append in in_flight.drain(..) {
                    append.await?;
                }
            }
        }
    }
    for append in in_flight.drain(..) {
        append.await?;
    }
    for log in &logs {
        log.sync_to(i64::MAX).await?;
    }
    let logs = logs
        .into_iter()
        .map(|log| Rc::try_unwrap(log).ok().expect("appends finished"));
    Ok(logs.collect())
}

/// Records of about 1 KiB each, as a typical producer batch holds.
fn batch_records(batch_bytes: usize) -> usize {
    batch_bytes / 1024
}

fn batch_of(batch_bytes: usize) -> Result<Bytes> {
    let records: Vec<ProduceRecord> = (0..batch_records(batch_bytes))
        .map(|index| ProduceRecord {
            key: None,
            value: Some(Bytes::from(vec![index as u8; 1000])),
            headers: Vec::new(),
            timestamp_ms: 1_700_000_000_000 + index as i64,
        })
        .collect();
    Ok(encode_record_batch(
        &records,
        kafka_protocol::records::Compression::None,
    )?)
}

async fn timed_open(
    args: &Args,
    storage: &StorageContext,
    scenario: &str,
) -> Result<Vec<PartitionLog>> {
    evict_from_page_cache(&args.dir)?;
    let rss_before = resident_bytes();
    let started = Instant::now();
    let logs = open_all(args, storage).await?;
    let elapsed = started.elapsed();
    let scanned: usize = logs.iter().map(|log| log.segments_scanned_at_open()).sum();
    let index_bytes: usize = logs.iter().map(|log| log.index_memory_bytes()).sum();
    let stored: i64 = logs.iter().map(|log| log.log_end_offset()).sum();
    ensure!(stored > 0, "the logs are empty");
    let sealed_index_bytes = storage.sealed_index_cache_bytes();
    report(
        scenario,
        elapsed,
        scanned,
        index_bytes,
        sealed_index_bytes,
        rss_before,
    );
    Ok(logs)
}

fn report(
    scenario: &str,
    elapsed: Duration,
    scanned: usize,
    index_bytes: usize,
    sealed_index_bytes: usize,
    rss: u64,
) {
    println!(
        "open {scenario:<34} {:>9.3} s  segments scanned {scanned:>6}  active index {:>7.1} MiB  sealed index cache {:>5.1} MiB  RSS {:>7.1} -> {:>7.1} MiB",
        elapsed.as_secs_f64(),
        index_bytes as f64 / (1 << 20) as f64,
        sealed_index_bytes as f64 / (1 << 20) as f64,
        rss as f64 / (1 << 20) as f64,
        resident_bytes() as f64 / (1 << 20) as f64,
    );
}

/// Drops every file under `dir` from the page cache, so a timed open reads from the disk
/// without disturbing anyone else's cached files.
fn evict_from_page_cache(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            evict_from_page_cache(&path)?;
            continue;
        }
        let file = std::fs::File::open(&path)?;
        // SAFETY: a plain advisory call on a descriptor that stays open for its duration.
        let result = unsafe {
            use std::os::fd::AsRawFd;
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED)
        };
        ensure!(result == 0, "posix_fadvise on {}: {result}", path.display());
    }
    Ok(())
}

fn remove_indexes(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            remove_indexes(&path)?;
        } else if path.extension().is_some_and(|e| e == "index")
            || path.file_name().is_some_and(|n| n == "clean-shutdown")
        {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// This process's resident set size, from /proc/self/statm.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
