mod common;

use std::rc::Rc;

use bytes::Bytes;
use common::*;
use record_batch::{overwrite_field, HeaderField};
use storage::{BatchError, LogConfig, PartitionLog, StorageError, ValidatedBatches};

fn validated(batch: &[u8]) -> ValidatedBatches {
    ValidatedBatches::validate(Bytes::copy_from_slice(batch)).unwrap()
}

/// A batch of `record_count` records with `value_len`-byte values and timestamps from `timestamp`.
fn batch(record_count: usize, value_len: usize, timestamp: i64) -> Vec<u8> {
    let records: Vec<TestRecord> = (0..record_count)
        .map(|index| {
            record(
                timestamp + index as i64,
                value_len,
                (timestamp + index as i64) as u8,
            )
        })
        .collect();
    encode_batch(&records)
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 8 * 1024,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

/// Appends each batch, returning the stored form of every batch with its base offset.
async fn append_all(log: &PartitionLog, batches: &[Vec<u8>]) -> Vec<(i64, Vec<u8>)> {
    let mut stored_batches = Vec::new();
    for batch in batches {
        let expected_base = log.log_end_offset();
        let info = log.append(validated(batch)).await.unwrap();
        assert_eq!(info.base_offset, expected_base);
        assert_eq!(info.last_offset, expected_base + last_offset_delta(batch));
        assert_eq!(log.log_end_offset(), info.last_offset + 1);
        stored_batches.push((info.base_offset, stored(batch, info.base_offset)));
    }
    stored_batches
}

/// Reads the whole log batch by batch and compares with `expected`.
async fn assert_log_holds(log: &PartitionLog, expected: &[(i64, Vec<u8>)]) {
    let mut offset = log.log_start_offset();
    let mut read_batches = Vec::new();
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 1 << 20).await.unwrap();
        assert!(!bytes.is_empty());
        let batches = split_batches(&bytes);
        let (last_base, last) = batches.last().unwrap();
        offset = last_base + last_offset_delta(last) + 1;
        read_batches.extend(batches);
    }
    assert_eq!(read_batches.len(), expected.len());
    for (got, want) in read_batches.iter().zip(expected) {
        assert_eq!(got, want);
    }
    assert!(log
        .read(log.log_end_offset(), 1000)
        .await
        .unwrap()
        .is_empty());
}

#[test]
fn append_read_roundtrip_with_varied_sizes() {
    run(|| async {
        let dir = TestDir::new("roundtrip");
        let log = PartitionLog::open(
            &crate::common::context(),
            &dir.partition(),
            LogConfig::default(),
        )
        .await
        .unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
        let batches: Vec<Vec<u8>> = (0..120)
            .map(|index| batch(1 + index % 7, (index * 37) % 1500, 1000 + index as i64 * 10))
            .collect();
        let expected = append_all(&log, &batches).await;
        assert_eq!(
            log.log_end_offset(),
            expected.last().unwrap().0 + last_offset_delta(&expected.last().unwrap().1) + 1
        );
        assert_log_holds(&log, &expected).await;

        // Any offset inside a batch returns the containing batch first.
        for (base_offset, stored_batch) in &expected {
            for delta in 0..=last_offset_delta(stored_batch) {
                let bytes = log.read(base_offset + delta, 1).await.unwrap();
                assert_eq!(
                    &bytes[..],
                    &stored_batch[..],
                    "offset {}",
                    base_offset + delta
                );
            }
        }
        log.close().await.unwrap();
    });
}

#[test]
fn read_respects_max_bytes_but_returns_at_least_one_batch() {
    run(|| async {
        let dir = TestDir::new("max-bytes");
        let log = PartitionLog::open(
            &crate::common::context(),
            &dir.partition(),
            LogConfig::default(),
        )
        .await
        .unwrap();
        let batches: Vec<Vec<u8>> = (0..20)
            .map(|index| batch(2, 100 + index * 50, index as i64))
            .collect();
        let expected = append_all(&log, &batches).await;
        let start = 3usize;
        for max_bytes in [0usize, 1, 200, 500, 1000, 2000, 5000, 100_000] {
            let bytes = log.read(expected[start].0 + 1, max_bytes).await.unwrap();
            let got = split_batches(&bytes);
            // As many whole batches as fit, but never fewer than one.
            let mut want = 0usize;
            let mut total = 0usize;
            for (_, stored_batch) in &expected[start..] {
                if want > 0 && total + stored_batch.len() > max_bytes {
                    break;
                }
                total += stored_batch.len();
                want += 1;
            }
            assert_eq!(got.len(), want, "max_bytes {max_bytes}");
            assert_eq!(bytes.len(), total);
            assert_eq!(got[..], expected[start..start + want]);
        }
        log.close().await.unwrap();
    });
}

#[test]
fn read_outside_the_log_is_out_of_range() {
    run(|| async {
        let dir = TestDir::new("range");
        let log = PartitionLog::open(
            &crate::common::context(),
            &dir.partition(),
            LogConfig::default(),
        )
        .await
        .unwrap();
        append_all(&log, &[batch(5, 10, 0)]).await;
        assert!(log.read(5, 100).await.unwrap().is_empty());
        for offset in [-1, 6, i64::MAX] {
            match log.read(offset, 100).await {
                Err(StorageError::OffsetOutOfRange {
                    offset: got,
                    log_start_offset: 0,
                    log_end_offset: 5,
                }) => {
                    assert_eq!(got, offset)
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        log.close().await.unwrap();
    });
}

#[test]
fn segments_roll_by_size_and_reopen_gives_the_same_log() {
    run(|| async {
        let dir = TestDir::new("roll");
        let config = small_config();
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config.clone())
            .await
            .unwrap();
        let batches: Vec<Vec<u8>> = (0..60)
            .map(|index| batch(1 + index % 3, 300 + index * 7, index as i64))
            .collect();
        let expected = append_all(&log, &batches).await;
        let files = segment_files(&dir.partition());
        assert!(
            files.len() > 3,
            "expected several segments, got {}",
            files.len()
        );
        // Every segment starts with a batch whose base offset is the file's name, and no
        // segment exceeds segment_bytes. Reads crossing a boundary stop at the segment end.
        for (base_offset, path) in &files[..files.len() - 1] {
            let bytes = std::fs::read(path).unwrap();
            assert!(bytes.len() as u64 <= config.segment_bytes);
            let in_file = split_batches(&bytes);
            assert_eq!(in_file[0].0, *base_offset);
            let read = log.read(*base_offset, 1 << 20).await.unwrap();
            assert_eq!(&read[..], &bytes[..]);
        }
        assert_log_holds(&log, &expected).await;
        let end_offset = log.log_end_offset();
        log.close().await.unwrap();

        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config.clone())
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), end_offset);
        assert_eq!(log.log_start_offset(), 0);
        assert_log_holds(&log, &expected).await;
        assert_eq!(segment_files(&dir.partition()), files);
        // Appending after reopen continues densely.
        let more = append_all(&log, &[batch(2, 10, 99)]).await;
        assert_eq!(more[0].0, end_offset);
        log.close().await.unwrap();
    });
}

#[test]
fn append_larger_than_a_segment_goes_into_a_segment_alone() {
    run(|| async {
        let dir = TestDir::new("big");
        let config = LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 1024,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config.clone())
            .await
            .unwrap();
        let batches = vec![batch(1, 100, 0), batch(3, 5000, 1), batch(1, 100, 2)];
        let expected = append_all(&log, &batches).await;
        let files = segment_files(&dir.partition());
        let bases: Vec<i64> = files.iter().map(|(base, _)| *base).collect();
        assert_eq!(bases, vec![0, 1, 4]);
        assert_eq!(std::fs::read(&files[1].1).unwrap(), expected[1].1);
        assert_log_holds(&log, &expected).await;
        log.close().await.unwrap();
    });
}

#[test]
fn multi_batch_append_assigns_dense_offsets() {
    run(|| async {
        let dir = TestDir::new("multi");
        let log = PartitionLog::open(
            &crate::common::context(),
            &dir.partition(),
            LogConfig::default(),
        )
        .await
        .unwrap();
        append_all(&log, &[batch(2, 10, 0)]).await;
        let parts = [batch(3, 10, 1), batch(1, 10, 2), batch(4, 10, 3)];
        let joined: Vec<u8> = parts.concat();
        let batches = ValidatedBatches::validate(Bytes::from(joined)).unwrap();
        assert_eq!(batches.record_count(), 8);
        assert_eq!(batches.batch_count(), 3);
        let info = log.append(batches).await.unwrap();
        assert_eq!((info.base_offset, info.last_offset), (2, 9));
        let read = log.read(2, 1 << 20).await.unwrap();
        let want = [
            stored(&parts[0], 2),
            stored(&parts[1], 5),
            stored(&parts[2], 6),
        ]
        .concat();
        assert_eq!(&read[..], &want[..]);
        log.close().await.unwrap();
    });
}

/// Appends 30 batches over several segments, closes, damages the last segment with `damage`,
/// reopens, and checks that exactly the batches `damage` leaves intact remain and appends go on.
fn recovery_case(
    name: &'static str,
    damage: impl Fn(&std::path::Path, &[(i64, Vec<u8>)]) -> usize + Send + 'static,
) {
    run(move || async move {
        let dir = TestDir::new(name);
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), small_config())
            .await
            .unwrap();
        let batches: Vec<Vec<u8>> = (0..30)
            .map(|index| batch(1 + index % 4, 200 + index * 11, index as i64))
            .collect();
        let mut expected = append_all(&log, &batches).await;
        log.close().await.unwrap();
        // The damage stands for a crash, which leaves no clean-shutdown marker.
        forget_clean_shutdown(&dir.partition());

        let (last_base, last_path) = segment_files(&dir.partition()).pop().unwrap();
        let in_last: Vec<(i64, Vec<u8>)> = expected
            .iter()
            .filter(|(base, _)| *base >= last_base)
            .cloned()
            .collect();
        let kept_in_last = damage(&last_path, &in_last);
        let dropped = in_last.len() - kept_in_last;
        expected.truncate(expected.len() - dropped);

        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), small_config())
            .await
            .unwrap();
        let end_offset = expected
            .last()
            .map_or(0, |(base, bytes)| base + last_offset_delta(bytes) + 1);
        assert_eq!(log.log_end_offset(), end_offset);
        assert_log_holds(&log, &expected).await;
        let kept_bytes: usize = in_last[..kept_in_last]
            .iter()
            .map(|(_, bytes)| bytes.len())
            .sum();
        assert_eq!(
            std::fs::metadata(&last_path).unwrap().len() as usize,
            kept_bytes,
            "file truncated to the last valid batch"
        );

        let more: Vec<Vec<u8>> = (0..5).map(|index| batch(2, 50, 100 + index)).collect();
        expected.extend(append_all(&log, &more).await);
        log.close().await.unwrap();
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), small_config())
            .await
            .unwrap();
        assert_log_holds(&log, &expected).await;
        log.close().await.unwrap();
    });
}

#[test]
fn recovery_drops_garbage_after_the_last_batch() {
    recovery_case("garbage", |path, in_last| {
        let mut bytes = std::fs::read(path).unwrap();
        bytes.extend((0..3000u32).map(|index| (index * 7 + 3) as u8));
        std::fs::write(path, bytes).unwrap();
        in_last.len()
    });
}

#[test]
fn recovery_drops_zero_padding_after_the_last_batch() {
    recovery_case("padding", |path, in_last| {
        let mut bytes = std::fs::read(path).unwrap();
        bytes.resize(bytes.len() + 700, 0);
        std::fs::write(path, bytes).unwrap();
        in_last.len()
    });
}

#[test]
fn recovery_drops_a_batch_torn_in_the_middle() {
    recovery_case("torn", |path, in_last| {
        let len = std::fs::metadata(path).unwrap().len();
        let last_len = in_last.last().unwrap().1.len() as u64;
        let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.set_len(len - last_len / 2).unwrap();
        in_last.len() - 1
    });
}

/// A batch with a correct CRC that produce refuses (`records.rs`), written after the last
/// batch: recovery refuses it by the same checks, as a torn tail.
fn recovery_refuses_what_produce_refuses(name: &'static str, crafted: fn() -> Vec<u8>) {
    let policy = storage::records::RecordPolicy {
        decompressed_bytes_max: 1 << 20,
        zstd_allowed: true,
        key_required: false,
        log_append_time_ms: None,
        create_time_window: None,
    };
    assert!(ValidatedBatches::validate_produced(Bytes::from(crafted()), &policy).is_err());
    recovery_case(name, move |path, in_last| {
        let (last_base, last) = in_last.last().unwrap();
        let next_offset = last_base + last_offset_delta(last) + 1;
        let mut bytes = std::fs::read(path).unwrap();
        bytes.extend(stored(&crafted(), next_offset));
        std::fs::write(path, bytes).unwrap();
        in_last.len()
    });
}

#[test]
fn recovery_refuses_a_batch_claiming_more_offsets_than_records() {
    // One record claiming lastOffsetDelta 2^31 - 1: accepted, it would move the log end by 2^31.
    recovery_refuses_what_produce_refuses("claims-offsets", || {
        let one = encode_batch(&[record(7, 10, 1)]);
        build_batch(
            0,
            i32::MAX,
            7,
            7,
            1,
            &one[record_batch::BATCH_HEADER_BYTES..],
        )
    });
}

#[test]
fn recovery_refuses_a_record_with_a_key_length_below_minus_one() {
    recovery_refuses_what_produce_refuses("key-length", || {
        // attributes, timestampDelta 0, offsetDelta 0, keyLength -5, valueLength 0, 0 headers.
        let body = [0u8, 0, 0, 9, 0, 0];
        let mut records = vec![body.len() as u8 * 2];
        records.extend_from_slice(&body);
        build_batch(0, 0, 7, 7, 1, &records)
    });
}

#[test]
fn recovery_drops_a_batch_with_a_flipped_byte() {
    recovery_case("flip", |path, in_last| {
        let mut bytes = std::fs::read(path).unwrap();
        let last_len = in_last.last().unwrap().1.len();
        let at = bytes.len() - last_len + 70;
        bytes[at] ^= 0x10;
        std::fs::write(path, bytes).unwrap();
        in_last.len() - 1
    });
}

/// How a log is reopened after a byte of one of its batches was flipped on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reopen {
    /// Not at all: the byte flips under the open log (tail cache off, so reads go to disk).
    Live,
    /// After a clean close: every index is trusted, the damage is found by reads.
    Clean,
    /// As after a crash: sealed segments are trusted by their index, the last one is scanned.
    Unclean,
    /// As after a crash with the damaged segment's index lost: the scan finds the damage.
    UncleanWithoutIndex,
}

/// Appends 40 batches over several segments, flips one byte inside the records (covered by the
/// CRC) of batch `bad` of segment `segment` (`None`: the last), reopens as `reopen` says, and checks that only the bad batch's offsets fail (`CorruptRange`), that reads before
/// and after it and a whole-log read stepping over it return every other batch, that nothing was
/// truncated, that the range is counted once, and that appends and a further reopen keep it so.
fn fence_case(name: &'static str, segment: Option<usize>, bad: Option<usize>, reopen: Reopen) {
    run(move || async move {
        if reopen == Reopen::Live {
            crate::common::context().set_tail_cache_bytes_max(0);
        }
        let dir = TestDir::new(name);
        let partition = dir.partition();
        let log = PartitionLog::open(&crate::common::context(), &partition, small_config())
            .await
            .unwrap();
        let mut batches: Vec<Vec<u8>> = (0..40)
            .map(|index| batch(1 + index % 3, 250 + index * 7, 1 + index as i64))
            .collect();
        // Small ones last, so that the active segment holds batches after the damaged one.
        batches.extend((0..6).map(|index| batch(1, 40, 50 + index)));
        let mut expected = append_all(&log, &batches).await;
        let log = if reopen == Reopen::Live {
            log.sync_to(i64::MAX).await.unwrap();
            Some(log)
        } else {
            log.close().await.unwrap();
            None
        };
        let files = segment_files(&partition);
        let segment = segment.unwrap_or(files.len() - 1);
        let (base, path) = files[segment].clone();
        let first = expected
            .iter()
            .position(|(offset, _)| *offset == base)
            .unwrap();
        let in_segment = files.get(segment + 1).map_or(expected.len(), |(next, _)| {
            expected
                .iter()
                .position(|(offset, _)| offset == next)
                .unwrap()
        }) - first;
        let bad = first + bad.unwrap_or(in_segment - 1);
        assert!(bad < first + in_segment);
        assert!(segment + 1 < files.len() || bad + 1 < first + in_segment);
        let position: usize = expected[first..bad]
            .iter()
            .map(|(_, bytes)| bytes.len())
            .sum();
        let mut bytes = std::fs::read(&path).unwrap();
        let file_len = bytes.len();
        bytes[position + 70] ^= 0x10;
        std::fs::write(&path, &bytes[..file_len]).unwrap();
        if matches!(reopen, Reopen::Unclean | Reopen::UncleanWithoutIndex) {
            forget_clean_shutdown(&partition);
        }
        if reopen == Reopen::UncleanWithoutIndex {
            std::fs::remove_file(index_path_of(&path)).unwrap();
        }
        let log = match log {
            Some(log) => log,
            None => PartitionLog::open(&crate::common::context(), &partition, small_config())
                .await
                .unwrap(),
        };
        let scanned_damage = reopen == Reopen::UncleanWithoutIndex
            || (reopen == Reopen::Unclean && segment + 1 == files.len());
        assert_eq!(log.corrupt_ranges_fenced(), u64::from(scanned_damage));
        assert_eq!(
            std::fs::metadata(&path).unwrap().len() as usize,
            file_len,
            "nothing cut"
        );
        let (bad_base, bad_bytes) = expected[bad].clone();
        let bad_next = bad_base + last_offset_delta(&bad_bytes) + 1;
        assert_reads_around_fence(&log, &expected, bad).await;
        assert_eq!(log.corrupt_ranges_fenced(), 1, "counted once");

        expected.extend(append_all(&log, &[batch(2, 60, 77)]).await);
        log.close().await.unwrap();
        let log = PartitionLog::open(&crate::common::context(), &partition, small_config())
            .await
            .unwrap();
        assert_reads_around_fence(&log, &expected, bad).await;
        match log.read(bad_base, 1 << 20).await {
            Err(StorageError::CorruptRange {
                first_offset,
                next_offset,
            }) => {
                assert_eq!((first_offset, next_offset), (bad_base, bad_next));
            }
            other => panic!("expected CorruptRange, got {other:?}"),
        }
        log.close().await.unwrap();
        crate::common::context().set_tail_cache_bytes_max(storage::TAIL_CACHE_BYTES_DEFAULT);
    });
}

/// Every batch but `expected[bad]` reads back, one by one and in a whole-log read that skips
/// the `CorruptRange`; each offset of the bad batch answers `CorruptRange` with its range.
async fn assert_reads_around_fence(log: &PartitionLog, expected: &[(i64, Vec<u8>)], bad: usize) {
    let (bad_base, bad_bytes) = &expected[bad];
    let bad_next = bad_base + last_offset_delta(bad_bytes) + 1;
    for offset in *bad_base..bad_next {
        match log.read(offset, 1 << 20).await {
            Err(StorageError::CorruptRange {
                first_offset,
                next_offset,
            }) => {
                assert_eq!((first_offset, next_offset), (*bad_base, bad_next));
            }
            other => panic!("offset {offset}: expected CorruptRange, got {other:?}"),
        }
    }
    for (index, (base, bytes)) in expected.iter().enumerate() {
        if index == bad {
            continue;
        }
        let read = log.read(*base, 1).await.unwrap();
        assert_eq!(&read[..], &bytes[..], "batch at {base}");
    }
    // Reading on from before the fence stops at it; the read at the fence says where to go on.
    let mut offset = log.log_start_offset();
    let mut read_batches = Vec::new();
    while offset < log.log_end_offset() {
        match log.read(offset, 1 << 20).await {
            Ok(bytes) => {
                let batches = split_batches(&bytes);
                let (last_base, last) = batches.last().unwrap();
                offset = last_base + last_offset_delta(last) + 1;
                read_batches.extend(batches);
            }
            Err(StorageError::CorruptRange { next_offset, .. }) => offset = next_offset,
            Err(error) => panic!("{error}"),
        }
    }
    let mut intact = expected.to_vec();
    intact.remove(bad);
    assert_eq!(read_batches, intact);
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_fences_its_batch_after_a_clean_reopen() {
    fence_case("fence-sealed-clean", Some(1), Some(4), Reopen::Clean);
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_fences_its_batch_after_an_unclean_reopen() {
    fence_case("fence-sealed-unclean", Some(1), Some(4), Reopen::Unclean);
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_without_index_is_fenced_by_recovery() {
    fence_case(
        "fence-sealed-scan",
        Some(1),
        Some(4),
        Reopen::UncleanWithoutIndex,
    );
}

#[test]
fn a_flipped_byte_in_the_last_batch_of_a_sealed_segment_without_index_is_fenced() {
    fence_case(
        "fence-sealed-last",
        Some(1),
        None,
        Reopen::UncleanWithoutIndex,
    );
}

#[test]
fn a_flipped_byte_in_the_first_batch_of_a_sealed_segment_is_fenced() {
    fence_case("fence-sealed-first", Some(2), Some(0), Reopen::Unclean);
}

#[test]
fn a_flipped_byte_inside_the_active_segment_is_fenced_while_the_log_is_open() {
    fence_case("fence-active-live", None, Some(2), Reopen::Live);
}

#[test]
fn a_flipped_byte_inside_the_active_segment_is_fenced_not_cut_after_an_unclean_reopen() {
    fence_case("fence-active-unclean", None, Some(2), Reopen::Unclean);
}

#[test]
fn a_flipped_byte_inside_the_active_segment_is_fenced_after_a_clean_reopen() {
    fence_case("fence-active-clean", None, Some(2), Reopen::Clean);
}

/// Fences live only in memory, and that is safe across a restart: recovery trusts a sealed
/// segment's index and scans none of it, but a read CRC-checks every batch it returns, so a
/// fence a read found before a crash is found again by the first read of its range after the
/// restart, and its bytes are never served (nor is any offset of it silently skipped).
#[test]
fn a_fence_found_before_a_crash_is_found_again_without_a_scan() {
    run(|| async {
        crate::common::context().set_tail_cache_bytes_max(0);
        let dir = TestDir::new("fence-crash");
        let partition = dir.partition();
        let log = PartitionLog::open(&crate::common::context(), &partition, small_config())
            .await
            .unwrap();
        let batches: Vec<Vec<u8>> = (0..40).map(|index| batch(2, 300, index as i64)).collect();
        let expected = append_all(&log, &batches).await;
        log.sync_to(i64::MAX).await.unwrap();
        let files = segment_files(&partition);
        assert!(files.len() >= 3);
        // A flipped byte in the second batch of the second (sealed) segment, under the open log.
        let (base, path) = &files[1];
        let first = expected
            .iter()
            .position(|(offset, _)| offset == base)
            .unwrap();
        let bad = first + 1;
        let mut bytes = std::fs::read(path).unwrap();
        bytes[expected[first].1.len() + 70] ^= 0x10;
        std::fs::write(path, bytes).unwrap();
        assert!(log.read(expected[bad].0, 1 << 20).await.is_err());
        assert_eq!(log.corrupt_ranges_fenced(), 1);
        drop(log); // a crash: no clean-shutdown marker, no index rewritten

        let log = PartitionLog::open(&crate::common::context(), &partition, small_config())
            .await
            .unwrap();
        assert_eq!(log.segments_scanned_at_open(), 1, "only the last segment");
        assert_eq!(
            log.corrupt_ranges_fenced(),
            0,
            "the fence is not known at open"
        );
        assert_reads_around_fence(&log, &expected, bad).await;
        assert_eq!(
            log.corrupt_ranges_fenced(),
            1,
            "found again by the first read"
        );
        log.close().await.unwrap();
        crate::common::context().set_tail_cache_bytes_max(storage::TAIL_CACHE_BYTES_DEFAULT);
    });
}

#[test]
fn recovery_fences_the_damaged_last_batch_of_a_sealed_segment_and_keeps_the_later_ones() {
    run(|| async {
        let dir = TestDir::new("cut-middle");
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), small_config())
            .await
            .unwrap();
        let batches: Vec<Vec<u8>> = (0..40).map(|index| batch(2, 300, index as i64)).collect();
        let expected = append_all(&log, &batches).await;
        log.close().await.unwrap();
        let files = segment_files(&dir.partition());
        assert!(files.len() >= 3);
        // Damage the last batch of the second segment, whose index is lost (a crash during the
        // roll before the index was written): it is scanned, and the damage fenced up to the
        // third segment, which still follows it.
        let (second_base, second_path) = &files[1];
        let next_base = files[2].0;
        let mut bytes = std::fs::read(second_path).unwrap();
        let bad = expected
            .iter()
            .rposition(|(base, _)| *base < next_base && *base >= *second_base)
            .unwrap();
        let at = bytes.len() - expected[bad].1.len() / 2;
        bytes[at] ^= 0xff;
        std::fs::write(second_path, bytes).unwrap();
        std::fs::remove_file(index_path_of(second_path)).unwrap();

        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), small_config())
            .await
            .unwrap();
        assert_eq!(log.corrupt_ranges_fenced(), 1);
        assert_reads_around_fence(&log, &expected, bad).await;
        assert_eq!(segment_files(&dir.partition()).len(), files.len());
        log.close().await.unwrap();
    });
}

#[test]
fn recovery_refuses_a_gap_between_intact_segments() {
    run(|| async {
        let dir = TestDir::new("gap");
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), small_config())
            .await
            .unwrap();
        let batches: Vec<Vec<u8>> = (0..40).map(|index| batch(2, 300, index as i64)).collect();
        append_all(&log, &batches).await;
        log.close().await.unwrap();
        let files = segment_files(&dir.partition());
        std::fs::remove_file(&files[1].1).unwrap();
        match PartitionLog::open(&crate::common::context(), &dir.partition(), small_config()).await
        {
            Err(StorageError::Corrupt(_)) => {}
            other => panic!("expected Corrupt, got {:?}", other.map(|_| ())),
        }
    });
}

#[test]
fn validate_rejects_malformed_input() {
    let good = batch(3, 20, 5);
    assert!(ValidatedBatches::validate(Bytes::from(good.clone())).is_ok());
    let check = |bytes: Vec<u8>| ValidatedBatches::validate(Bytes::from(bytes)).unwrap_err();

    assert_eq!(check(Vec::new()), BatchError::Empty);
    assert!(matches!(
        check(good[..40].to_vec()),
        BatchError::Truncated { .. }
    ));
    assert!(matches!(
        check(good[..good.len() - 1].to_vec()),
        BatchError::Truncated { .. }
    ));
    assert!(matches!(
        check([good.clone(), good[..70].to_vec()].concat()),
        BatchError::Truncated { .. }
    ));

    let field = |mut bytes: Vec<u8>, field: HeaderField, value: i64| {
        overwrite_field(&mut bytes, field, value);
        bytes
    };
    let bad_magic = field(good.clone(), HeaderField::Magic, 1);
    assert_eq!(check(bad_magic), BatchError::BadMagic(1));

    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 1;
    assert!(matches!(check(bad_crc), BatchError::CrcMismatch { .. }));

    let mut bad_stored_crc = good.clone();
    bad_stored_crc[HeaderField::Crc.range().start + 1] ^= 1;
    assert!(matches!(
        check(bad_stored_crc),
        BatchError::CrcMismatch { .. }
    ));

    let short_length = field(good.clone(), HeaderField::BatchLength, 10);
    assert_eq!(check(short_length), BatchError::BadLength(10));

    let huge_length = field(good.clone(), HeaderField::BatchLength, i64::from(i32::MAX));
    assert!(matches!(check(huge_length), BatchError::TooLarge { .. }));

    // Fields covered by the CRC: rewrite them and fix the CRC so only the field check fails.
    let with_fixed_crc = |mut bytes: Vec<u8>| {
        record_batch::set_crc(&mut bytes);
        bytes
    };
    let negative_delta = field(good.clone(), HeaderField::LastOffsetDelta, -1);
    assert_eq!(
        check(with_fixed_crc(negative_delta)),
        BatchError::BadLastOffsetDelta(-1)
    );
    let negative_count = field(good.clone(), HeaderField::RecordCount, -2);
    assert_eq!(
        check(with_fixed_crc(negative_count)),
        BatchError::BadRecordCount(-2)
    );
    let wrong_count = field(good.clone(), HeaderField::RecordCount, 4);
    assert!(matches!(
        check(with_fixed_crc(wrong_count)),
        BatchError::RecordCountMismatch { .. }
    ));

    // Two good batches concatenated are fine; the offsets they consume add up.
    let two =
        ValidatedBatches::validate(Bytes::from([good.clone(), batch(2, 1, 0)].concat())).unwrap();
    assert_eq!(two.record_count(), 5);
    assert_eq!(two.len_bytes(), good.len() + batch(2, 1, 0).len());
}

#[test]
fn offset_for_max_timestamp_finds_the_first_record_with_the_largest_timestamp() {
    run(|| async {
        let dir = TestDir::new("max-timestamp");
        let config = LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 256,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config)
            .await
            .unwrap();
        assert_eq!(log.offset_for_max_timestamp().await.unwrap(), None);
        // The largest timestamp, 500, first appears at offset 4 (second batch), again at 9.
        for batch_timestamps in [
            vec![100, 300, 200],
            vec![90, 500, 150],
            vec![400; 4],
            vec![500],
        ] {
            let records: Vec<TestRecord> = batch_timestamps
                .iter()
                .map(|ts| record(*ts, 400, 1))
                .collect();
            log.append(validated(&encode_batch(&records)))
                .await
                .unwrap();
            assert!(log.offset_for_max_timestamp().await.unwrap().is_some());
        }
        assert_eq!(
            log.offset_for_max_timestamp().await.unwrap(),
            Some((4, 500))
        );
    });
}

#[test]
fn offset_for_timestamp_finds_the_earliest_record_at_or_after() {
    run(|| async {
        let dir = TestDir::new("timestamps");
        let config = LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 256,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config)
            .await
            .unwrap();
        // Timestamps are not monotonic across records: the answer is the earliest *offset*.
        let timestamps: Vec<Vec<i64>> = vec![
            vec![100, 105, 103],
            vec![90, 200, 150],
            vec![300],
            vec![250, 260, 400, 399],
            vec![500, 100],
        ];
        let mut all = Vec::new(); // (offset, timestamp)
        for batch_timestamps in &timestamps {
            let records: Vec<TestRecord> = batch_timestamps
                .iter()
                .map(|ts| record(*ts, 400, 1))
                .collect();
            let info = log
                .append(validated(&encode_batch(&records)))
                .await
                .unwrap();
            for (delta, ts) in batch_timestamps.iter().enumerate() {
                all.push((info.base_offset + delta as i64, *ts));
            }
        }
        for target in [
            0, 90, 100, 101, 104, 105, 106, 150, 151, 200, 201, 255, 300, 301, 399, 400, 401, 500,
            501,
        ] {
            let want = all.iter().find(|(_, ts)| *ts >= target).copied();
            assert_eq!(
                log.offset_for_timestamp(target).await.unwrap(),
                want,
                "target {target}"
            );
        }
        // Compressed batches are decompressed: the answer is the first record at or after the
        // target, not the batch's base offset.
        for (step, codec) in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd]
            .into_iter()
            .enumerate()
        {
            let base = 1000 * (step as i64 + 1);
            let records: Vec<TestRecord> = [base, base + 50, base + 40, base + 100]
                .iter()
                .map(|ts| record(*ts, 100, 2))
                .collect();
            let info = log
                .append(validated(&encode_batch_with(codec, &records)))
                .await
                .unwrap();
            for (target, delta, timestamp) in [
                (base - 1, 0, base),
                (base + 45, 1, base + 50),
                (base + 50, 1, base + 50),
                (base + 51, 3, base + 100),
            ] {
                assert_eq!(
                    log.offset_for_timestamp(target).await.unwrap(),
                    Some((info.base_offset + delta, timestamp)),
                    "{codec:?} target {target}"
                );
            }
        }
        assert_eq!(log.offset_for_timestamp(4101).await.unwrap(), None);
        log.close().await.unwrap();
    });
}

#[test]
fn concurrent_appends_and_syncs_all_complete() {
    run(|| async {
        let dir = TestDir::new("group-commit");
        let log = Rc::new(
            PartitionLog::open(&crate::common::context(), &dir.partition(), small_config())
                .await
                .unwrap(),
        );
        let mut tasks = Vec::new();
        for task_number in 0..64i64 {
            let log = Rc::clone(&log);
            tasks.push(glommio::spawn_local(async move {
                let mut offsets = Vec::new();
                for round in 0..5i64 {
                    let info = log
                        .append(validated(&batch(2, 100, task_number * 10 + round)))
                        .await
                        .unwrap();
                    log.sync_to(info.last_offset).await.unwrap();
                    assert!(log.synced_offset() > info.last_offset);
                    offsets.push(info.base_offset);
                }
                offsets
            }));
        }
        let mut bases = Vec::new();
        for task in tasks {
            bases.extend(task.await);
        }
        bases.sort();
        let want: Vec<i64> = (0..320).map(|index| index * 2).collect();
        assert_eq!(bases, want);
        assert_eq!(log.log_end_offset(), 640);
        assert_eq!(log.synced_offset(), 640);
        let log = Rc::try_unwrap(log).ok().unwrap();
        log.close().await.unwrap();
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), small_config())
            .await
            .unwrap();
        assert_eq!(log.log_end_offset(), 640);
        log.close().await.unwrap();
    });
}

#[test]
fn wait_for_append_completes_when_the_high_watermark_moves() {
    run(|| async {
        let dir = TestDir::new("wait");
        let log = Rc::new(
            PartitionLog::open(
                &crate::common::context(),
                &dir.partition(),
                LogConfig::default(),
            )
            .await
            .unwrap(),
        );
        let waiter = log.wait_for_append();
        let other_waiter = log.wait_for_append();
        let appender = {
            let log = Rc::clone(&log);
            glommio::spawn_local(async move {
                glommio::yield_if_needed().await;
                log.append(validated(&batch(1, 1, 0))).await.unwrap();
                log.advance_high_watermark(log.log_end_offset());
            })
        };
        waiter.await;
        assert_eq!(log.log_end_offset(), 1);
        other_waiter.await;
        appender.await;
        // A listener created after the move waits for the next one: an append alone does not
        // move the high watermark.
        let mut late = Box::pin(log.wait_for_append());
        assert!(futures_lite::future::poll_once(&mut late).await.is_none());
        log.append(validated(&batch(1, 1, 0))).await.unwrap();
        assert!(futures_lite::future::poll_once(&mut late).await.is_none());
        log.advance_high_watermark(log.log_end_offset());
        late.await;
        Rc::try_unwrap(log).ok().unwrap().delete().await.unwrap();
        assert!(!dir.partition().exists());
    });
}

/// Descriptors this process holds open on segment files of `partition`.
fn open_segment_files(partition: &std::path::Path) -> usize {
    let partition = std::fs::canonicalize(partition).unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| {
            target.parent() == Some(partition.as_path())
                && target.extension().is_some_and(|ext| ext == "log")
        })
        .count()
}

/// How long a file dropped from the cache may take to be closed: glommio closes a dropped file
/// with its next I/O cycle.
const FILE_CLOSE_WAIT_MS_MAX: u64 = 2_000;

/// Waits (bounded) until at most `max` segment files of `partition` are open.
async fn wait_for_open_segment_files_at_most(partition: &std::path::Path, max: usize) {
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(FILE_CLOSE_WAIT_MS_MAX);
    loop {
        let open = open_segment_files(partition);
        if open <= max {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{open} segment files open, expected at most {max}"
        );
        glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[test]
fn sealed_segment_files_are_opened_on_demand_and_closed_when_cold() {
    run(|| async {
        // Sealed-segment files this executor keeps open.
        const FILES_OPEN: usize = 4;
        crate::common::context().set_sealed_segment_files_max(FILES_OPEN);
        let dir = TestDir::new("cold-segments");
        let config = small_config();
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config.clone())
            .await
            .unwrap();
        let batches: Vec<Vec<u8>> = (0..80).map(|index| batch(1, 3000, index as i64)).collect();
        let expected = append_all(&log, &batches).await;
        let segments = segment_files(&dir.partition()).len();
        assert!(segments > 8 * FILES_OPEN, "only {segments} segments");
        // Rolled segments: the active one's file plus at most FILES_OPEN sealed ones.
        wait_for_open_segment_files_at_most(&dir.partition(), 1 + FILES_OPEN).await;
        // Reads reopen cold segments and still return every batch.
        assert_log_holds(&log, &expected).await;
        assert!(crate::common::context().sealed_segment_files_open() <= FILES_OPEN);
        wait_for_open_segment_files_at_most(&dir.partition(), 1 + FILES_OPEN).await;
        log.close().await.unwrap();

        // A reopened log opens only its active segment.
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config)
            .await
            .unwrap();
        wait_for_open_segment_files_at_most(&dir.partition(), 1).await;
        assert_log_holds(&log, &expected).await;
        wait_for_open_segment_files_at_most(&dir.partition(), 1 + FILES_OPEN).await;
        log.close().await.unwrap();
        wait_for_open_segment_files_at_most(&dir.partition(), 0).await;
    });
}
