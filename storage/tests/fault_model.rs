//! Randomized model test on the fault-injecting I/O layer (`storage::fault::FaultIo`): random
//! appends (single and concurrent, with frequent rolls), syncs, retention by time and size,
//! reads and timestamp lookups, injected faults (fail after N operations of a kind, short writes,
//! ENOSPC, EIO on fdatasync), clean closes, abandoned logs and simulated crashes that discard
//! unsynced writes (sometimes keeping torn blocks), each followed by a reopen checked against a
//! model. A failing case prints its seed; set `STORAGE_FAULT_MODEL_SEED` to replay it.

mod common;

use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use storage::fault::{CrashOptions, Fault, FaultIo, FaultPlan, Operations, EIO, ENOSPC};
use storage::{LogConfig, PartitionLog, RetentionPolicy, StorageError, ValidatedBatches};

/// Random cases per run besides the regression seeds (about a minute in release on two busy
/// cores).
const CASES: u64 = 2000;
const OPERATIONS_PER_CASE: u64 = 40;
/// Seeds that found bugs, run every time: a retention whose unlink failed part-way left files
/// that a later retention separated from the rest by a gap (the next open failed with `Corrupt`),
/// and retention unlinked every sealed segment while the active one's directory entry was not
/// durable (after a crash the log restarted at offset 0). A failed segment creation at a roll
/// has a test of its own in `faults.rs`.
const REGRESSION_SEEDS: [u64; 2] = [1796296817129260981, 1796296890068644827];
/// Executors (threads) the cases are spread over.
const EXECUTORS: usize = 4;
const REPLAY_VARIABLE: &str = "STORAGE_FAULT_MODEL_SEED";
/// Overrides `CASES`, e.g. for a longer local run.
const CASES_VARIABLE: &str = "STORAGE_FAULT_MODEL_CASES";
/// Set (to anything) when replaying a seed to print each operation and its outcome.
const TRACE_VARIABLE: &str = "STORAGE_FAULT_MODEL_TRACE";
/// Record timestamps are drawn below this; retention by time measures from it.
const TIMESTAMP_MAX: u64 = 1000;

/// The reference the log is checked against.
struct Model {
    /// Every batch appended Ok (or found by a reopen), in offset order, as stored; retention
    /// does not remove them here, `start_offset` says what is served.
    batches: Vec<(i64, Vec<u8>)>,
    start_offset: i64,
    /// The lowest log start a reopen may come back with: retention that failed part-way leaves
    /// the files it did not unlink, and a reopen serves them again.
    start_offset_low: i64,
    /// Every offset below this was made durable by a successful `sync_to` (or a clean close).
    durable_offset: i64,
    /// Base offsets of the segments from `start_offset` on.
    segment_bases: Vec<i64>,
    /// Batches (as sent) of appends that failed with a short write since the last open: some
    /// of their blocks reached the file, so a reopen may find them whole past the durable end.
    ghosts: Vec<Vec<u8>>,
    /// An fdatasync failed since the last open: every sync, roll and clean close must fail.
    sync_poisoned: bool,
}

impl Model {
    fn end_offset(&self) -> i64 {
        self.batches
            .last()
            .map_or(self.start_offset, |(base, bytes)| {
                base + last_offset_delta(bytes) + 1
            })
    }

    /// Index in `batches` of the batch holding `offset`.
    fn batch_holding(&self, offset: i64) -> usize {
        self.batches
            .partition_point(|(base, bytes)| base + last_offset_delta(bytes) < offset)
    }

    fn served(&self) -> &[(i64, Vec<u8>)] {
        &self.batches[self.batch_holding(self.start_offset)..]
    }

    /// (bytes, largest maxTimestamp) of each segment.
    fn segment_summaries(&self) -> Vec<(u64, i64)> {
        let mut summaries = vec![(0u64, i64::MIN); self.segment_bases.len()];
        for (base, bytes) in self.served() {
            let segment = self.segment_bases.partition_point(|start| start <= base) - 1;
            summaries[segment].0 += bytes.len() as u64;
            summaries[segment].1 = summaries[segment].1.max(max_timestamp(bytes));
        }
        summaries
    }

    /// How many segments `policy` deletes: as Kafka, oldest first, sealed only, each expired by
    /// time or by size (what stays is still at least `retention_bytes`).
    fn expired_segments(&self, policy: &RetentionPolicy) -> usize {
        let summaries = self.segment_summaries();
        let mut remaining_bytes: u64 = summaries.iter().map(|(bytes, _)| bytes).sum();
        let mut count = 0;
        for (bytes, max_timestamp) in &summaries[..summaries.len() - 1] {
            assert!(*bytes > 0, "a sealed segment holds a batch");
            let by_time =
                policy.retention_ms >= 0 && *max_timestamp < policy.now_ms - policy.retention_ms;
            let by_size = policy.retention_bytes >= 0
                && remaining_bytes - bytes >= policy.retention_bytes as u64;
            if !by_time && !by_size {
                break;
            }
            remaining_bytes -= bytes;
            count += 1;
        }
        count
    }

    fn active_segment_bytes(&self) -> u64 {
        let active_base = *self.segment_bases.last().unwrap();
        let first = self.batch_holding(active_base);
        self.batches[first..]
            .iter()
            .map(|(_, bytes)| bytes.len() as u64)
            .sum()
    }

    fn push(&mut self, base_offset: i64, batch: &[u8]) {
        assert_eq!(base_offset, self.end_offset(), "dense offsets");
        self.batches.push((base_offset, stored(batch, base_offset)));
    }
}

/// One random case: its generator, I/O layer, directory and model.
struct Case {
    rng: Rng,
    io: FaultIo,
    partition: PathBuf,
    config: LogConfig,
    model: Model,
    plan: Option<FaultPlan>,
    /// `io.fdatasyncs_failed()` when the log was opened.
    fdatasyncs_failed_at_open: u64,
    trace: bool,
}

/// How the previous log ended before a reopen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// `close` succeeded.
    Clean,
    /// Dropped without `close`, or `close` failed part-way (then it may have left a valid
    /// clean-shutdown marker): every completed write is in the files.
    Abandoned { close_failed: bool },
    /// As `Abandoned`, then a simulated power failure discarded what was not durable.
    Crashed { close_failed: bool },
}

#[test]
fn random_operations_with_faults_and_crashes_match_the_model() {
    let cases = std::env::var(CASES_VARIABLE).map_or(CASES, |cases| cases.parse().unwrap());
    let mut seeds = model_seeds(REPLAY_VARIABLE, cases);
    if std::env::var_os(REPLAY_VARIABLE).is_none() {
        seeds.extend(REGRESSION_SEEDS);
    }
    // Cases wait on I/O much of the time, so two executors finish sooner even on two cores.
    let shards: Vec<Vec<u64>> = seeds
        .chunks(seeds.len().div_ceil(EXECUTORS).max(1))
        .map(<[u64]>::to_vec)
        .collect();
    std::thread::scope(|scope| {
        for shard in shards {
            scope.spawn(move || run_cases(shard));
        }
    });
}

/// Each case on a fresh executor: the per-executor caches (sealed indexes, tail) start empty,
/// so which reads reach the I/O layer, and with them the injected faults, depend only on the
/// seed, and a replay repeats the case exactly.
fn run_cases(seeds: Vec<u64>) {
    for seed in seeds {
        let reporter = SeedReporter::start(seed, REPLAY_VARIABLE);
        run(move || async move { run_case(seed).await });
        drop(reporter);
    }
}

async fn run_case(seed: u64) {
    let dir = TestDir::new("fault-model");
    let mut case = Case::new(seed, dir.partition());
    case.trace(format_args!("case {seed}: {:?}", case.config));
    let mut log = case.open().await;
    for _ in 0..OPERATIONS_PER_CASE {
        let choice = case.rng.range(0, 100);
        if choice < 30 {
            case.append(&log).await;
        } else if choice < 37 {
            case.append_concurrently(&log).await;
        } else if choice < 47 {
            case.sync(&log).await;
        } else if choice < 54 {
            case.retention(&log).await;
        } else if choice < 64 {
            case.arm_random_fault();
        } else if choice < 69 {
            case.disarm_fault();
        } else if choice < 79 {
            case.check_read(&log).await;
        } else if choice < 83 {
            case.check_timestamp_lookup(&log).await;
        } else {
            log = case.reopen(log).await;
        }
    }
    case.disarm_fault();
    log = case.reopen(log).await;
    log.delete().await.unwrap();
}

fn validated(batch: Vec<u8>) -> ValidatedBatches {
    ValidatedBatches::validate(Bytes::from(batch)).unwrap()
}

/// Mostly small batches, some larger than the smallest segments, so rolls are frequent.
fn random_batch(rng: &mut Rng) -> Vec<u8> {
    let record_count = rng.range(1, 6) as usize;
    let value_len_max = match rng.range(0, 20) {
        0 => 9000,
        1..=4 => 3000,
        _ => 700,
    };
    let records: Vec<TestRecord> = (0..record_count)
        .map(|_| {
            record(
                rng.range(0, TIMESTAMP_MAX) as i64,
                rng.range(0, value_len_max) as usize,
                rng.next_u64() as u8,
            )
        })
        .collect();
    encode_batch(&records)
}

fn random_plan(rng: &mut Rng) -> FaultPlan {
    let fault = match rng.range(0, 4) {
        0 => Fault::ShortWrite,
        1 => Fault::Errno(ENOSPC),
        _ => Fault::Errno(EIO),
    };
    let operations = match rng.range(0, 4) {
        0 => Operations::All,
        1 => Operations::Writes,
        2 => Operations::Syncs,
        _ => Operations::Reads,
    };
    let count = match rng.range(0, 3) {
        0 => 1,
        1 => rng.range(2, 5),
        _ => u64::MAX,
    };
    FaultPlan {
        fault,
        operations,
        after: rng.range(0, 6),
        count,
    }
}

fn random_retention_policy(rng: &mut Rng) -> RetentionPolicy {
    let kind = rng.range(0, 4);
    let retention_ms = if kind & 1 == 1 {
        rng.range(0, TIMESTAMP_MAX + 100) as i64
    } else {
        -1
    };
    let retention_bytes = if kind & 2 == 2 {
        rng.range(0, 40_000) as i64
    } else {
        -1
    };
    RetentionPolicy {
        retention_ms,
        retention_bytes,
        now_ms: TIMESTAMP_MAX as i64,
    }
}

impl Case {
    fn new(seed: u64, partition: PathBuf) -> Case {
        let mut rng = Rng::new(seed);
        let config = LogConfig {
            segment_bytes: rng.range(1024, 8192),
            index_interval_bytes: rng.range(64, 2048),
            segment_preallocate_bytes: rng.range(0, 3) * 4096,
            ..LogConfig::default()
        };
        let model = Model {
            batches: Vec::new(),
            start_offset: 0,
            start_offset_low: 0,
            durable_offset: 0,
            segment_bases: vec![0],
            ghosts: Vec::new(),
            sync_poisoned: false,
        };
        Case {
            rng,
            io: FaultIo::new(),
            partition,
            config,
            model,
            plan: None,
            fdatasyncs_failed_at_open: 0,
            trace: std::env::var_os(TRACE_VARIABLE).is_some(),
        }
    }

    fn trace(&self, what: std::fmt::Arguments) {
        if self.trace {
            eprintln!("{what}");
        }
    }

    async fn open(&mut self) -> PartitionLog {
        let io: Rc<FaultIo> = Rc::new(self.io.clone());
        let log = PartitionLog::open_with_io(
            &crate::common::context(),
            &self.partition,
            self.config.clone(),
            io,
        )
        .await
        .unwrap();
        self.fdatasyncs_failed_at_open = self.io.fdatasyncs_failed();
        log
    }

    fn arm_random_fault(&mut self) {
        let plan = random_plan(&mut self.rng);
        self.io.inject(plan);
        self.trace(format_args!("inject {plan:?}"));
        self.plan = Some(plan);
    }

    fn disarm_fault(&mut self) {
        self.io.clear();
        self.plan = None;
        self.trace(format_args!("clear faults"));
    }

    /// Records a failed fdatasync since the last open: the log is poisoned until reopened.
    fn observe_fdatasync_failures(&mut self) {
        if self.io.fdatasyncs_failed() > self.fdatasyncs_failed_at_open {
            self.model.sync_poisoned = true;
        }
    }

    /// An operation failed: that must be an I/O error caused by an injected fault, or by the
    /// poison of an earlier failed fdatasync.
    fn expect_explained_failure(&self, error: &StorageError, injected_before: u64, what: &str) {
        assert!(
            matches!(error, StorageError::Io(_)),
            "{what} failed with {error}"
        );
        assert!(
            self.io.injected() > injected_before || self.model.sync_poisoned,
            "{what} failed with no fault injected: {error}"
        );
    }

    /// Batches of a failed append may be partly on disk if the fault was a short write.
    fn note_failed_append(&mut self, batches: &[Vec<u8>]) {
        if self
            .plan
            .is_some_and(|plan| plan.fault == Fault::ShortWrite)
        {
            self.model.ghosts.extend(batches.iter().cloned());
        }
    }

    /// The segment files from the log start on are the model's segments.
    fn check_segment_files(&self) {
        let on_disk: Vec<i64> = segment_files(&self.partition)
            .into_iter()
            .map(|(base, _)| base)
            .filter(|base| *base >= self.model.start_offset)
            .collect();
        assert_eq!(on_disk, self.model.segment_bases, "segment files");
    }

    /// Takes a segment created by an append whose outcome does not say whether it rolled.
    fn adopt_new_segment_files(&mut self) {
        let last_base = *self.model.segment_bases.last().unwrap();
        for (base, _) in segment_files(&self.partition) {
            if base > last_base {
                let holding = self.model.batch_holding(base);
                let boundary = self.model.batches.get(holding).is_none_or(|b| b.0 == base);
                assert!(
                    boundary && base <= self.model.end_offset(),
                    "segment {base}"
                );
                self.model.segment_bases.push(base);
            }
        }
    }

    async fn append(&mut self, log: &PartitionLog) {
        let batches: Vec<Vec<u8>> = (0..self.rng.range(1, 4))
            .map(|_| random_batch(&mut self.rng))
            .collect();
        let append_bytes: u64 = batches.iter().map(|batch| batch.len() as u64).sum();
        let active_bytes = self.model.active_segment_bytes();
        let rolls = active_bytes > 0 && active_bytes + append_bytes > self.config.segment_bytes;
        let end = self.model.end_offset();
        let injected = self.io.injected();
        let result = log.append(validated(batches.concat())).await;
        self.trace(format_args!(
            "append {} batches {append_bytes} bytes at {end} (roll {rolls}): {:?}",
            batches.len(),
            result.as_ref().map(|info| info.base_offset)
        ));
        self.observe_fdatasync_failures();
        match result {
            Ok(info) => {
                assert_eq!(info.base_offset, end);
                if rolls {
                    self.model.segment_bases.push(end);
                }
                let mut offset = end;
                for batch in &batches {
                    self.model.push(offset, batch);
                    offset += last_offset_delta(batch) + 1;
                }
                assert_eq!(info.last_offset, offset - 1);
            }
            Err(error) => {
                self.expect_explained_failure(&error, injected, "append");
                self.note_failed_append(&batches);
                self.adopt_new_segment_files();
            }
        }
        self.check_published(log).await;
        self.check_segment_files();
    }

    /// Several tasks append at once; the offsets they get decide the model's order.
    async fn append_concurrently(&mut self, log: &PartitionLog) {
        let batches: Vec<Vec<u8>> = (0..self.rng.range(2, 6))
            .map(|_| random_batch(&mut self.rng))
            .collect();
        let injected = self.io.injected();
        let appends = batches
            .iter()
            .map(|batch| Box::pin(log.append(validated(batch.clone()))))
            .collect();
        let results = join_all(appends).await;
        let outcomes: Vec<_> = results
            .iter()
            .map(|result| result.as_ref().map(|info| info.base_offset))
            .collect();
        self.trace(format_args!("concurrent appends: {outcomes:?}"));
        self.observe_fdatasync_failures();
        let mut placed = Vec::new();
        for (result, batch) in results.into_iter().zip(&batches) {
            match result {
                Ok(info) => placed.push((info.base_offset, batch)),
                Err(error) => {
                    self.expect_explained_failure(&error, injected, "concurrent append");
                    self.note_failed_append(std::slice::from_ref(batch));
                }
            }
        }
        placed.sort_by_key(|(base, _)| *base);
        for (base, batch) in placed {
            self.model.push(base, batch);
        }
        self.adopt_new_segment_files();
        self.check_published(log).await;
        self.check_segment_files();
    }

    /// The log serves exactly the model's end: nothing of a failed append is published.
    async fn check_published(&self, log: &PartitionLog) {
        let end = self.model.end_offset();
        assert_eq!(log.log_end_offset(), end);
        assert!(log.read(end, 1000).await.unwrap().is_empty());
        assert!(matches!(
            log.read(end + 1, 1000).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
    }

    async fn sync(&mut self, log: &PartitionLog) {
        let end = self.model.end_offset();
        let offset = self
            .rng
            .range(0, (end - self.model.start_offset) as u64 + 3) as i64
            + self.model.start_offset
            - 1;
        let poisoned = self.model.sync_poisoned;
        let injected = self.io.injected();
        let result = log.sync_to(offset).await;
        self.trace(format_args!(
            "sync_to {offset}: {result:?}, synced {}",
            log.synced_offset()
        ));
        self.observe_fdatasync_failures();
        match result {
            Ok(()) => {
                assert!(!poisoned, "a sync after a failed fdatasync succeeded");
                assert!(log.synced_offset() > offset.min(end - 1));
                assert!(log.synced_offset() <= end);
                let durable = self.model.durable_offset.max(log.synced_offset());
                self.model.durable_offset = durable;
            }
            Err(error) => self.expect_explained_failure(&error, injected, "sync_to"),
        }
    }

    async fn retention(&mut self, log: &PartitionLog) {
        let policy = random_retention_policy(&mut self.rng);
        let expired = self.model.expired_segments(&policy);
        let injected = self.io.injected();
        let result = log.apply_retention(policy).await;
        self.trace(format_args!(
            "retention {policy:?} expecting {expired}: {result:?}"
        ));
        let start = log.log_start_offset();
        let deleted = self
            .model
            .segment_bases
            .partition_point(|base| *base < start);
        assert_eq!(
            self.model.segment_bases.get(deleted),
            Some(&start),
            "log start"
        );
        match result {
            Ok(outcome) => {
                assert_eq!(outcome.segments_deleted, expired, "{policy:?}");
                assert_eq!(
                    deleted, expired,
                    "the log start follows the deleted segments"
                );
                assert_eq!(outcome.log_start_offset, start);
                // A successful removal also unlinked what earlier failed ones left behind.
                self.model.start_offset_low = start;
            }
            Err(error) => {
                // Files an earlier failed removal left behind are unlinked first, and that
                // can fail again.
                let leftovers = self.model.start_offset_low < self.model.start_offset;
                assert!(
                    expired > 0 || leftovers,
                    "retention with nothing to delete failed: {error}"
                );
                assert!(matches!(error, StorageError::Io(_)), "{error}");
                assert!(self.io.injected() > injected, "unexplained: {error}");
                assert!(
                    deleted <= expired,
                    "a failed retention went past the expired segments"
                );
            }
        }
        self.model.start_offset = start;
        self.model.segment_bases.drain(..deleted);
        self.check_segment_files();
        if start > 0 {
            assert!(matches!(
                log.read(start - 1, 1000).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
        }
    }

    async fn check_read(&mut self, log: &PartitionLog) {
        let start = self.model.start_offset;
        let end = self.model.end_offset();
        let offset = self.rng.range(0, (end - start) as u64 + 3) as i64 + start - 1;
        let max_bytes = self.rng.range(0, 5000) as usize;
        let injected = self.io.injected();
        let result = log.read(offset, max_bytes).await;
        if offset < start || offset > end {
            assert!(
                matches!(result, Err(StorageError::OffsetOutOfRange { .. })),
                "offset {offset}: {result:?}"
            );
            return;
        }
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(error) => return self.expect_explained_failure(&error, injected, "read"),
        };
        if offset == end {
            assert!(bytes.is_empty());
            return;
        }
        let first = self.model.batch_holding(offset);
        let got = split_batches(&bytes);
        assert!(!got.is_empty());
        let want = &self.model.batches[first..first + got.len()];
        assert_eq!(got[..], *want, "read at {offset}");
        assert!(got.len() == 1 || bytes.len() <= max_bytes);
        // Stopping early is allowed only when the next batch does not fit or starts a segment.
        if let Some((next_base, next_bytes)) = self.model.batches.get(first + got.len()) {
            let fits = bytes.len() + next_bytes.len() <= max_bytes;
            let starts_segment = self.model.segment_bases.contains(next_base);
            assert!(!fits || starts_segment, "read at {offset} stopped early");
        }
    }

    async fn check_timestamp_lookup(&mut self, log: &PartitionLog) {
        let target = self.rng.range(0, TIMESTAMP_MAX + 100) as i64;
        let want = self
            .model
            .served()
            .iter()
            .find_map(|(base, bytes)| first_at_or_after(*base, bytes, target));
        let injected = self.io.injected();
        match log.offset_for_timestamp(target).await {
            Ok(found) => assert_eq!(found, want, "timestamp {target}"),
            Err(error) => self.expect_explained_failure(&error, injected, "timestamp lookup"),
        }
    }

    /// Ends the log in a random way (clean close, possibly failing; abandoned; crashed), reopens
    /// it without faults and checks what recovery found against the model.
    async fn reopen(&mut self, log: PartitionLog) -> PartitionLog {
        let ending = self.end_log(log).await;
        self.disarm_fault();
        let log = self.open().await;
        self.trace(format_args!(
            "reopened after {ending:?}: [{}, {}), segments {:?}, model [{}, {}) durable {}",
            log.log_start_offset(),
            log.log_end_offset(),
            segment_files(&self.partition)
                .iter()
                .map(|(base, _)| *base)
                .collect::<Vec<_>>(),
            self.model.start_offset,
            self.model.end_offset(),
            self.model.durable_offset
        ));
        self.check_recovered(&log, ending).await;
        log
    }

    async fn end_log(&mut self, log: PartitionLog) -> Ending {
        let mut close_failed = false;
        if self.rng.chance(40) {
            if self.rng.chance(70) {
                self.disarm_fault();
            }
            let poisoned = self.model.sync_poisoned;
            let injected = self.io.injected();
            let result = log.close().await;
            self.trace(format_args!("close: {result:?}"));
            match result {
                Ok(()) => {
                    assert!(!poisoned, "a close after a failed fdatasync succeeded");
                    return Ending::Clean;
                }
                Err(error) => {
                    self.observe_fdatasync_failures();
                    self.expect_explained_failure(&error, injected, "close");
                    close_failed = true;
                }
            }
        } else {
            drop(log);
        }
        if !self.rng.chance(70) {
            return Ending::Abandoned { close_failed };
        }
        let torn_blocks_kept = match self.rng.range(0, 4) {
            0 => 0,
            1 => 1,
            2 => self.rng.range(2, 8),
            _ => u64::MAX,
        };
        let options = CrashOptions {
            torn_blocks_kept,
            unsynced_files_lost: self.rng.chance(50),
        };
        self.io.crash(options).unwrap();
        self.trace(format_args!("crash {options:?}"));
        Ending::Crashed { close_failed }
    }

    async fn check_recovered(&mut self, log: &PartitionLog, ending: Ending) {
        let start = log.log_start_offset();
        let end = log.log_end_offset();
        let model_end = self.model.end_offset();
        assert!(
            self.model.start_offset_low <= start && start <= self.model.start_offset,
            "log start {start} ({ending:?})"
        );
        assert!(
            end >= self.model.durable_offset,
            "log end {end} below the durable offset {} ({ending:?})",
            self.model.durable_offset
        );
        match ending {
            Ending::Clean => assert_eq!(end, model_end, "after a clean close"),
            Ending::Abandoned { .. } => assert!(end >= model_end, "completed writes lost"),
            Ending::Crashed { .. } => {}
        }
        let recovered = read_all(log, start, end).await;
        self.match_recovered(&recovered, ending);
        self.model.batches = recovered;
        self.model.start_offset = start;
        self.model.start_offset_low = start;
        self.model.durable_offset = end;
        self.model.ghosts.clear();
        self.model.sync_poisoned = false;
        self.model.segment_bases = segment_files(&self.partition)
            .into_iter()
            .map(|(base, _)| base)
            .collect();
        assert_eq!(self.model.end_offset(), end);
        self.check_recovered_segments(log, ending);
        self.check_index(log).await;
        self.check_published(log).await;
    }

    /// Every recovered batch is the model's at its offset, or (past the durable offset only) a
    /// batch of a failed short write that reached the file whole.
    fn match_recovered(&self, recovered: &[(i64, Vec<u8>)], ending: Ending) {
        for (base, bytes) in recovered {
            let holding = self.model.batch_holding(*base);
            if self.model.batches.get(holding) == Some(&(*base, bytes.clone())) {
                continue;
            }
            assert!(
                *base >= self.model.durable_offset,
                "durable batch at {base} differs ({ending:?})"
            );
            let ghost = self
                .model
                .ghosts
                .iter()
                .any(|ghost| stored(ghost, *base) == *bytes);
            assert!(ghost, "batch at {base} was never appended ({ending:?})");
        }
    }

    fn check_recovered_segments(&self, log: &PartitionLog, ending: Ending) {
        let bases = &self.model.segment_bases;
        assert_eq!(
            bases.first(),
            Some(&log.log_start_offset()),
            "first segment"
        );
        for base in bases {
            let holding = self.model.batch_holding(*base);
            let boundary = self.model.batches.get(holding).is_none_or(|b| b.0 == *base);
            assert!(boundary && *base <= log.log_end_offset(), "segment {base}");
        }
        let scanned = log.segments_scanned_at_open();
        match ending {
            Ending::Clean => assert_eq!(scanned, 0, "a clean close is trusted"),
            Ending::Abandoned { close_failed } | Ending::Crashed { close_failed } => {
                if close_failed {
                    assert!(scanned <= 1, "{scanned} scanned");
                } else {
                    assert_eq!(scanned, 1, "only the tail is scanned");
                }
            }
        }
    }

    /// A read at any offset inside a batch, with room for nothing more, returns that batch: the
    /// indexes agree with the log.
    async fn check_index(&mut self, log: &PartitionLog) {
        for (base, bytes) in self.model.served() {
            let inside = base + self.rng.range(0, last_offset_delta(bytes) as u64 + 1) as i64;
            let got = log.read(inside, 0).await.unwrap();
            assert_eq!(got[..], bytes[..], "read at {inside}");
        }
        for _ in 0..3 {
            self.check_timestamp_lookup(log).await;
        }
    }
}

/// The whole log from `start` to `end`, read batch by batch; checks the offsets are dense.
async fn read_all(log: &PartitionLog, start: i64, end: i64) -> Vec<(i64, Vec<u8>)> {
    let mut offset = start;
    let mut batches = Vec::new();
    while offset < end {
        let got = split_batches(&log.read(offset, 1 << 20).await.unwrap());
        for (base, bytes) in got {
            assert_eq!(base, offset, "dense offsets");
            offset = base + last_offset_delta(&bytes) + 1;
            batches.push((base, bytes));
        }
    }
    assert_eq!(offset, end);
    batches
}

/// Operations a truncation across segments takes at most (reads, syncs, unlinks, the cut): the
/// crash test below fails each of them in turn, and ends once one runs through unfailed.
const TRUNCATION_OPERATIONS_MAX: u64 = 64;

/// A crash at any step of `truncate_to` (the operation after `after` successful ones fails, then
/// the power goes): the reopened log is the old one or the truncated one, never a mix and never
/// short of a batch below the offset; it is the truncated one if the call returned Ok; appends
/// after it read back in order across one more restart.
#[test]
fn crashes_inside_a_truncation_leave_the_old_or_the_truncated_log() {
    use std::sync::{Arc, Mutex};
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    for after in 0..TRUNCATION_OPERATIONS_MAX {
        let outcomes_in_case = outcomes.clone();
        run(move || async move {
            let outcome = truncation_crash_case(after).await;
            outcomes_in_case.lock().unwrap().push(outcome);
        });
        let outcomes = outcomes.lock().unwrap();
        if outcomes.last() == Some(&TruncationOutcome::Completed) {
            // Both ends of the crash window were reached: a crash before the marker kept the
            // old log, one after it was finished by the reopen.
            assert!(outcomes.contains(&TruncationOutcome::CrashedOld));
            assert!(outcomes.contains(&TruncationOutcome::CrashedTruncated));
            return;
        }
    }
    panic!("a truncation took more than {TRUNCATION_OPERATIONS_MAX} operations");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TruncationOutcome {
    /// The fault came first; the reopen found the old log.
    CrashedOld,
    /// The fault came first; the reopen found the truncated log.
    CrashedTruncated,
    /// The truncation ran through without meeting the fault.
    Completed,
}

/// One crash case: truncation to offset 6 of a synced nine-batch log, failing from the
/// operation after `after` on, then a crash and a reopen.
async fn truncation_crash_case(after: u64) -> TruncationOutcome {
    let dir = TestDir::new("truncation-crash");
    let partition = dir.partition();
    let config = LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    };
    let io = FaultIo::new();
    let storage = context();
    let open = |io: &FaultIo| {
        let io: Rc<dyn storage::io::LogIo> = Rc::new(io.clone());
        PartitionLog::open_with_io(&storage, &partition, config.clone(), io)
    };
    let log = open(&io).await.unwrap();
    // Two-record batches of ~1500 bytes, two per segment: offsets 0..18 in five segments.
    for index in 0..9u8 {
        let records = [record(0, 700, index), record(1, 700, index)];
        log.append(validated(encode_batch(&records))).await.unwrap();
    }
    log.sync_to(i64::MAX).await.unwrap();
    let old = read_all(&log, 0, 18).await;
    let truncated = old[..3].to_vec();
    io.inject(FaultPlan {
        fault: Fault::Errno(EIO),
        operations: Operations::All,
        after,
        count: u64::MAX,
    });
    let result = log.truncate_to(6).await;
    let faulted = io.injected() > 0;
    drop(log);
    io.crash(CrashOptions {
        torn_blocks_kept: 0,
        unsynced_files_lost: true,
    })
    .unwrap();
    let log = open(&FaultIo::new()).await.unwrap();
    let recovered = read_all(&log, 0, log.log_end_offset()).await;
    assert!(
        recovered == old || recovered == truncated,
        "after {after}: {} batches recovered",
        recovered.len()
    );
    if result.is_ok() {
        assert_eq!(
            recovered, truncated,
            "after {after}: an Ok truncation was lost"
        );
    }
    let outcome = match (faulted, recovered == old) {
        (false, _) => TruncationOutcome::Completed,
        (true, true) => TruncationOutcome::CrashedOld,
        (true, false) => TruncationOutcome::CrashedTruncated,
    };
    let mut expected = recovered;
    let end = log.log_end_offset();
    let info = log
        .append(validated(encode_batch(&[record(2, 700, 99)])))
        .await
        .unwrap();
    assert_eq!(info.base_offset, end);
    expected.push((end, stored(&encode_batch(&[record(2, 700, 99)]), end)));
    log.close().await.unwrap();
    let log = open(&FaultIo::new()).await.unwrap();
    assert_eq!(read_all(&log, 0, end + 1).await, expected);
    log.close().await.unwrap();
    outcome
}
