//! Persisted segment indexes and the clean-shutdown marker: what `open` trusts, what it scans,
//! and that lookups through persisted indexes agree with the log.

mod common;

use std::path::Path;

use bytes::Bytes;
use common::*;
use storage::{LogConfig, PartitionLog, RetentionPolicy, StorageError, ValidatedBatches};

/// Bytes of the index file header (see the crate docs).
const INDEX_HEADER_BYTES: usize = 64;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 8 * 1024,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

/// Batch `number` of the test log: 1 to 4 records, timestamps growing with `number`.
fn batch(number: i64) -> Vec<u8> {
    let records: Vec<TestRecord> = (0..1 + number % 4)
        .map(|index| {
            record(
                1_000 + 10 * number + index,
                150 + (number as usize * 37) % 400,
                number as u8,
            )
        })
        .collect();
    encode_batch(&records)
}

async fn append_batches(log: &PartitionLog, numbers: std::ops::Range<i64>) -> Vec<(i64, Vec<u8>)> {
    let mut stored_batches = Vec::new();
    for number in numbers {
        let bytes = batch(number);
        let validated = ValidatedBatches::validate(Bytes::copy_from_slice(&bytes)).unwrap();
        let info = log.append(validated).await.unwrap();
        stored_batches.push((info.base_offset, stored(&bytes, info.base_offset)));
    }
    stored_batches
}

fn end_offset(batches: &[(i64, Vec<u8>)]) -> i64 {
    batches
        .last()
        .map_or(0, |(base, bytes)| base + last_offset_delta(bytes) + 1)
}

/// Reads at every offset and looks up every timestamp, comparing with `expected`, which starts
/// at the log start.
async fn assert_lookups_agree(log: &PartitionLog, expected: &[(i64, Vec<u8>)]) {
    assert_eq!(log.log_start_offset(), expected[0].0);
    assert_eq!(log.log_end_offset(), end_offset(expected));
    for (number, (base, bytes)) in expected.iter().enumerate() {
        for offset in *base..=base + last_offset_delta(bytes) {
            let read = log.read(offset, 1).await.unwrap();
            assert_eq!(&read[..], &bytes[..], "read at offset {offset}");
        }
        // Timestamps grow with the batch number; the first record of each batch is the earliest
        // at or after its own timestamp.
        let timestamp = i64::from_be_bytes(bytes[27..35].try_into().unwrap());
        let found = log.offset_for_timestamp(timestamp).await.unwrap();
        assert_eq!(
            found,
            Some((*base, timestamp)),
            "timestamp of batch {number}"
        );
    }
    let after_all = log.offset_for_timestamp(i64::MAX).await.unwrap();
    assert_eq!(after_all, None);
}

fn index_files(partition: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(partition)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "index")
        })
        .collect();
    files.sort();
    files
}

/// The segment length an index file's header says it describes.
fn described_length(index_path: &Path) -> u64 {
    let bytes = std::fs::read(index_path).unwrap();
    u64::from_le_bytes(bytes[24..32].try_into().unwrap())
}

/// A log of several segments, closed cleanly. Returns its batches.
async fn build_closed_log(partition: &Path, batches: i64) -> Vec<(i64, Vec<u8>)> {
    let log = PartitionLog::open(&crate::common::context(), partition, config())
        .await
        .unwrap();
    let expected = append_batches(&log, 0..batches).await;
    log.close().await.unwrap();
    assert!(segment_files(partition).len() >= 4);
    expected
}

#[test]
fn clean_close_writes_every_index_and_reopen_scans_nothing() {
    run(|| async {
        let dir = TestDir::new("index-round-trip");
        let partition = dir.partition();
        let expected = build_closed_log(&partition, 60).await;
        let segments = segment_files(&partition);
        let indexes = index_files(&partition);
        assert_eq!(indexes.len(), segments.len(), "one index per segment");
        for (_, segment) in &segments {
            let length = std::fs::metadata(segment).unwrap().len();
            assert_eq!(described_length(&index_path_of(segment)), length);
        }
        assert!(partition.join("clean-shutdown").exists());

        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.segments_scanned_at_open(), 0);
        assert!(
            !partition.join("clean-shutdown").exists(),
            "removed at open"
        );
        assert_lookups_agree(&log, &expected).await;
        // Appends go on after a clean reopen, and the restored active index keeps working.
        let mut expected = expected;
        expected.extend(append_batches(&log, 60..80).await);
        assert_lookups_agree(&log, &expected).await;
        log.close().await.unwrap();
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.segments_scanned_at_open(), 0);
        assert_lookups_agree(&log, &expected).await;
        log.close().await.unwrap();
    });
}

#[test]
fn crash_without_marker_scans_only_the_last_segment() {
    run(|| async {
        let dir = TestDir::new("index-crash");
        let partition = dir.partition();
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        let expected = append_batches(&log, 0..60).await;
        assert!(segment_files(&partition).len() >= 4);
        // A crash: no close, no marker; the active segment keeps its zero padding.
        drop(log);
        assert!(!partition.join("clean-shutdown").exists());
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.segments_scanned_at_open(), 1);
        assert_lookups_agree(&log, &expected).await;
        drop(log);
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.segments_scanned_at_open(), 1);
        log.close().await.unwrap();
    });
}

#[test]
fn stale_index_of_a_grown_segment_is_rebuilt() {
    run(|| async {
        let dir = TestDir::new("index-stale-grown");
        let partition = dir.partition();
        let expected = build_closed_log(&partition, 60).await;
        // Garbage after the last batch of a sealed segment: the index describes fewer bytes
        // than the file holds, so the segment is scanned, cut back, and its index rewritten.
        let (_, second) = &segment_files(&partition)[1];
        let length = std::fs::metadata(second).unwrap().len();
        let mut bytes = std::fs::read(second).unwrap();
        bytes.extend_from_slice(&[0x5a; 300]);
        std::fs::write(second, bytes).unwrap();

        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.segments_scanned_at_open(), 1);
        assert_eq!(std::fs::metadata(second).unwrap().len(), length);
        assert_eq!(described_length(&index_path_of(second)), length);
        assert_lookups_agree(&log, &expected).await;
        log.close().await.unwrap();
    });
}

#[test]
fn stale_index_of_a_truncated_segment_is_rebuilt_and_its_cut_batch_fenced() {
    run(|| async {
        let dir = TestDir::new("index-stale-truncated");
        let partition = dir.partition();
        let expected = build_closed_log(&partition, 60).await;
        let files = segment_files(&partition);
        let (_, second) = &files[1];
        let third_base = files[2].0;
        // Cut the second segment inside its last batch: its index is stale, the scan keeps the
        // batches before the cut and fences the cut one up to the third segment, which (with
        // every later one) stays.
        let length = std::fs::metadata(second).unwrap().len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(second)
            .unwrap();
        file.set_len(length - 10).unwrap();
        drop(file);
        let cut = expected
            .iter()
            .rposition(|(base, _)| *base < third_base)
            .unwrap();
        let mut intact = expected.clone();
        intact.remove(cut);

        for reopen in 0..2 {
            let log = PartitionLog::open(&crate::common::context(), &partition, config())
                .await
                .unwrap();
            assert_eq!(log.segments_scanned_at_open(), 1 - reopen);
            assert_eq!(log.log_end_offset(), end_offset(&expected));
            for (base, bytes) in &intact {
                let read = log.read(*base, 1).await.unwrap();
                assert_eq!(&read[..], &bytes[..], "read at offset {base}");
                let timestamp = i64::from_be_bytes(bytes[27..35].try_into().unwrap());
                let found = log.offset_for_timestamp(timestamp).await.unwrap();
                assert_eq!(found, Some((*base, timestamp)), "timestamp {timestamp}");
            }
            let result = log.read(expected[cut].0, 1).await;
            assert!(
                matches!(result, Err(StorageError::CorruptRange { first_offset, next_offset })
                    if first_offset == expected[cut].0 && next_offset == third_base),
                "{result:?}"
            );
            assert_eq!(segment_files(&partition).len(), files.len());
            log.close().await.unwrap();
        }
    });
}

#[test]
fn missing_or_foreign_index_is_rebuilt_at_open() {
    run(|| async {
        let dir = TestDir::new("index-missing");
        let partition = dir.partition();
        let expected = build_closed_log(&partition, 60).await;
        let files = segment_files(&partition);
        std::fs::remove_file(index_path_of(&files[0].1)).unwrap();
        // Something that is not an index in place of the second's.
        let first_index = index_path_of(&files[1].1);
        std::fs::write(&first_index, b"not an index at all").unwrap();
        let mut header_damaged = std::fs::read(index_path_of(&files[2].1)).unwrap();
        header_damaged[20] ^= 1;
        std::fs::write(index_path_of(&files[2].1), header_damaged).unwrap();

        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.segments_scanned_at_open(), 3);
        for (_, segment) in &files[..3] {
            let length = std::fs::metadata(segment).unwrap().len();
            assert_eq!(described_length(&index_path_of(segment)), length);
        }
        assert_lookups_agree(&log, &expected).await;
        log.close().await.unwrap();
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.segments_scanned_at_open(), 0);
        log.close().await.unwrap();
    });
}

#[test]
fn corrupt_index_body_is_detected_and_rebuilt_on_use() {
    run(|| async {
        let dir = TestDir::new("index-corrupt-body");
        let partition = dir.partition();
        let expected = build_closed_log(&partition, 60).await;
        let (_, second) = segment_files(&partition)[1].clone();
        let index_path = index_path_of(&second);
        let good = std::fs::read(&index_path).unwrap();
        let mut damaged = good.clone();
        // Point the second entry at a wrong position: only the body CRC can tell.
        damaged[INDEX_HEADER_BYTES + 24 + 8] ^= 0x40;
        std::fs::write(&index_path, &damaged).unwrap();

        // Open reads only headers, so the damage is found when the index is first used.
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.segments_scanned_at_open(), 0);
        assert_lookups_agree(&log, &expected).await;
        assert_eq!(
            std::fs::read(&index_path).unwrap(),
            good,
            "rewritten as it was"
        );
        log.close().await.unwrap();
    });
}

#[test]
fn reopen_after_retention_keeps_only_live_indexes() {
    run(|| async {
        let dir = TestDir::new("index-retention");
        let partition = dir.partition();
        let expected = build_closed_log(&partition, 60).await;
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        let policy = RetentionPolicy {
            retention_ms: -1,
            retention_bytes: 12 * 1024,
            now_ms: 0,
        };
        let outcome = log.apply_retention(policy).await.unwrap();
        assert!(outcome.segments_deleted >= 2);
        let start = outcome.log_start_offset;
        let kept: Vec<(i64, Vec<u8>)> = expected
            .iter()
            .filter(|(base, _)| *base >= start)
            .cloned()
            .collect();
        assert_eq!(
            index_files(&partition).len(),
            segment_files(&partition).len()
        );
        // A crash after retention leaves an index without a segment: removed at open.
        let orphan = partition.join("00000000000000000000.index");
        std::fs::copy(index_path_of(&segment_files(&partition)[0].1), &orphan).unwrap();
        drop(log);
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.segments_scanned_at_open(), 1);
        assert!(!orphan.exists());
        assert_lookups_agree(&log, &kept).await;
        log.close().await.unwrap();
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.segments_scanned_at_open(), 0);
        assert_eq!(
            index_files(&partition).len(),
            segment_files(&partition).len()
        );
        assert_lookups_agree(&log, &kept).await;
        log.close().await.unwrap();
    });
}

#[test]
fn marker_that_does_not_match_the_last_segment_is_ignored() {
    run(|| async {
        let dir = TestDir::new("index-marker-mismatch");
        let partition = dir.partition();
        let mut expected = build_closed_log(&partition, 60).await;
        let marker = std::fs::read(partition.join("clean-shutdown")).unwrap();
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        expected.extend(append_batches(&log, 60..63).await);
        // A crash after more appends; an old marker restored (as a lost unlink could) no longer
        // matches the segment's length.
        drop(log);
        std::fs::write(partition.join("clean-shutdown"), marker).unwrap();
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(log.segments_scanned_at_open(), 1);
        assert_lookups_agree(&log, &expected).await;
        log.close().await.unwrap();
    });
}

#[test]
fn sealed_indexes_stay_within_the_cache_budget() {
    run(|| async {
        let dir = TestDir::new("index-memory");
        let partition = dir.partition();
        let expected = build_closed_log(&partition, 60).await;
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(
            crate::common::context().sealed_index_cache_bytes(),
            0,
            "open loads no sealed index"
        );
        assert_lookups_agree(&log, &expected).await;
        let cached = crate::common::context().sealed_index_cache_bytes();
        assert!(cached > 0 && cached <= storage::SEALED_INDEX_CACHE_BYTES_MAX);
        // Only the active segment's entries are held by the log itself.
        let active_entries = log.index_memory_bytes();
        assert!(active_entries < 24 * (8 * 1024 / 512 + 1) * 2);
        log.close().await.unwrap();
        assert_eq!(
            crate::common::context().sealed_index_cache_bytes(),
            0,
            "closing drops the cached indexes"
        );
    });
}
