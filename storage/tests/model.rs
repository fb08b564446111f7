//! Randomized model test: random appends, reads, timestamp lookups, syncs, reopens, abandoned
//! (unclosed) logs and damaged tails against a `Vec` of batches. Set `STORAGE_MODEL_SEED` to
//! replay one case; a failing case prints its seed.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::*;
use storage::{LogConfig, PartitionLog, StorageError, ValidatedBatches};

const CASES: u64 = 200;
const OPERATIONS_PER_CASE: u64 = 40;

/// The reference: every batch in the log, in offset order, as stored.
struct Model {
    batches: Vec<(i64, Vec<u8>)>,
}

impl Model {
    fn end_offset(&self) -> i64 {
        self.batches
            .last()
            .map_or(0, |(base, bytes)| base + last_offset_delta(bytes) + 1)
    }

    fn batch_holding(&self, offset: i64) -> usize {
        self.batches
            .partition_point(|(base, bytes)| base + last_offset_delta(bytes) < offset)
    }
}

fn random_batch(rng: &mut Rng) -> Vec<u8> {
    let record_count = rng.range(1, 6) as usize;
    let value_len_max = if rng.chance(5) { 3000 } else { 700 };
    let records: Vec<TestRecord> = (0..record_count)
        .map(|_| {
            record(
                rng.range(0, 1000) as i64,
                rng.range(0, value_len_max) as usize,
                rng.next_u64() as u8,
            )
        })
        .collect();
    encode_batch(&records)
}

#[test]
fn random_operations_match_the_model() {
    let seeds = model_seeds("STORAGE_MODEL_SEED", CASES);
    run(move || async move {
        for seed in seeds {
            let reporter = SeedReporter::start(seed, "STORAGE_MODEL_SEED");
            run_case(seed).await;
            drop(reporter);
        }
    });
}

async fn run_case(seed: u64) {
    let mut rng = Rng::new(seed);
    let dir = TestDir::new("model");
    let config = LogConfig {
        segment_bytes: rng.range(1024, 8192),
        index_interval_bytes: rng.range(64, 2048),
        segment_preallocate_bytes: rng.range(0, 3) * 4096,
        ..LogConfig::default()
    };
    // The tail cache off, holding the last few batches, or all of them: reads come from memory,
    // from disk, or from either depending on the offset.
    let tail_cache_bytes = [0, 4096, 1 << 20][rng.range(0, 3) as usize];
    crate::common::context().set_tail_cache_bytes_max(tail_cache_bytes);
    let partition = dir.partition();
    let mut log = PartitionLog::open(&crate::common::context(), &partition, config.clone())
        .await
        .unwrap();
    let mut model = Model {
        batches: Vec::new(),
    };
    for _ in 0..OPERATIONS_PER_CASE {
        let choice = rng.range(0, 100);
        if choice < 40 {
            append(&log, &mut model, &mut rng).await;
        } else if choice < 47 {
            append_concurrently(&log, &mut model, &mut rng).await;
        } else if choice < 67 {
            check_read(&log, &model, &partition, &mut rng).await;
        } else if choice < 75 {
            check_timestamp_lookup(&log, &model, &mut rng).await;
        } else if choice < 82 {
            let offset = rng.range(0, model.end_offset() as u64 + 2) as i64;
            log.sync_to(offset).await.unwrap();
            assert!(log.synced_offset() > offset.min(model.end_offset() - 1));
        } else if choice < 88 {
            log.close().await.unwrap();
            log = reopen_and_check(&partition, &config, &model).await;
            assert_eq!(
                log.segments_scanned_at_open(),
                0,
                "a clean close is trusted"
            );
        } else if choice < 92 {
            // Abandon without close, like a crash after the writes completed: the active
            // segment keeps its zero padding, which recovery must drop.
            drop(log);
            log = reopen_and_check(&partition, &config, &model).await;
            assert_eq!(
                log.segments_scanned_at_open(),
                1,
                "only the tail is scanned"
            );
        } else if choice < 96 {
            if rng.chance(50) {
                log.close().await.unwrap();
            } else {
                drop(log);
            }
            damage_sealed_index(&partition, &mut rng);
            log = reopen_and_check(&partition, &config, &model).await;
        } else {
            log.close().await.unwrap();
            damage_tail(&partition, &mut model, &mut rng);
            log = reopen_and_check(&partition, &config, &model).await;
        }
    }
    check_everything(&log, &model).await;
    log.delete().await.unwrap();
}

async fn append(log: &PartitionLog, model: &mut Model, rng: &mut Rng) {
    let batches: Vec<Vec<u8>> = (0..rng.range(1, 4)).map(|_| random_batch(rng)).collect();
    let validated = ValidatedBatches::validate(Bytes::from(batches.concat())).unwrap();
    let info = log.append(validated).await.unwrap();
    assert_eq!(info.base_offset, model.end_offset());
    let mut offset = info.base_offset;
    for batch in &batches {
        model.batches.push((offset, stored(batch, offset)));
        offset += last_offset_delta(batch) + 1;
    }
    assert_eq!(info.last_offset, offset - 1);
    assert_eq!(log.log_end_offset(), model.end_offset());
}

/// Several tasks append at once; the offsets they get decide the model's order.
async fn append_concurrently(log: &PartitionLog, model: &mut Model, rng: &mut Rng) {
    let batches: Vec<Vec<u8>> = (0..rng.range(2, 6)).map(|_| random_batch(rng)).collect();
    let mut appends = Vec::new();
    for batch in &batches {
        let validated = ValidatedBatches::validate(Bytes::copy_from_slice(batch)).unwrap();
        appends.push(Box::pin(log.append(validated)));
    }
    let infos = join_all(appends).await;
    let mut placed: Vec<(i64, Vec<u8>)> = infos
        .into_iter()
        .zip(&batches)
        .map(|(info, batch)| {
            let info = info.unwrap();
            (info.base_offset, stored(batch, info.base_offset))
        })
        .collect();
    placed.sort_by_key(|(base, _)| *base);
    for (base, bytes) in placed {
        assert_eq!(base, model.end_offset());
        model.batches.push((base, bytes));
    }
    assert_eq!(log.log_end_offset(), model.end_offset());
}

async fn check_read(log: &PartitionLog, model: &Model, partition: &Path, rng: &mut Rng) {
    let end = model.end_offset();
    let offset = rng.range(0, end as u64 + 3) as i64 - 1;
    let max_bytes = rng.range(0, 5000) as usize;
    let result = log.read(offset, max_bytes).await;
    if offset < 0 || offset > end {
        assert!(
            matches!(result, Err(StorageError::OffsetOutOfRange { .. })),
            "offset {offset}: {result:?}"
        );
        return;
    }
    let bytes = result.unwrap();
    if offset == end {
        assert!(bytes.is_empty());
        return;
    }
    let first = model.batch_holding(offset);
    let got = split_batches(&bytes);
    assert!(!got.is_empty());
    assert_eq!(
        got[..],
        model.batches[first..first + got.len()],
        "read at {offset}"
    );
    assert!(got.len() == 1 || bytes.len() <= max_bytes);
    // Stopping early is allowed only when the next batch does not fit or starts a segment.
    if let Some((next_base, next_bytes)) = model.batches.get(first + got.len()) {
        let fits = bytes.len() + next_bytes.len() <= max_bytes;
        let starts_segment = segment_files(partition)
            .iter()
            .any(|(base, _)| base == next_base);
        assert!(
            !fits || starts_segment,
            "read at {offset} stopped before batch {next_base}"
        );
    }
}

async fn check_timestamp_lookup(log: &PartitionLog, model: &Model, rng: &mut Rng) {
    let target = rng.range(0, 1100) as i64;
    let want = model
        .batches
        .iter()
        .find_map(|(base, bytes)| first_at_or_after(*base, bytes, target));
    assert_eq!(
        log.offset_for_timestamp(target).await.unwrap(),
        want,
        "timestamp {target}"
    );
}

async fn reopen_and_check(partition: &Path, config: &LogConfig, model: &Model) -> PartitionLog {
    let log = PartitionLog::open(&crate::common::context(), partition, config.clone())
        .await
        .unwrap();
    check_everything(&log, model).await;
    log
}

async fn check_everything(log: &PartitionLog, model: &Model) {
    assert_eq!(log.log_start_offset(), 0);
    assert_eq!(log.log_end_offset(), model.end_offset());
    let mut offset = 0;
    let mut batches = Vec::new();
    while offset < model.end_offset() {
        let bytes = log.read(offset, 1 << 20).await.unwrap();
        let got = split_batches(&bytes);
        let (last_base, last) = got.last().unwrap();
        offset = last_base + last_offset_delta(last) + 1;
        batches.extend(got);
    }
    assert_eq!(batches, model.batches);
    assert!(log.read(model.end_offset(), 100).await.unwrap().is_empty());
}

/// Damages the index file of a random sealed segment: removes it, cuts it, flips a byte, or
/// replaces it with another segment's index. Indexes are derived: the log must not change.
fn damage_sealed_index(partition: &Path, rng: &mut Rng) {
    let segments = segment_files(partition);
    if segments.len() < 2 {
        return;
    }
    let victim = rng.range(0, segments.len() as u64 - 1) as usize;
    let path = index_path_of(&segments[victim].1);
    let Ok(mut bytes) = std::fs::read(&path) else {
        return;
    };
    match rng.range(0, 4) {
        0 => std::fs::remove_file(&path).unwrap(),
        1 => {
            bytes.truncate(rng.range(0, bytes.len() as u64) as usize);
            std::fs::write(&path, bytes).unwrap();
        }
        2 => {
            let at = rng.range(0, bytes.len() as u64) as usize;
            bytes[at] ^= 1 << rng.range(0, 8);
            std::fs::write(&path, bytes).unwrap();
        }
        _ => {
            let other = rng.range(0, segments.len() as u64 - 1) as usize;
            if let Ok(other) = std::fs::read(index_path_of(&segments[other].1)) {
                std::fs::write(&path, other).unwrap();
            }
        }
    }
}

/// Damages the tail of the last segment of a closed log as a crash or bad disk might, and drops
/// from the model every batch the damage reaches.
fn damage_tail(partition: &Path, model: &mut Model, rng: &mut Rng) {
    // A crash leaves no clean-shutdown marker; with one, the last segment would be trusted.
    forget_clean_shutdown(partition);
    let (last_base, path) = segment_files(partition).pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let first_in_last = model.batches.partition_point(|(base, _)| *base < last_base);
    let in_file = model.batches.len() - first_in_last;
    assert_eq!(
        split_batches(&bytes).len(),
        in_file,
        "closed segment holds exactly its batches"
    );
    // Start position of each batch of the last segment.
    let mut starts = Vec::new();
    let mut position = 0usize;
    for (_, batch) in &model.batches[first_in_last..] {
        starts.push(position);
        position += batch.len();
    }
    let kind = rng.range(0, 4);
    let kept = if kind == 0 || bytes.is_empty() {
        let garbage: Vec<u8> = (0..rng.range(1, 2000))
            .map(|_| rng.next_u64() as u8)
            .collect();
        bytes.extend(garbage);
        in_file
    } else if kind == 1 {
        bytes.resize(bytes.len() + rng.range(1, 5000) as usize, 0);
        in_file
    } else if kind == 2 {
        let cut = rng.range(0, bytes.len() as u64) as usize;
        bytes.truncate(cut);
        starts
            .iter()
            .zip(&model.batches[first_in_last..])
            .take_while(|(start, (_, batch))| *start + batch.len() <= cut)
            .count()
    } else {
        // A flipped byte in the last batch: nothing valid follows, so recovery cuts it as a torn
        // write. Damage to an earlier batch is fenced instead (storage/tests/log.rs).
        let last_start = *starts.last().unwrap() as u64;
        let at = rng.range(last_start, bytes.len() as u64) as usize;
        let batch_number = starts.partition_point(|start| *start <= at) - 1;
        if (12..16).contains(&(at - starts[batch_number])) {
            // partitionLeaderEpoch is not covered by the CRC: nothing can detect a flip there.
            return;
        }
        bytes[at] ^= 1 << rng.range(0, 8);
        batch_number
    };
    std::fs::write(&path, bytes).unwrap();
    model.batches.truncate(first_in_last + kept);
}
