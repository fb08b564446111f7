//! Test support: an independent RecordBatch v2 encoder, temp dirs, and an executor runner.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use storage::records::{compress, Codec};

/// Runs `make()` to completion on a fresh glommio executor thread.
pub fn run<F, Fut>(make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            glommio::spawn_local(wake_periodically()).detach();
            make().await
        })
        .unwrap()
        .join()
        .unwrap();
}

/// How often [`wake_periodically`] wakes the executor.
const EXECUTOR_WAKE_INTERVAL_MS: u64 = 20;

/// Wakes the executor every [`EXECUTOR_WAKE_INTERVAL_MS`]. glommio 0.9 can park its executor
/// in `io_uring_enter` while a task queue is still runnable (when the preemption timer fired
/// before the scheduler ran any task, it takes "preempted" for "nothing to run"; fixed upstream
/// by glommio/glommio#53), and then sleeps until some other event arrives. A test executor
/// running only storage work may have no other event for a long time, so a pending timer
/// bounds that sleep. Shards of the broker always have such timers (flush, retention, groups).
async fn wake_periodically() {
    loop {
        glommio::timer::sleep(std::time::Duration::from_millis(EXECUTOR_WAKE_INTERVAL_MS)).await;
    }
}

/// A unique directory under the system temp dir, removed on drop.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(name: &str) -> TestDir {
        TestDir::new_in(&std::env::temp_dir(), name)
    }

    /// A unique directory under `base`, removed on drop.
    pub fn new_in(base: &Path, name: &str) -> TestDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = base.join(format!(
            "sluice-storage-test-{}-{name}-{unique}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        TestDir { path }
    }

    /// The partition directory (not created: `PartitionLog::open` creates it).
    pub fn partition(&self) -> PathBuf {
        self.path.join("topic-0")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A record to encode: timestamp (absolute, ms), key and value.
#[derive(Clone, Debug)]
pub struct TestRecord {
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

pub fn record(timestamp: i64, value_len: usize, fill: u8) -> TestRecord {
    TestRecord {
        timestamp,
        key: Some(vec![fill; 3]),
        value: vec![fill; value_len],
    }
}

pub fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        let byte = (zigzag & 0x7f) as u8;
        zigzag >>= 7;
        if zigzag == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Encodes an uncompressed CreateTime batch as a producer would: baseOffset 0,
/// partitionLeaderEpoch -1, correct CRC-32C.
pub fn encode_batch(records: &[TestRecord]) -> Vec<u8> {
    encode_batch_with(Codec::None, records)
}

/// Encodes a CreateTime batch whose records are compressed with `codec`.
pub fn encode_batch_with(codec: Codec, records: &[TestRecord]) -> Vec<u8> {
    assert!(!records.is_empty());
    let base_timestamp = records[0].timestamp;
    let mut body = Vec::new();
    for (delta, record) in records.iter().enumerate() {
        let mut encoded = vec![0u8]; // attributes
        put_varint(&mut encoded, record.timestamp - base_timestamp);
        put_varint(&mut encoded, delta as i64);
        match &record.key {
            Some(key) => {
                put_varint(&mut encoded, key.len() as i64);
                encoded.extend_from_slice(key);
            }
            None => put_varint(&mut encoded, -1),
        }
        put_varint(&mut encoded, record.value.len() as i64);
        encoded.extend_from_slice(&record.value);
        put_varint(&mut encoded, 0); // headers
        put_varint(&mut body, encoded.len() as i64);
        body.extend_from_slice(&encoded);
    }
    let max_timestamp = records.iter().map(|record| record.timestamp).max().unwrap();
    build_batch(
        codec as i16,
        records.len() as i32 - 1,
        base_timestamp,
        max_timestamp,
        records.len() as i32,
        &compress(codec, &body).expect("compressing in memory"),
    )
}

pub fn build_batch(
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: i32,
    records: &[u8],
) -> Vec<u8> {
    use record_batch::{overwrite_field, BatchFields, HeaderField};
    let fields = BatchFields {
        attributes,
        base_timestamp,
        max_timestamp,
        ..BatchFields::plain(base_timestamp)
    };
    // Encoded with one record, then given the counts asked for (which may disagree on purpose).
    let mut out = record_batch::encode_batch(&fields, 1, records).to_vec();
    overwrite_field(
        &mut out,
        HeaderField::LastOffsetDelta,
        i64::from(last_offset_delta),
    );
    overwrite_field(&mut out, HeaderField::RecordCount, i64::from(record_count));
    record_batch::set_crc(&mut out);
    out
}

/// The batch as storage keeps it: baseOffset assigned, partitionLeaderEpoch 0.
pub fn stored(batch: &[u8], base_offset: i64) -> Vec<u8> {
    let mut out = batch.to_vec();
    record_batch::set_base_offset(&mut out, base_offset);
    record_batch::set_partition_leader_epoch(&mut out, storage::LEADER_EPOCH_DEFAULT);
    out
}

pub fn last_offset_delta(batch: &[u8]) -> i64 {
    let header = record_batch::BatchHeader::parse(batch).unwrap();
    i64::from(header.last_offset_delta)
}

/// Splits concatenated batches into (baseOffset, batch bytes).
pub fn split_batches(mut bytes: &[u8]) -> Vec<(i64, Vec<u8>)> {
    let mut batches = Vec::new();
    while !bytes.is_empty() {
        let header = record_batch::BatchHeader::parse(bytes).expect("a whole batch header");
        let total = header.total_bytes();
        assert!(bytes.len() >= total, "partial batch");
        batches.push((header.base_offset, bytes[..total].to_vec()));
        bytes = &bytes[total..];
    }
    batches
}

/// Segment files of a partition directory, sorted by base offset.
pub fn segment_files(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut files: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?.to_string();
            let base = name.strip_suffix(".log")?.parse::<i64>().ok()?;
            Some((base, path))
        })
        .collect();
    files.sort();
    files
}

/// A tiny deterministic xorshift64* generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[low, high)`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low < high);
        low + self.next_u64() % (high - low)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 100) < percent
    }
}

/// Removes the clean-shutdown marker `close` left, so the next open treats the log as after a
/// crash (which leaves none).
pub fn forget_clean_shutdown(partition: &Path) {
    std::fs::remove_file(partition.join("clean-shutdown")).unwrap();
}

/// The index file next to a segment file.
pub fn index_path_of(segment_path: &Path) -> PathBuf {
    segment_path.with_extension("index")
}

/// A file (set by scripts/test) to which each randomized case appends `started VAR=seed` when it
/// begins and `finished VAR=seed` when it ends, so that a run the timeout kills names the seeds
/// of the cases that hung.
pub const SEED_LOG_VARIABLE: &str = "SLUICE_SEED_LOG";
/// Multiplies the case count of every randomized test (CI raises it when it has the time); the
/// regression seeds run whatever it says.
pub const CASES_FACTOR_VARIABLE: &str = "SLUICE_MODEL_CASES_FACTOR";

fn log_seed(event: &str, replay_variable: &str, seed: u64) {
    let Some(path) = std::env::var_os(SEED_LOG_VARIABLE) else {
        return;
    };
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the seed log opens");
    // One short write per line, so lines from concurrent cases do not interleave.
    std::io::Write::write_all(
        &mut log,
        format!("{event} {replay_variable}={seed}\n").as_bytes(),
    )
    .expect("the seed log is written");
}

/// Prints the seed, and the variable that replays it, if the case panics; notes the case in the
/// seed log (see [`SEED_LOG_VARIABLE`]).
pub struct SeedReporter {
    seed: u64,
    replay_variable: &'static str,
}

impl SeedReporter {
    pub fn start(seed: u64, replay_variable: &'static str) -> SeedReporter {
        log_seed("started", replay_variable, seed);
        SeedReporter {
            seed,
            replay_variable,
        }
    }
}

impl Drop for SeedReporter {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "model test failed with seed {} (rerun with {}={})",
                self.seed, self.replay_variable, self.seed
            );
        } else {
            log_seed("finished", self.replay_variable, self.seed);
        }
    }
}

/// The seeds to run: the one in `replay_variable` if it is set, else `cases` seeds (times
/// [`CASES_FACTOR_VARIABLE`]) from the clock (a different run each time, each failure printed by
/// a [`SeedReporter`]).
pub fn model_seeds(replay_variable: &str, cases: u64) -> Vec<u64> {
    let factor: u64 = std::env::var(CASES_FACTOR_VARIABLE)
        .map_or(1, |factor| factor.parse().expect("a case factor is a u64"));
    let cases = cases * factor;
    match std::env::var(replay_variable) {
        Ok(seed) => vec![seed.parse().expect("a seed is a u64")],
        Err(_) => {
            let base = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            (0..cases).map(|case| base.wrapping_add(case)).collect()
        }
    }
}

/// Polls all futures concurrently on this task until all complete.
pub async fn join_all<F: Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut pending = futures.len();
    std::future::poll_fn(|cx| {
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                if let std::task::Poll::Ready(value) = std::pin::Pin::new(&mut *future).poll(cx) {
                    *output = Some(value);
                    pending -= 1;
                }
            }
        }
        if pending == 0 {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// The first record at or after `target` in a batch of the test encoder (fixed layout: varints
/// as written by `encode_batch`), as (offset, timestamp).
pub fn first_at_or_after(base: i64, batch: &[u8], target: i64) -> Option<(i64, i64)> {
    let header = record_batch::BatchHeader::parse(batch).expect("a test batch parses");
    let (base_timestamp, record_count) = (header.base_timestamp, header.record_count);
    let mut position = record_batch::BATCH_HEADER_BYTES;
    for _ in 0..record_count {
        let length = read_varint(batch, &mut position);
        let record_end = position + length as usize;
        position += 1; // attributes
        let timestamp = base_timestamp + read_varint(batch, &mut position);
        let offset_delta = read_varint(batch, &mut position);
        if timestamp >= target {
            return Some((base + offset_delta, timestamp));
        }
        position = record_end;
    }
    None
}

fn read_varint(bytes: &[u8], position: &mut usize) -> i64 {
    let mut value = 0u64;
    let mut shift = 0;
    loop {
        let byte = bytes[*position];
        *position += 1;
        value |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte & 0x80 == 0 {
            return ((value >> 1) as i64) ^ -((value & 1) as i64);
        }
    }
}

/// The batch's maxTimestamp field.
pub fn max_timestamp(batch: &[u8]) -> i64 {
    i64::from_be_bytes(batch[35..43].try_into().unwrap())
}

/// Asserts `result` is `OffsetOutOfRange` reporting `log_start` as the log start.
pub fn assert_out_of_range<T: std::fmt::Debug>(
    result: Result<T, storage::StorageError>,
    log_start: i64,
) {
    match result {
        Err(storage::StorageError::OffsetOutOfRange {
            log_start_offset, ..
        }) => assert_eq!(log_start_offset, log_start),
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
}

thread_local! {
    static CONTEXT: storage::StorageContext = storage::StorageContext::default();
}

/// The storage context of the test's executor thread: one per thread, as a broker shard has one.
pub fn context() -> storage::StorageContext {
    CONTEXT.with(|context| context.clone())
}

/// Appends each batch in turn, returning the stored form of every batch with its base offset.
pub async fn append_all(log: &storage::PartitionLog, batches: &[Vec<u8>]) -> Vec<(i64, Vec<u8>)> {
    let mut stored_batches = Vec::new();
    for batch in batches {
        let validated =
            storage::ValidatedBatches::validate(bytes::Bytes::copy_from_slice(batch)).unwrap();
        let info = log.append(validated).await.unwrap();
        stored_batches.push((info.base_offset, stored(batch, info.base_offset)));
    }
    stored_batches
}

/// The whole log, read batch by batch from the log start.
pub async fn read_all(log: &storage::PartitionLog) -> Vec<(i64, Vec<u8>)> {
    let mut offset = log.log_start_offset();
    let mut batches = Vec::new();
    while offset < log.log_end_offset() {
        let got = split_batches(&log.read(offset, 1 << 20).await.unwrap());
        let (last_base, last) = got.last().unwrap();
        offset = last_base + last_offset_delta(last) + 1;
        batches.extend(got);
    }
    batches
}
