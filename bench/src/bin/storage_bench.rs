//! sluice-storage-bench: drives `storage::PartitionLog` directly on one glommio executor, without
//! the network or the Kafka protocol, to see how close the storage engine gets to the disk.
//!
//! Phases, each on a log of its own under `--data-dir`:
//! - `append_sync`: `--appenders` tasks each loop append one batch, then `sync_to` its last
//!   offset (acks=all; concurrent syncs share fdatasyncs: group commit);
//! - `append`: the same tasks append without syncing (acks=1);
//! - `tail_read`: one task reads the most recent `--tail-window-mib` of the `append` log again and
//!   again (what a consumer at the tail does; the tail cache serves it from memory);
//! - `tail_read_uncached`: the same with the tail cache disabled, so from disk through the
//!   readahead chunks;
//! - `cold_read`: a log of `--cold-log-mib` is written, closed and reopened (the reopen time is
//!   reported), then `--readers` tasks read it from start to end, each its own contiguous share.
//!   Reads are O_DIRECT, so the page cache does not help.
//! - `startup` (only with `--startup-partitions`): `--startup-mib` written over P logs, closed,
//!   then all P opened one after another, as a shard does at start-up; the open time is reported.
//!
//! Every batch is a valid RecordBatch v2 (encoded by the Kafka client's encoder in `net`, CRC-32C
//! included) of exactly `--batch-bytes`. Output: a line per phase, then one JSON line with every
//! figure (also written to `--json`). MB/s are 10^6 bytes per second of batch bytes.

#[path = "storage_bench/batch.rs"]
mod batch;
#[path = "storage_bench/phases.rs"]
mod phases;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use clap::Parser;
use glommio::{LocalExecutorBuilder, Placement};

use phases::{PhaseConfig, Results};

/// Storage micro-benchmark: appends (with and without fdatasync), tail reads and cold reads on
/// `storage::PartitionLog`, on one glommio executor.
#[derive(Debug, Clone, Parser)]
#[command(name = "sluice-storage-bench", version)]
struct Args {
    /// Directory for the bench's partition logs; it must not exist yet (it is created, and
    /// removed at the end unless --keep). Put it on the disk you want to measure.
    #[arg(long)]
    data_dir: PathBuf,

    /// Bytes of each appended RecordBatch (exactly).
    #[arg(long, default_value_t = 64 * 1024)]
    batch_bytes: usize,

    /// Value bytes of each record in a batch (the last record takes up the remainder).
    #[arg(long, default_value_t = 1024)]
    record_bytes: usize,

    /// Concurrent appending tasks in the append phases (each awaits its append, and in
    /// append_sync its sync, before the next).
    #[arg(long, default_value_t = 4)]
    appenders: usize,

    /// Appends of one log whose writes may be in flight at once (storage's
    /// `PartitionLog::set_append_writes_in_flight`).
    #[arg(long, default_value_t = storage::APPEND_WRITES_IN_FLIGHT_DEFAULT)]
    append_writes_in_flight: usize,

    /// Seconds each append phase and the tail-read phase run at most.
    #[arg(long, default_value_t = 3.0)]
    phase_secs: f64,

    /// MiB each append phase writes at most.
    #[arg(long, default_value_t = 2048)]
    phase_mib_max: u64,

    /// MiB at the end of the append log that the tail-read phase reads again and again.
    #[arg(long, default_value_t = 16)]
    tail_window_mib: u64,

    /// MiB written for the cold-read phase (read back once, from the start).
    #[arg(long, default_value_t = 2048)]
    cold_log_mib: u64,

    /// Concurrent reading tasks in the cold-read phase.
    #[arg(long, default_value_t = 1)]
    readers: usize,

    /// Bytes asked for by each read (a fetch's partition max_bytes).
    #[arg(long, default_value_t = 1 << 20)]
    read_bytes: usize,

    /// Segment size of the bench's logs.
    #[arg(long, default_value_t = 256 << 20)]
    segment_bytes: u64,

    /// Also measure start-up: for each of these partition counts (comma-separated, e.g.
    /// 10,1000), write --startup-mib over that many logs, then time opening them all.
    #[arg(long, value_delimiter = ',', value_name = "P[,P]")]
    startup_partitions: Vec<usize>,

    /// MiB written over the partitions of each start-up measurement.
    #[arg(long, default_value_t = 10 * 1024)]
    startup_mib: u64,

    /// Pin the executor to this CPU (default: not pinned).
    #[arg(long)]
    core: Option<usize>,

    /// Also write the JSON results to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,

    /// Keep the data directory at the end.
    #[arg(long)]
    keep: bool,
}

/// Tasks per phase; each is a task on one executor, so this only bounds memory and queueing.
const TASKS_MAX: usize = 256;

/// Partitions opened at once in the start-up phase; each holds open files (one per segment).
const STARTUP_PARTITIONS_MAX: usize = 10_000;

impl Args {
    fn validate(&self) -> Result<()> {
        ensure!(
            (1..=TASKS_MAX).contains(&self.appenders),
            "--appenders is 1..={TASKS_MAX}"
        );
        ensure!(
            (1..=storage::APPEND_WRITES_IN_FLIGHT_MAX).contains(&self.append_writes_in_flight),
            "--append-writes-in-flight is 1..={}",
            storage::APPEND_WRITES_IN_FLIGHT_MAX
        );
        ensure!(
            (1..=TASKS_MAX).contains(&self.readers),
            "--readers is 1..={TASKS_MAX}"
        );
        ensure!(
            self.phase_secs.is_finite() && self.phase_secs > 0.0,
            "--phase-secs must be positive"
        );
        ensure!(
            self.phase_mib_max > 0 && self.cold_log_mib > 0,
            "sizes must be positive"
        );
        ensure!(
            self.tail_window_mib > 0,
            "--tail-window-mib must be positive"
        );
        ensure!(
            (1..=storage::READ_BYTES_MAX).contains(&self.read_bytes),
            "--read-bytes is 1..={}",
            storage::READ_BYTES_MAX
        );
        ensure!(
            self.startup_partitions
                .iter()
                .all(|&partitions| (1..=STARTUP_PARTITIONS_MAX).contains(&partitions)),
            "--startup-partitions are 1..={STARTUP_PARTITIONS_MAX}"
        );
        ensure!(
            !self.data_dir.exists(),
            "{} exists; give a new directory",
            self.data_dir.display()
        );
        Ok(())
    }

    fn phase_config(&self) -> Result<PhaseConfig> {
        let batch = batch::encode_batch(self.batch_bytes, self.record_bytes)?;
        Ok(PhaseConfig {
            data_dir: self.data_dir.clone(),
            batch,
            appenders: self.appenders,
            append_writes_in_flight: self.append_writes_in_flight,
            phase_duration: Duration::from_secs_f64(self.phase_secs),
            phase_bytes_max: self.phase_mib_max << 20,
            tail_window_bytes: self.tail_window_mib << 20,
            cold_log_bytes: self.cold_log_mib << 20,
            readers: self.readers,
            read_bytes: self.read_bytes,
            segment_bytes: self.segment_bytes,
            startup_partitions: self.startup_partitions.clone(),
            startup_bytes: self.startup_mib << 20,
        })
    }
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    args.validate()?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    // glommio opens directories (for their fsync) only by absolute path.
    args.data_dir = std::fs::canonicalize(&args.data_dir)?;
    let config = args.phase_config()?;
    let placement = match args.core {
        Some(core) => Placement::Fixed(core),
        None => Placement::Unbound,
    };
    let results = LocalExecutorBuilder::new(placement)
        .name("storage-bench")
        .spawn(move || async move { phases::run_all(&config).await })
        .map_err(|error| anyhow::anyhow!("starting the executor: {error}"))?
        .join()
        .map_err(|error| anyhow::anyhow!("executor failed: {error}"))?;
    if !args.keep {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("removing {}", args.data_dir.display()))?;
    }
    let results = results?;
    print_json(&args, &results)
}

fn print_json(args: &Args, results: &Results) -> Result<()> {
    let json = serde_json::json!({
        "bench": "sluice-storage-bench",
        "batch_bytes": args.batch_bytes,
        "record_bytes": args.record_bytes,
        "appenders": args.appenders,
        "readers": args.readers,
        "read_bytes": args.read_bytes,
        "segment_bytes": args.segment_bytes,
        "phases": results,
    });
    let line = serde_json::to_string(&json)?;
    println!("{line}");
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{line}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
