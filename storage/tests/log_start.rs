//! DeleteRecords (moving the log start offset), its checkpoint across reopen, and `segment_ms`
//! rolls with a configuration changed on a live log.

mod common;

use bytes::Bytes;
use common::*;
use storage::{LogConfig, PartitionLog, RetentionPolicy, StorageError, ValidatedBatches};

/// Segments of 4096 bytes hold two of these ~1500-byte batches of two records each.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

fn batch(timestamp: i64, fill: u8) -> Vec<u8> {
    encode_batch(&[
        record(timestamp, 700, fill),
        record(timestamp + 1, 700, fill),
    ])
}

/// Appends `count` two-record batches; returns each stored batch with its base offset.
async fn append_batches(log: &PartitionLog, count: usize) -> Vec<(i64, Vec<u8>)> {
    let mut stored_batches = Vec::new();
    for index in 0..count {
        let bytes = batch(1_000 * index as i64, index as u8);
        let validated = ValidatedBatches::validate(Bytes::copy_from_slice(&bytes)).unwrap();
        let info = log.append(validated).await.unwrap();
        stored_batches.push((info.base_offset, stored(&bytes, info.base_offset)));
    }
    stored_batches
}

fn segment_bases(dir: &std::path::Path) -> Vec<i64> {
    segment_files(dir).iter().map(|(base, _)| *base).collect()
}

#[test]
fn delete_records_moves_the_log_start_and_deletes_segments_below_it() {
    run(|| async {
        let dir = TestDir::new("delete-records");
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        let stored_batches = append_batches(&log, 7).await;
        // Two batches (four offsets) per segment: [0..4) [4..8) [8..12) [12..14).
        assert_eq!(segment_bases(&dir.partition()), vec![0, 4, 8, 12]);

        // Into the middle of the second segment: the first one goes, the second stays.
        assert_eq!(log.delete_records(5).await.unwrap(), 5);
        assert_eq!(log.log_start_offset(), 5);
        assert_eq!(segment_bases(&dir.partition()), vec![4, 8, 12]);
        assert_out_of_range(log.read(4, 1 << 20).await, 5);
        assert_out_of_range(log.read(0, 1 << 20).await, 5);
        // A read at the start returns the whole batch that holds it, as Kafka does.
        let read = split_batches(&log.read(5, 1 << 20).await.unwrap());
        assert_eq!(read[0], stored_batches[2]);

        // At or below the start: nothing changes. Past the end: out of range.
        assert_eq!(log.delete_records(3).await.unwrap(), 5);
        assert_eq!(log.delete_records(5).await.unwrap(), 5);
        assert_out_of_range(log.delete_records(15).await, 5);

        // The timestamp lookup answers with the start, not a deleted offset.
        assert_eq!(log.offset_for_timestamp(0).await.unwrap().unwrap().0, 5);
        log.close().await.unwrap();

        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        assert_eq!(log.log_start_offset(), 5);
        assert_out_of_range(log.read(4, 1 << 20).await, 5);

        // Up to the log end: everything is deleted but the active segment, and the log is
        // empty from the reader's point of view.
        assert_eq!(log.delete_records(14).await.unwrap(), 14);
        assert_eq!(segment_bases(&dir.partition()), vec![12]);
        assert!(log.read(14, 1 << 20).await.unwrap().is_empty());
        assert_out_of_range(log.read(13, 1 << 20).await, 14);
        let more = append_batches(&log, 1).await;
        assert_eq!(more[0].0, 14);
        drop(log);

        // Reopened without a clean close: the checkpoint still holds.
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        assert_eq!(log.log_start_offset(), 14);
        assert_eq!(log.log_end_offset(), 16);
        log.close().await.unwrap();
    });
}

#[test]
fn retention_never_moves_the_log_start_back() {
    run(|| async {
        let dir = TestDir::new("delete-records-retention");
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        append_batches(&log, 5).await;
        assert_eq!(log.delete_records(6).await.unwrap(), 6);
        // Retention of everything old deletes the segment [4..8) that the start is in the
        // middle of, and the start moves to the next segment; nothing old enough: it stays.
        let none = RetentionPolicy {
            retention_ms: -1,
            retention_bytes: -1,
            now_ms: 1_000_000,
        };
        let outcome = log.apply_retention(none).await.unwrap();
        assert_eq!(outcome.log_start_offset, 6);
        assert_eq!(log.log_start_offset(), 6);
        let all_old = RetentionPolicy {
            retention_ms: 1,
            ..none
        };
        let outcome = log.apply_retention(all_old).await.unwrap();
        assert_eq!(outcome.log_start_offset, 8);
        assert_eq!(segment_bases(&dir.partition()), vec![8]);
        log.close().await.unwrap();
        // The stale checkpoint (6) is below the first segment: the first segment wins.
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        assert_eq!(log.log_start_offset(), 8);
        log.close().await.unwrap();
    });
}

#[test]
fn a_damaged_checkpoint_fails_open() {
    run(|| async {
        let dir = TestDir::new("delete-records-damaged");
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        append_batches(&log, 3).await;
        log.delete_records(2).await.unwrap();
        log.close().await.unwrap();
        let path = dir.partition().join("log-start-offset");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[16] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
        match PartitionLog::open(&crate::common::context(), &dir.partition(), config()).await {
            Err(StorageError::Corrupt(_)) => {}
            other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
        }
    });
}

#[test]
fn segment_ms_rolls_by_age_and_a_new_config_applies_to_the_next_append() {
    run(|| async {
        let dir = TestDir::new("segment-ms");
        let never = LogConfig {
            segment_ms: -1,
            ..config()
        };
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), never.clone())
            .await
            .unwrap();
        // Small batches: with segment.ms off, they all fit in one segment.
        for _ in 0..3 {
            let bytes = encode_batch(&[record(1, 10, 7)]);
            log.append(ValidatedBatches::validate(Bytes::from(bytes)).unwrap())
                .await
                .unwrap();
        }
        assert_eq!(segment_bases(&dir.partition()), vec![0]);
        // segment.ms = 0: every segment is old enough at the next append, so each append
        // starts a new one.
        log.set_config(LogConfig {
            segment_ms: 0,
            ..never.clone()
        });
        assert_eq!(log.config().segment_ms, 0);
        for _ in 0..2 {
            let bytes = encode_batch(&[record(1, 10, 7)]);
            log.append(ValidatedBatches::validate(Bytes::from(bytes)).unwrap())
                .await
                .unwrap();
        }
        assert_eq!(segment_bases(&dir.partition()), vec![0, 3, 4]);
        // A day: nothing is that old.
        log.set_config(LogConfig {
            segment_ms: 86_400_000,
            ..never
        });
        let bytes = encode_batch(&[record(1, 10, 7)]);
        log.append(ValidatedBatches::validate(Bytes::from(bytes)).unwrap())
            .await
            .unwrap();
        assert_eq!(segment_bases(&dir.partition()), vec![0, 3, 4]);
        log.close().await.unwrap();
    });
}

/// `dir` as a path relative to the working directory (through the file system root).
fn relative_to_cwd(dir: &std::path::Path) -> std::path::PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let mut relative = std::path::PathBuf::new();
    for _ in cwd.components().skip(1) {
        relative.push("..");
    }
    relative.join(dir.strip_prefix("/").unwrap())
}

#[test]
fn a_relative_directory_works_for_rolls_syncs_and_delete_records() {
    run(|| async {
        let dir = TestDir::new("relative");
        let partition = relative_to_cwd(&dir.partition());
        assert!(partition.is_relative());
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        append_batches(&log, 5).await;
        log.sync_to(i64::MAX).await.unwrap();
        assert_eq!(log.delete_records(6).await.unwrap(), 6);
        log.close().await.unwrap();
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.log_start_offset(), 6);
        assert_eq!(log.log_end_offset(), 10);
        log.close().await.unwrap();
    });
}
