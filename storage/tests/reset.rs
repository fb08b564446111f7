//! `PartitionLog::reset_to`: what a follower does when its leader's log start passed its log
//! end. The log empties and starts again at the offset (log start, log end, high watermark),
//! takes the leader's batches from there, and stays so across a clean and an unclean restart.
//! A crash at any step of the reset reopens a valid log: the old one, the old one started at its
//! end (empty), or the new one, which it is if the reset returned Ok.

mod common;

use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use storage::fault::{CrashOptions, Fault, FaultIo, FaultPlan, Operations, EIO};
use storage::{LogConfig, PartitionLog, StorageError, ValidatedBatches};

/// Segments of 4096 bytes hold two of the ~1500-byte batches below: a third one rolls.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

async fn open(partition: &Path, io: &FaultIo) -> PartitionLog {
    PartitionLog::open_with_io(&context(), partition, config(), Rc::new(io.clone()))
        .await
        .unwrap()
}

/// Two-record batches of ~1500 bytes: offsets 0..2 * count, two batches per segment.
async fn fill(log: &PartitionLog, count: u8) -> Vec<(i64, Vec<u8>)> {
    let batches: Vec<Vec<u8>> = (0..count)
        .map(|i| encode_batch(&[record(0, 700, i), record(1, 700, i)]))
        .collect();
    let stored = append_all(log, &batches).await;
    log.sync_to(i64::MAX).await.unwrap();
    stored
}

/// A leader's stored two-record batch at `base`, leader epoch `epoch`.
fn leader_batch(base: i64, epoch: i32, fill: u8) -> Vec<u8> {
    let mut batch = encode_batch(&[record(5, 300, fill), record(6, 300, fill)]);
    record_batch::set_base_offset(&mut batch, base);
    record_batch::set_partition_leader_epoch(&mut batch, epoch);
    batch
}

async fn append_leader_batch(log: &PartitionLog, base: i64, fill: u8) -> (i64, Vec<u8>) {
    let batch = leader_batch(base, 7, fill);
    let validated = ValidatedBatches::validate(Bytes::from(batch.clone())).unwrap();
    let info = log.append_replicated(validated).await.unwrap();
    assert_eq!(info.base_offset, base);
    (base, batch)
}

/// (log start, log end, high watermark).
fn bounds(log: &PartitionLog) -> (i64, i64, i64) {
    (
        log.log_start_offset(),
        log.log_end_offset(),
        log.high_watermark(),
    )
}

#[test]
fn a_reset_log_starts_empty_at_the_offset_and_takes_the_leaders_batches_across_restarts() {
    run(|| async {
        let dir = TestDir::new("reset");
        let partition = dir.partition();
        let io = FaultIo::new();
        let log = open(&partition, &io).await;
        fill(&log, 9).await;
        log.advance_high_watermark(18);
        assert_eq!(segment_files(&partition).len(), 5);
        log.reset_to(30).await.unwrap();
        assert_eq!(bounds(&log), (30, 30, 30));
        assert_eq!(log.synced_offset(), 30);
        assert_eq!(log.latest_epoch(), None, "the epoch cache empties");
        let bases: Vec<i64> = segment_files(&partition).iter().map(|(b, _)| *b).collect();
        assert_eq!(bases, [30]);
        assert!(matches!(
            log.read(10, 1 << 20).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        let mut expected = vec![append_leader_batch(&log, 30, 1).await];
        assert_eq!(log.latest_epoch(), Some(7));
        assert_eq!(read_all(&log).await, expected);
        log.close().await.unwrap();
        let log = open(&partition, &io).await;
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (30, 32));
        assert_eq!(read_all(&log).await, expected);
        // An unclean restart after a synced append.
        expected.push(append_leader_batch(&log, 32, 2).await);
        log.sync_to(i64::MAX).await.unwrap();
        drop(log);
        let log = open(&partition, &io).await;
        assert_eq!(read_all(&log).await, expected);
        // At the base offset of one of its own segments, and at its own end: empty there.
        fill_from(&log, 34, 4).await;
        log.reset_to(36).await.unwrap();
        assert_eq!(bounds(&log), (36, 36, 36));
        log.reset_to(36).await.unwrap();
        assert_eq!(bounds(&log), (36, 36, 36));
        let expected = vec![append_leader_batch(&log, 36, 3).await];
        log.close().await.unwrap();
        let log = open(&partition, &io).await;
        assert_eq!(read_all(&log).await, expected);
        assert!(log.reset_to(-1).await.is_err());
        log.close().await.unwrap();
    });
}

/// Appends `count` leader batches from `base`.
async fn fill_from(log: &PartitionLog, base: i64, count: i64) {
    for i in 0..count {
        append_leader_batch(log, base + 2 * i, 40 + i as u8).await;
    }
}

/// Operations a reset of a five-segment log takes at most: the crash test below fails each of
/// them in turn, and ends once one runs through unfailed.
const RESET_OPERATIONS_MAX: u64 = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResetOutcome {
    /// The fault came first; the reopen found the old log.
    CrashedOld,
    /// The fault came first; the reopen found the old log started at its end (empty).
    CrashedOldEmptied,
    /// The fault came first; the reopen found the new log.
    CrashedNew,
    /// The reset ran through without meeting the fault.
    Completed,
}

/// A crash at any step of `reset_to` (the operation after `after` successful ones fails, then
/// the power goes, unsynced files lost): the reopened log is the old one, the old one emptied
/// at its end, or the new one, and the new one if the call returned Ok; it takes appends at its
/// end, which read back after one more restart.
#[test]
fn crashes_inside_a_reset_leave_a_valid_log() {
    use std::sync::{Arc, Mutex};
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    for after in 0..RESET_OPERATIONS_MAX {
        let outcomes_in_case = outcomes.clone();
        run(move || async move {
            let outcome = reset_crash_case(after).await;
            outcomes_in_case.lock().unwrap().push(outcome);
        });
        let outcomes = outcomes.lock().unwrap();
        if outcomes.last() == Some(&ResetOutcome::Completed) {
            // Both sides of the commit point were reached (the checkpoint's file survives a
            // crash in this fault model even when its fsync failed, so the old log comes back
            // started at its end rather than whole).
            let before = [ResetOutcome::CrashedOld, ResetOutcome::CrashedOldEmptied];
            assert!(outcomes.iter().any(|o| before.contains(o)), "{outcomes:?}");
            assert!(outcomes.contains(&ResetOutcome::CrashedNew), "{outcomes:?}");
            return;
        }
    }
    panic!("a reset took more than {RESET_OPERATIONS_MAX} operations");
}

async fn reset_crash_case(after: u64) -> ResetOutcome {
    let dir = TestDir::new("reset-crash");
    let partition = dir.partition();
    let io = FaultIo::new();
    let log = open(&partition, &io).await;
    let old = fill(&log, 9).await;
    io.inject(FaultPlan {
        fault: Fault::Errno(EIO),
        operations: Operations::All,
        after,
        count: u64::MAX,
    });
    let result = log.reset_to(30).await;
    let faulted = io.injected() > 0;
    drop(log);
    io.crash(CrashOptions {
        torn_blocks_kept: 0,
        unsynced_files_lost: true,
    })
    .unwrap();
    let io = FaultIo::new();
    let log = open(&partition, &io).await;
    let recovered = (
        log.log_start_offset(),
        log.log_end_offset(),
        read_all(&log).await,
    );
    let outcome = match recovered {
        _ if !faulted => ResetOutcome::Completed,
        (0, 18, ref batches) if *batches == old => ResetOutcome::CrashedOld,
        (18, 18, _) => ResetOutcome::CrashedOldEmptied,
        (30, 30, _) => ResetOutcome::CrashedNew,
        (start, end, _) => panic!("after {after}: a log from {start} to {end} recovered"),
    };
    if result.is_ok() {
        assert_eq!(
            (recovered.0, recovered.1),
            (30, 30),
            "after {after}: an Ok reset was lost"
        );
    }
    let end = log.log_end_offset();
    let mut expected = recovered.2;
    expected.push(append_leader_batch(&log, end, 99).await);
    log.close().await.unwrap();
    let log = open(&partition, &io).await;
    assert_eq!(read_all(&log).await, expected, "after {after}");
    log.close().await.unwrap();
    outcome
}
