//! Retention: deleting whole sealed segments by time and by size.

mod common;

use std::rc::Rc;

use bytes::Bytes;
use common::*;
use storage::{LogConfig, PartitionLog, RetentionOutcome, RetentionPolicy, ValidatedBatches};

/// Timestamps of batches that retention should treat as old, and as recent.
const OLD_MS: i64 = 1_000;
const NOW_MS: i64 = 10_000_000;
const RECENT_MS: i64 = NOW_MS - 1_000;
const RETENTION_MS: i64 = 60_000;

/// Segments of 4096 bytes hold two of these ~1500-byte one-record batches: a third one rolls.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

fn batch(timestamp: i64, fill: u8) -> Vec<u8> {
    encode_batch(&[record(timestamp, 1_400, fill)])
}

fn policy(retention_ms: i64, retention_bytes: i64) -> RetentionPolicy {
    RetentionPolicy {
        retention_ms,
        retention_bytes,
        now_ms: NOW_MS,
    }
}

/// Appends one batch per timestamp; returns the stored form of each with its base offset.
async fn append_batches(log: &PartitionLog, timestamps: &[i64]) -> Vec<(i64, Vec<u8>)> {
    let mut stored_batches = Vec::new();
    for (index, timestamp) in timestamps.iter().enumerate() {
        let bytes = batch(*timestamp, index as u8);
        let validated = ValidatedBatches::validate(Bytes::copy_from_slice(&bytes)).unwrap();
        let info = log.append(validated).await.unwrap();
        stored_batches.push((info.base_offset, stored(&bytes, info.base_offset)));
    }
    stored_batches
}

/// Reads the log from its start and compares every batch with `expected`.
async fn assert_log_holds(log: &PartitionLog, expected: &[(i64, Vec<u8>)]) {
    assert_eq!(log.log_start_offset(), expected[0].0);
    let mut offset = log.log_start_offset();
    let mut read_batches = Vec::new();
    while offset < log.log_end_offset() {
        let bytes = log.read(offset, 1 << 20).await.unwrap();
        let batches = split_batches(&bytes);
        let (last_base, last) = batches.last().unwrap();
        offset = last_base + last_offset_delta(last) + 1;
        read_batches.extend(batches);
    }
    assert_eq!(read_batches, expected);
}

#[test]
fn retention_by_time_deletes_old_sealed_segments() {
    run(|| async {
        let dir = TestDir::new("retention-time");
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        let timestamps = [
            OLD_MS, OLD_MS, OLD_MS, OLD_MS, RECENT_MS, RECENT_MS, RECENT_MS,
        ];
        let stored_batches = append_batches(&log, &timestamps).await;
        // Two batches per segment: [0,1] [2,3] [4,5] [6].
        let bases: Vec<i64> = segment_files(&dir.partition())
            .iter()
            .map(|f| f.0)
            .collect();
        assert_eq!(bases, vec![0, 2, 4, 6]);

        let kept = log.apply_retention(policy(-1, -1)).await.unwrap();
        assert_eq!(kept.segments_deleted, 0);
        let kept = log.apply_retention(policy(NOW_MS, -1)).await.unwrap();
        assert_eq!(kept.segments_deleted, 0);

        let outcome = log.apply_retention(policy(RETENTION_MS, -1)).await.unwrap();
        let expected = RetentionOutcome {
            segments_deleted: 2,
            log_start_offset: 4,
        };
        assert_eq!(outcome, expected);
        assert_eq!(log.log_start_offset(), 4);
        let bases: Vec<i64> = segment_files(&dir.partition())
            .iter()
            .map(|f| f.0)
            .collect();
        assert_eq!(bases, vec![4, 6]);
        assert_out_of_range(log.read(0, 1 << 20).await, 4);
        assert_out_of_range(log.read(3, 1 << 20).await, 4);
        assert_log_holds(&log, &stored_batches[4..]).await;

        // Nothing more is old enough.
        let again = log.apply_retention(policy(RETENTION_MS, -1)).await.unwrap();
        assert_eq!(again.segments_deleted, 0);
        assert_eq!(again.log_start_offset, 4);
        log.close().await.unwrap();
    });
}

#[test]
fn retention_by_time_only_cuts_a_prefix() {
    run(|| async {
        let dir = TestDir::new("retention-prefix");
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        // The oldest segment holds a recent batch, so the old segment after it stays too: the
        // log never gets a hole.
        let timestamps = [OLD_MS, RECENT_MS, OLD_MS, OLD_MS, OLD_MS];
        let stored_batches = append_batches(&log, &timestamps).await;
        let outcome = log.apply_retention(policy(RETENTION_MS, -1)).await.unwrap();
        assert_eq!(outcome.segments_deleted, 0);
        assert_eq!(outcome.log_start_offset, 0);
        assert_log_holds(&log, &stored_batches).await;
        log.close().await.unwrap();
    });
}

#[test]
fn retention_by_size_keeps_at_least_retention_bytes() {
    run(|| async {
        let dir = TestDir::new("retention-size");
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        let stored_batches = append_batches(&log, &[RECENT_MS; 8]).await;
        let files = segment_files(&dir.partition());
        assert_eq!(files.len(), 4);
        let segment_bytes = std::fs::metadata(&files[0].1).unwrap().len() as i64;
        let batch_bytes = stored_batches[0].1.len() as i64;
        assert_eq!(segment_bytes, 2 * batch_bytes);

        // Deleting the oldest segment would leave less than retention_bytes: nothing goes.
        let outcome = log
            .apply_retention(policy(-1, 4 * segment_bytes - 1))
            .await
            .unwrap();
        assert_eq!(outcome.segments_deleted, 0);

        // Four equal segments, at least two kept: the oldest two go.
        let outcome = log
            .apply_retention(policy(-1, 2 * segment_bytes))
            .await
            .unwrap();
        let expected = RetentionOutcome {
            segments_deleted: 2,
            log_start_offset: 4,
        };
        assert_eq!(outcome, expected);
        assert_eq!(segment_files(&dir.partition()).len(), 2);
        assert_out_of_range(log.read(2, 1 << 20).await, 4);
        assert_log_holds(&log, &stored_batches[4..]).await;
        log.close().await.unwrap();
    });
}

#[test]
fn retention_never_deletes_the_active_segment() {
    run(|| async {
        let dir = TestDir::new("retention-active");
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        // A single (active) segment, old and larger than the limit: it stays.
        let first = append_batches(&log, &[OLD_MS]).await;
        let outcome = log.apply_retention(policy(0, 0)).await.unwrap();
        assert_eq!(outcome.segments_deleted, 0);
        assert_log_holds(&log, &first).await;

        let mut stored_batches = first;
        stored_batches.extend(append_batches(&log, &[OLD_MS; 4]).await);
        // Segments [0,1] [2,3] [4]: both sealed ones go, the active one stays.
        let outcome = log.apply_retention(policy(0, 0)).await.unwrap();
        let expected = RetentionOutcome {
            segments_deleted: 2,
            log_start_offset: 4,
        };
        assert_eq!(outcome, expected);
        let bases: Vec<i64> = segment_files(&dir.partition())
            .iter()
            .map(|f| f.0)
            .collect();
        assert_eq!(bases, vec![4]);
        assert_log_holds(&log, &stored_batches[4..]).await;

        // The log keeps working: appends roll on, and the new start is kept.
        stored_batches.extend(append_batches(&log, &[RECENT_MS; 3]).await);
        assert_eq!(log.log_end_offset(), 8);
        assert_log_holds(&log, &stored_batches[4..]).await;
        log.close().await.unwrap();
    });
}

#[test]
fn reopen_after_retention_keeps_the_log_start_and_data() {
    run(|| async {
        let dir = TestDir::new("retention-reopen");
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        let mut stored_batches =
            append_batches(&log, &[OLD_MS, OLD_MS, OLD_MS, RECENT_MS, RECENT_MS]).await;
        let outcome = log.apply_retention(policy(RETENTION_MS, -1)).await.unwrap();
        assert_eq!(outcome.log_start_offset, 2);
        log.sync_to(i64::MAX).await.unwrap();
        log.close().await.unwrap();

        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        assert_eq!(log.log_start_offset(), 2);
        assert_eq!(log.log_end_offset(), 5);
        assert_out_of_range(log.read(1, 1 << 20).await, 2);
        assert_log_holds(&log, &stored_batches[2..]).await;
        stored_batches.extend(append_batches(&log, &[RECENT_MS]).await);
        assert_log_holds(&log, &stored_batches[2..]).await;
        log.close().await.unwrap();

        // A log reduced to its active segment reopens at that segment's base offset.
        let dir = TestDir::new("retention-reopen-empty");
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        append_batches(&log, &[OLD_MS, OLD_MS, OLD_MS]).await;
        let outcome = log.apply_retention(policy(0, -1)).await.unwrap();
        assert_eq!(outcome.log_start_offset, 2);
        log.close().await.unwrap();
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        assert_eq!(log.log_start_offset(), 2);
        assert_eq!(log.log_end_offset(), 3);
        log.close().await.unwrap();
    });
}

#[test]
fn retention_between_concurrent_appends_keeps_offsets_dense() {
    run(|| async {
        let dir = TestDir::new("retention-concurrent");
        let log = Rc::new(
            PartitionLog::open(&crate::common::context(), &dir.partition(), config())
                .await
                .unwrap(),
        );
        let seed = 0x5eed_0001u64;
        let mut rng = Rng::new(seed);
        let mut tasks = Vec::new();
        // Appends (which roll every second batch) and retention passes issued together; the
        // append lock orders them, so retention never sees a segment list mid-roll.
        for round in 0..40u8 {
            let bytes = batch(OLD_MS, round);
            let validated = ValidatedBatches::validate(Bytes::copy_from_slice(&bytes)).unwrap();
            let appending = Rc::clone(&log);
            tasks.push(glommio::spawn_local(async move {
                appending.append(validated).await.unwrap();
            }));
            if rng.chance(30) {
                let retaining = Rc::clone(&log);
                tasks.push(glommio::spawn_local(async move {
                    retaining.apply_retention(policy(0, -1)).await.unwrap();
                }));
            }
        }
        for task in tasks {
            task.await;
        }
        assert_eq!(log.log_end_offset(), 40, "seed {seed:#x}");
        let outcome = log.apply_retention(policy(0, -1)).await.unwrap();
        // Every sealed segment is gone; the active one holds offsets [38, 40).
        assert_eq!(outcome.log_start_offset, 38, "seed {seed:#x}");
        let bases: Vec<i64> = segment_files(&dir.partition())
            .iter()
            .map(|f| f.0)
            .collect();
        assert_eq!(bases, vec![38], "seed {seed:#x}");
        let bytes = log.read(38, 1 << 20).await.unwrap();
        assert_eq!(split_batches(&bytes).len(), 2, "seed {seed:#x}");
        Rc::try_unwrap(log).ok().unwrap().close().await.unwrap();
    });
}

/// Real I/O, except that the first open of each held path waits until the test releases it:
/// a read is stopped, deterministically, after it found its segment and before it reopens the
/// segment's closed file.
struct HeldOpens {
    inner: storage::io::DirectIo,
    held: std::cell::RefCell<Vec<std::path::PathBuf>>,
    /// One permit per held open that has started waiting.
    arrived: glommio::sync::Semaphore,
    /// One permit per held open allowed to go on.
    released: glommio::sync::Semaphore,
}

impl HeldOpens {
    fn new(held: Vec<std::path::PathBuf>) -> HeldOpens {
        HeldOpens {
            inner: storage::io::DirectIo,
            held: std::cell::RefCell::new(held),
            arrived: glommio::sync::Semaphore::new(0),
            released: glommio::sync::Semaphore::new(0),
        }
    }
}

impl storage::io::LogIo for HeldOpens {
    fn open(
        &self,
        path: &std::path::Path,
        mode: storage::io::OpenMode,
    ) -> storage::io::IoFuture<'_, Rc<dyn storage::io::SegmentFile>> {
        let path = path.to_path_buf();
        Box::pin(async move {
            let position = self.held.borrow().iter().position(|held| *held == path);
            if let Some(position) = position {
                self.held.borrow_mut().remove(position);
                self.arrived.signal(1);
                self.released.acquire(1).await.unwrap();
            }
            self.inner.open(&path, mode).await
        })
    }

    fn sync_dir<'a>(&'a self, dir: &'a std::path::Path) -> storage::io::IoFuture<'a, ()> {
        self.inner.sync_dir(dir)
    }
}

#[test]
fn a_read_racing_retention_is_out_of_range_and_a_live_read_succeeds() {
    run(|| async {
        let dir = TestDir::new("retention-race");
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        // Segments [0,1] (old) [2,3] [4].
        let timestamps = [OLD_MS, OLD_MS, RECENT_MS, RECENT_MS, RECENT_MS];
        let stored_batches = append_batches(&log, &timestamps).await;
        log.close().await.unwrap();
        let segments = segment_files(&dir.partition());
        assert_eq!(segments.iter().map(|s| s.0).collect::<Vec<_>>(), [0, 2, 4]);
        // Reopened, the log holds no sealed segment's file open: each read reopens one.
        let io = Rc::new(HeldOpens::new(vec![
            segments[0].1.clone(),
            segments[1].1.clone(),
        ]));
        let log = Rc::new(
            PartitionLog::open_with_io(
                &crate::common::context(),
                &dir.partition(),
                config(),
                io.clone(),
            )
            .await
            .unwrap(),
        );
        let read = |offset| {
            let log = Rc::clone(&log);
            glommio::spawn_local(async move { log.read(offset, 1 << 20).await })
        };
        let (removed, live) = (read(0), read(2));
        io.arrived.acquire(2).await.unwrap();

        // Retention unlinks the old segment while both reads wait to open their files.
        let outcome = log.apply_retention(policy(RETENTION_MS, -1)).await.unwrap();
        assert_eq!(outcome.segments_deleted, 1);
        assert!(!segments[0].1.exists());
        io.released.signal(2);

        assert_out_of_range(removed.await, 2);
        let live = live.await.unwrap();
        let expected: Vec<(i64, Vec<u8>)> = stored_batches[2..4].to_vec();
        assert_eq!(split_batches(&live), expected);
        assert_log_holds(&log, &stored_batches[2..]).await;
        Rc::try_unwrap(log).ok().unwrap().close().await.unwrap();
    });
}
