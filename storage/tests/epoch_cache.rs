//! The leader-epoch cache and its checkpoint (`leader-epoch-checkpoint`): after a crash at
//! every step around a new epoch's first append and around `truncate_to`, the reopened cache is
//! exactly what the batches in the log say (an entry per epoch that has batches, none at or past
//! the log end); a missing or damaged checkpoint is rebuilt from the batch headers; a new
//! leader's assigned epoch and OffsetForLeaderEpoch's end offsets follow Kafka.

mod common;

use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use storage::fault::{CrashOptions, Fault, FaultIo, FaultPlan, Operations, EIO};
use storage::{LogConfig, PartitionLog, ValidatedBatches};

const CHECKPOINT: &str = "leader-epoch-checkpoint";

/// Segments of 4096 bytes hold two of the ~1500-byte batches below: a third one rolls.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

/// A batch of two 700-byte records, stamped with `epoch` when appended.
fn batch(epoch: i32, fill: u8) -> ValidatedBatches {
    let records = [record(0, 700, fill), record(1, 700, fill)];
    ValidatedBatches::validate(Bytes::from(encode_batch(&records)))
        .unwrap()
        .with_leader_epoch(epoch)
}

async fn append(log: &PartitionLog, epochs: &[i32]) {
    for (i, epoch) in epochs.iter().enumerate() {
        log.append(batch(*epoch, i as u8)).await.unwrap();
    }
}

/// What the batches in the log say the cache is: Kafka's rule over every batch in order, the
/// first entry clamped to the log start.
async fn epochs_of_batches(log: &PartitionLog) -> Vec<(i32, i64)> {
    let mut entries: Vec<(i32, i64)> = Vec::new();
    for (base, stored) in read_all(log).await {
        let epoch = record_batch::check_integrity(&stored)
            .unwrap()
            .partition_leader_epoch;
        if epoch < 0 || entries.last().is_some_and(|l| l.0 == epoch && l.1 <= base) {
            continue;
        }
        entries.retain(|e| e.0 < epoch && e.1 < base);
        entries.push((epoch, base));
    }
    if let Some(first) = entries.first_mut() {
        first.1 = first.1.max(log.log_start_offset());
    }
    entries
}

async fn check_matches_batches(log: &PartitionLog, what: &str) {
    let cached = log.leader_epochs();
    assert_eq!(cached, epochs_of_batches(log).await, "{what}");
    let end = log.log_end_offset();
    assert!(
        cached.iter().all(|e| e.1 < end),
        "{what}: {cached:?} past {end}"
    );
}

async fn open_faulty(partition: &Path, io: &FaultIo) -> PartitionLog {
    let io: Rc<FaultIo> = Rc::new(io.clone());
    PartitionLog::open_with_io(&context(), partition, config(), io)
        .await
        .unwrap()
}

/// Runs `steps` with every I/O operation from the `step`-th on failing, for every step until
/// one runs to the end, then crashes (each of two ways) and checks the reopened cache.
async fn crash_at_every_step<F, Fut>(name: &str, prepare: &[i32], steps: F)
where
    F: Fn(Rc<PartitionLog>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for torn_blocks_kept in [0, u64::MAX] {
        for step in 0.. {
            let dir = TestDir::new(&format!("{name}-{step}-{torn_blocks_kept}"));
            let partition = dir.partition();
            let io = FaultIo::new();
            let log = open_faulty(&partition, &io).await;
            append(&log, prepare).await;
            log.sync_to(i64::MAX).await.unwrap();
            io.inject(FaultPlan {
                fault: Fault::Errno(EIO),
                operations: Operations::All,
                after: step,
                count: u64::MAX,
            });
            let log = Rc::new(log);
            steps(Rc::clone(&log)).await;
            let finished = io.injected() == 0;
            drop(log);
            let options = CrashOptions {
                torn_blocks_kept,
                unsynced_files_lost: true,
            };
            io.crash(options).unwrap();
            let what = format!("{name}: crash at step {step}, {options:?}");
            let log = PartitionLog::open(&context(), &partition, config())
                .await
                .unwrap();
            check_matches_batches(&log, &what).await;
            // The reopened log goes on: a later epoch's append is cached and survives a crash.
            let latest = log.latest_epoch().unwrap_or(0);
            log.append(batch(latest + 1, 99)).await.unwrap();
            check_matches_batches(&log, &what).await;
            drop(log);
            let log = PartitionLog::open(&context(), &partition, config())
                .await
                .unwrap();
            check_matches_batches(&log, &what).await;
            log.close().await.unwrap();
            if finished {
                break;
            }
        }
    }
}

#[test]
fn a_crash_at_every_step_around_a_new_epochs_first_append_leaves_the_cache_matching_the_log() {
    run(|| async {
        crash_at_every_step("epoch-append", &[0, 0, 1], |log| async move {
            // Epoch 3's first batch (a new checkpoint first), another, a sync, then epoch 5.
            for (i, epoch) in [3, 3, 5, 5].into_iter().enumerate() {
                let _ = log.append(batch(epoch, i as u8)).await;
                let _ = log.sync_to(i64::MAX).await;
            }
        })
        .await;
    });
}

#[test]
fn a_crash_at_every_step_around_a_truncation_leaves_the_cache_matching_the_log() {
    run(|| async {
        // Offsets 0..4 epoch 0, 4..8 epoch 2, 8..12 epoch 4; cut at 6, inside epoch 2.
        crash_at_every_step("epoch-truncate", &[0, 0, 2, 2, 4, 4], |log| async move {
            let _ = log.truncate_to(6).await;
            // The same epoch again past the cut entry of epoch 4: its stale entry must not
            // come back; then a new epoch.
            for (i, epoch) in [2, 2, 2].into_iter().enumerate() {
                let _ = log.append(batch(epoch, i as u8)).await;
            }
            let _ = log.sync_to(i64::MAX).await;
            let _ = log.append(batch(6, 3)).await;
            let _ = log.sync_to(i64::MAX).await;
        })
        .await;
    });
}

#[test]
fn a_missing_or_damaged_checkpoint_is_rebuilt_from_the_batches() {
    run(|| async {
        let dir = TestDir::new("epoch-rebuild");
        let partition = dir.partition();
        let log = PartitionLog::open(&context(), &partition, config())
            .await
            .unwrap();
        append(&log, &[0, 0, 3, 3, 3, 7]).await;
        let expected = vec![(0, 0), (3, 4), (7, 10)];
        assert_eq!(log.leader_epochs(), expected);
        log.close().await.unwrap();
        let checkpoint = partition.join(CHECKPOINT);
        std::fs::remove_file(&checkpoint).unwrap();
        let log = PartitionLog::open(&context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.leader_epochs(), expected);
        log.close().await.unwrap();
        assert!(checkpoint.exists(), "the rebuilt cache is checkpointed");
        let mut bytes = std::fs::read(&checkpoint).unwrap();
        bytes[20] ^= 0x40;
        std::fs::write(&checkpoint, &bytes).unwrap();
        let log = PartitionLog::open(&context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.leader_epochs(), expected);
        log.close().await.unwrap();
        std::fs::write(&checkpoint, b"garbage").unwrap();
        let log = PartitionLog::open(&context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.leader_epochs(), expected);
        log.close().await.unwrap();
    });
}

#[test]
fn an_assigned_epoch_starts_at_the_log_end_and_end_offsets_follow_kafka() {
    run(|| async {
        let dir = TestDir::new("epoch-assign");
        let partition = dir.partition();
        let log = PartitionLog::open(&context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.latest_epoch(), None);
        assert_eq!(log.end_offset_for_epoch(0), None);
        append(&log, &[1, 1, 4]).await;
        assert_eq!(log.assign_epoch(6).await.unwrap(), 6);
        assert_eq!(log.leader_epochs(), [(1, 0), (4, 4), (6, 6)]);
        assert_eq!(log.end_offset_for_epoch(6), Some((6, 6)));
        assert_eq!(log.end_offset_for_epoch(5), Some((4, 6)));
        assert_eq!(log.end_offset_for_epoch(4), Some((4, 6)));
        assert_eq!(log.end_offset_for_epoch(2), Some((1, 4)));
        assert_eq!(log.end_offset_for_epoch(0), Some((0, 0)));
        assert_eq!(log.end_offset_for_epoch(7), None);
        assert_eq!(log.end_offset_for_epoch(-1), None);
        append(&log, &[6]).await;
        assert_eq!(log.end_offset_for_epoch(6), Some((6, 8)));
        // A log start moved into epoch 4 hides epoch 1.
        log.delete_records(5).await.unwrap();
        assert_eq!(log.leader_epochs(), [(4, 5), (6, 6)]);
        assert_eq!(log.end_offset_for_epoch(1), Some((1, 5)));
        // A crash without a sync: only synced batches stay, with their entries.
        log.sync_to(i64::MAX).await.unwrap();
        assert_eq!(log.assign_epoch(9).await.unwrap(), 8);
        drop(log);
        let log = PartitionLog::open(&context(), &partition, config())
            .await
            .unwrap();
        // The entry assigned at the log end without a batch is not kept across the restart.
        assert_eq!(log.leader_epochs(), [(4, 5), (6, 6)]);
        check_matches_batches(&log, "after the restart").await;
        // A lower epoch after an assigned higher one replaces it (a deposed leader's append).
        log.assign_epoch(9).await.unwrap();
        append(&log, &[8]).await;
        assert_eq!(log.leader_epochs(), [(4, 5), (6, 6), (8, 8)]);
        check_matches_batches(&log, "a lower epoch after an assigned one").await;
        // Truncating at the log end drops an entry assigned there.
        log.assign_epoch(9).await.unwrap();
        log.truncate_to(10).await.unwrap();
        assert_eq!(log.latest_epoch(), Some(8));
        log.close().await.unwrap();
    });
}

/// A follower's batches as the leader wrote them: two records each from `base`, carrying `epoch`.
fn replicated(batches: &[(i64, i32)]) -> ValidatedBatches {
    let mut bytes = Vec::new();
    for (i, (base, epoch)) in batches.iter().enumerate() {
        let records = [record(0, 700, i as u8), record(1, 700, i as u8)];
        let mut batch = encode_batch(&records);
        record_batch::set_base_offset(&mut batch, *base);
        record_batch::set_partition_leader_epoch(&mut batch, *epoch);
        bytes.extend_from_slice(&batch);
    }
    ValidatedBatches::validate(Bytes::from(bytes)).unwrap()
}

#[test]
fn a_crash_at_every_step_of_replicated_appends_spanning_epochs_leaves_the_cache_matching_the_log() {
    run(|| async {
        // The follower has epoch 0 at 0..4; the leader's batches bring epochs 1, 1, 3 in one
        // append, then 3 and 4 in another.
        crash_at_every_step("epoch-replicated", &[0, 0], |log| async move {
            let _ = log
                .append_replicated(replicated(&[(4, 1), (6, 1), (8, 3)]))
                .await;
            let _ = log.sync_to(i64::MAX).await;
            let _ = log.append_replicated(replicated(&[(10, 3), (12, 4)])).await;
            let _ = log.sync_to(i64::MAX).await;
        })
        .await;
    });
}
