//! `PartitionLog::truncate_to`: what a follower does after a leader change. Batches at and above
//! the offset go, in the active segment and across segments; appends continue at the offset and
//! read back in order, also after a restart (clean or not). Offsets inside a batch or outside the
//! log are refused and change nothing. Crashes inside a truncation are in `fault_model.rs`.

mod common;

use std::path::Path;

use common::*;
use storage::{LogConfig, PartitionLog, StorageError};

/// Segments of 4096 bytes hold two of the ~1500-byte batches below: a third one rolls.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

/// A batch of `records` records of 700 bytes: `records` offsets.
fn batch(records: usize, fill: u8) -> Vec<u8> {
    let records: Vec<_> = (0..records).map(|i| record(i as i64, 700, fill)).collect();
    encode_batch(&records)
}

async fn open(partition: &Path) -> PartitionLog {
    PartitionLog::open(&context(), partition, config())
        .await
        .unwrap()
}

/// Two-record batches 0..n: batch i holds offsets 2i and 2i + 1; two batches per segment.
fn batches(count: usize, fill: u8) -> Vec<Vec<u8>> {
    (0..count).map(|i| batch(2, fill + i as u8)).collect()
}

#[test]
fn truncation_in_the_active_segment_then_appends_read_back_across_restarts() {
    run(|| async {
        let dir = TestDir::new("truncate-active");
        let partition = dir.partition();
        let log = open(&partition).await;
        let mut expected = append_all(&log, &batches(5, 0)).await;
        // Batch 4 (offsets 8, 9) is alone in the active segment; batch 5 joins it.
        expected.extend(append_all(&log, &batches(1, 50)).await);
        log.advance_high_watermark(12);
        log.truncate_to(10).await.unwrap();
        expected.truncate(5);
        assert_eq!(log.log_end_offset(), 10);
        assert_eq!(
            log.high_watermark(),
            10,
            "a cut below the high watermark pulls it down"
        );
        assert!(log.synced_offset() <= 10);
        assert_eq!(read_all(&log).await, expected);
        expected.extend(append_all(&log, &batches(2, 100)).await);
        assert_eq!(expected[5].0, 10);
        assert_eq!(read_all(&log).await, expected);
        log.close().await.unwrap();
        let log = open(&partition).await;
        assert_eq!(read_all(&log).await, expected);
        // A crash (no close) after a synced truncation and append.
        log.truncate_to(12).await.unwrap();
        expected.truncate(6);
        expected.extend(append_all(&log, &batches(1, 150)).await);
        log.sync_to(i64::MAX).await.unwrap();
        drop(log);
        let log = open(&partition).await;
        assert_eq!(read_all(&log).await, expected);
        log.close().await.unwrap();
    });
}

#[test]
fn truncation_across_segments_deletes_the_later_ones_and_cuts_the_holding_one() {
    run(|| async {
        let dir = TestDir::new("truncate-segments");
        let partition = dir.partition();
        let log = open(&partition).await;
        let mut expected = append_all(&log, &batches(9, 0)).await;
        assert_eq!(segment_files(&partition).len(), 5);
        // Offset 6 is the second batch of the sealed segment starting at 4.
        log.truncate_to(6).await.unwrap();
        expected.truncate(3);
        assert_eq!(read_all(&log).await, expected);
        let bases: Vec<i64> = segment_files(&partition).iter().map(|(b, _)| *b).collect();
        assert_eq!(bases, [0, 4]);
        expected.extend(append_all(&log, &batches(3, 100)).await);
        assert_eq!(read_all(&log).await, expected);
        // At a segment's base offset: that segment is emptied and stays the active one.
        log.truncate_to(8).await.unwrap();
        expected.truncate(4);
        assert_eq!(read_all(&log).await, expected);
        expected.extend(append_all(&log, &batches(1, 200)).await);
        log.close().await.unwrap();
        let log = open(&partition).await;
        assert_eq!(read_all(&log).await, expected);
        // Down to the log start: an empty log at offset 0 that takes appends again.
        log.truncate_to(0).await.unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
        let expected = append_all(&log, &batches(3, 250)).await;
        assert_eq!(expected[0].0, 0);
        drop(log);
        let log = open(&partition).await;
        assert_eq!(read_all(&log).await, expected);
        log.close().await.unwrap();
    });
}

#[test]
fn truncation_inside_a_batch_or_outside_the_log_is_refused_and_changes_nothing() {
    run(|| async {
        let dir = TestDir::new("truncate-refused");
        let partition = dir.partition();
        let log = open(&partition).await;
        let expected = append_all(&log, &batches(4, 0)).await;
        match log.truncate_to(3).await {
            Err(StorageError::NotBatchBoundary {
                offset: 3,
                batch_base_offset: 2,
                batch_next_offset: 4,
            }) => {}
            other => panic!("expected NotBatchBoundary, got {other:?}"),
        }
        for offset in [-1, 9] {
            assert!(matches!(
                log.truncate_to(offset).await,
                Err(StorageError::OffsetOutOfRange { .. })
            ));
        }
        // The log end: nothing to remove.
        log.truncate_to(8).await.unwrap();
        assert_eq!(read_all(&log).await, expected);
        log.delete_records(3).await.unwrap();
        assert!(matches!(
            log.truncate_to(2).await,
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        log.close().await.unwrap();
        let log = open(&partition).await;
        assert_eq!(log.log_end_offset(), 8);
        log.close().await.unwrap();
    });
}
