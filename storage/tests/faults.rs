//! Disk errors, short writes, crashes and preallocation, with real O_DIRECT files: injected
//! through `storage::fault::FaultIo` or checked on the files themselves.

mod common;

use std::io::ErrorKind;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use storage::fault::{CrashOptions, Fault, FaultIo, FaultPlan, Operations, EIO, ENOSPC};
use storage::{LogConfig, PartitionLog, StorageError, ValidatedBatches};

fn validated(batch: &[u8]) -> ValidatedBatches {
    ValidatedBatches::validate(Bytes::copy_from_slice(batch)).unwrap()
}

fn batch(value_len: usize, timestamp: i64) -> Vec<u8> {
    encode_batch(&[record(timestamp, value_len, timestamp as u8)])
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 512,
        segment_preallocate_bytes: 16 * 1024,
        ..LogConfig::default()
    }
}

async fn open(partition: &Path, io: &FaultIo) -> PartitionLog {
    PartitionLog::open_with_io(
        &crate::common::context(),
        partition,
        config(),
        Rc::new(io.clone()),
    )
    .await
    .unwrap()
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn the_active_segment_grows_in_preallocation_steps_and_is_trimmed_when_sealed_or_closed() {
    run(|| async {
        let dir = TestDir::new("prealloc");
        let partition = dir.partition();
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        let mut expected = append_all(&log, &[batch(100, 1)]).await;
        let files = segment_files(&partition);
        assert_eq!(file_bytes(&files[0].1), 16 * 1024, "one step");
        // 20 KiB more: two more steps, the file size stays a whole number of steps.
        for timestamp in 2..12 {
            expected.extend(append_all(&log, &[batch(2000, timestamp)]).await);
        }
        assert_eq!(file_bytes(&files[0].1), 32 * 1024);
        // Fill past segment_bytes: the sealed segment is trimmed to its batches.
        for timestamp in 12..50 {
            expected.extend(append_all(&log, &[batch(2000, timestamp)]).await);
        }
        let files = segment_files(&partition);
        assert_eq!(files.len(), 2);
        let sealed = std::fs::read(&files[0].1).unwrap();
        assert!(sealed.len() <= 64 * 1024);
        assert_eq!(
            split_batches(&sealed),
            expected[..split_batches(&sealed).len()]
        );
        let active_end: usize = expected[split_batches(&sealed).len()..]
            .iter()
            .map(|(_, bytes)| bytes.len())
            .sum();
        let active_bytes = file_bytes(&files[1].1);
        assert!(active_bytes.is_multiple_of(16 * 1024) && active_bytes >= active_end as u64);
        assert!(active_bytes < active_end as u64 + 16 * 1024);
        // A crashed process leaves the zeros of the step behind; recovery ends the log there.
        drop(log);
        let log = PartitionLog::open(&crate::common::context(), &partition, config())
            .await
            .unwrap();
        assert_eq!(read_all(&log).await, expected);
        expected.extend(append_all(&log, &[batch(10, 50)]).await);
        log.close().await.unwrap();
        let active = std::fs::read(&files[1].1).unwrap();
        let in_active = expected.len() - split_batches(&sealed).len();
        assert_eq!(
            split_batches(&active),
            expected[expected.len() - in_active..]
        );
    });
}

/// A new partition's first segment is created without an fsync (so that creating a topic of
/// many partitions costs none per partition); its first sync makes the directory entry durable
/// before the segment's data. Shown by failing the first sync operation: a failed directory sync
/// is retried by the next sync, whereas a failed fdatasync would fail the log's syncs for good.
#[test]
fn a_new_log_syncs_its_directory_before_its_first_fdatasync() {
    run(|| async {
        let dir = TestDir::new("new-log-dir-sync");
        let partition = dir.partition();
        let io = FaultIo::new();
        let log = open(&partition, &io).await;
        let expected = append_all(&log, &[batch(100, 1)]).await;
        io.inject(FaultPlan {
            fault: Fault::Errno(EIO),
            operations: Operations::Syncs,
            after: 0,
            count: 1,
        });
        log.sync_to(i64::MAX).await.unwrap_err();
        assert_eq!(io.fdatasyncs_failed(), 0, "the directory sync came first");
        log.sync_to(i64::MAX).await.unwrap();
        drop(log);
        io.crash(CrashOptions {
            unsynced_files_lost: true,
            ..CrashOptions::default()
        })
        .unwrap();
        let log = open(&partition, &io).await;
        assert_eq!(read_all(&log).await, expected);
        log.close().await.unwrap();
    });
}

#[test]
fn a_full_disk_fails_the_append_and_leaves_the_log_consistent() {
    run(|| async {
        let dir = TestDir::new("enospc");
        let partition = dir.partition();
        let io = FaultIo::new();
        let log = open(&partition, &io).await;
        let mut expected = append_all(&log, &[batch(100, 1), batch(3000, 2)]).await;
        log.sync_to(i64::MAX).await.unwrap();
        io.inject(FaultPlan {
            fault: Fault::Errno(ENOSPC),
            operations: Operations::Writes,
            after: 0,
            count: u64::MAX,
        });
        for _ in 0..3 {
            let error = log.append(validated(&batch(20_000, 3))).await.unwrap_err();
            let StorageError::Io(error) = error else {
                panic!("not an I/O error: {error}");
            };
            assert_eq!(error.kind(), ErrorKind::StorageFull);
            assert_eq!(log.log_end_offset(), 2);
        }
        assert_eq!(read_all(&log).await, expected, "reads keep working");
        io.clear();
        expected.extend(append_all(&log, &[batch(50, 4)]).await);
        assert_eq!(expected.last().unwrap().0, 2);
        assert_eq!(read_all(&log).await, expected);
        log.close().await.unwrap();
        let log = open(&partition, &io).await;
        assert_eq!(read_all(&log).await, expected);
        log.close().await.unwrap();
    });
}

#[test]
fn a_short_write_fails_the_append_and_the_next_append_rewrites_the_tail() {
    run(|| async {
        let dir = TestDir::new("short");
        let partition = dir.partition();
        let io = FaultIo::new();
        let log = open(&partition, &io).await;
        let mut expected = append_all(&log, &[batch(700, 1)]).await;
        for seen in 0..4 {
            io.inject(FaultPlan {
                fault: Fault::ShortWrite,
                operations: Operations::Writes,
                after: seen,
                count: 1,
            });
            for timestamp in 0..seen {
                expected.extend(append_all(&log, &[batch(5000, 2 + timestamp as i64)]).await);
            }
            let failed = log.append(validated(&batch(5000, 9))).await;
            assert!(matches!(failed, Err(StorageError::Io(_))), "{failed:?}");
            assert_eq!(io.injected(), seen + 1);
            expected.extend(append_all(&log, &[batch(6000, 10)]).await);
            assert_eq!(read_all(&log).await, expected);
        }
        // A crashed process: every completed write is on disk, nothing of the failed ones is
        // served, because each was overwritten by a longer successful append.
        drop(log);
        let log = open(&partition, &io).await;
        assert_eq!(read_all(&log).await, expected);
        log.close().await.unwrap();
    });
}

#[test]
fn a_failed_fdatasync_fails_every_later_sync_until_reopened() {
    run(|| async {
        let dir = TestDir::new("fsync");
        let partition = dir.partition();
        let io = FaultIo::new();
        let log = open(&partition, &io).await;
        let durable = append_all(&log, &[batch(100, 1)]).await;
        log.sync_to(i64::MAX).await.unwrap();
        append_all(&log, &[batch(100, 2)]).await;
        io.inject(FaultPlan {
            fault: Fault::Errno(EIO),
            operations: Operations::Syncs,
            after: 0,
            count: 1,
        });
        assert!(log.sync_to(i64::MAX).await.is_err());
        assert_eq!(io.injected(), 1);
        // The disk works again, but the kernel may have dropped the failed pages: no later sync
        // may claim durability.
        assert!(log.sync_to(i64::MAX).await.is_err());
        append_all(&log, &[batch(100, 3)]).await;
        assert!(log.sync_to(i64::MAX).await.is_err());
        assert_eq!(
            io.injected(),
            1,
            "the poisoned syncs did not reach the disk"
        );
        assert_eq!(log.synced_offset(), 1);
        drop(log);
        io.crash(CrashOptions::default()).unwrap();
        let log = open(&partition, &io).await;
        assert_eq!(read_all(&log).await, durable);
        log.sync_to(i64::MAX).await.unwrap();
        log.close().await.unwrap();
    });
}

#[test]
fn a_crash_keeps_what_was_synced_and_at_most_a_torn_prefix_of_the_rest() {
    run(|| async {
        let dir = TestDir::new("crash");
        let partition = dir.partition();
        let io = FaultIo::new();
        let log = open(&partition, &io).await;
        let mut expected = append_all(&log, &[batch(100, 1), batch(200, 2)]).await;
        log.sync_to(i64::MAX).await.unwrap();
        let unsynced = append_all(&log, &[batch(3000, 3), batch(3000, 4)]).await;
        drop(log);
        io.crash(CrashOptions::default()).unwrap();
        let log = open(&partition, &io).await;
        assert_eq!(read_all(&log).await, expected);
        let unsynced_again = append_all(&log, &[batch(3000, 3), batch(3000, 4)]).await;
        assert_eq!(
            unsynced_again, unsynced,
            "the same offsets are assigned again"
        );
        drop(log);
        // Keep every unsynced block: a crash after the writes reached the disk.
        io.crash(CrashOptions {
            torn_blocks_kept: u64::MAX,
            unsynced_files_lost: true,
        })
        .unwrap();
        let log = open(&partition, &io).await;
        expected.extend(unsynced);
        assert_eq!(read_all(&log).await, expected);
        log.close().await.unwrap();
    });
}

#[test]
fn a_failed_segment_creation_at_a_roll_leaves_the_old_segment_active() {
    run(|| async {
        let dir = TestDir::new("roll-create");
        let partition = dir.partition();
        let io = FaultIo::new();
        let log = open(&partition, &io).await;
        let mut expected = append_all(&log, &[batch(40_000, 1)]).await;
        // The next append rolls: the truncate of the old segment (a write) succeeds, the
        // creation of the new one fails.
        io.inject(FaultPlan {
            fault: Fault::Errno(EIO),
            operations: Operations::Writes,
            after: 1,
            count: 1,
        });
        let failed = log.append(validated(&batch(40_000, 2))).await;
        assert!(matches!(failed, Err(StorageError::Io(_))), "{failed:?}");
        assert_eq!(io.injected(), 1);
        assert_eq!(segment_files(&partition).len(), 1);
        // Both a small append into the old segment and one that rolls work afterwards.
        expected.extend(append_all(&log, &[batch(10, 3), batch(40_000, 4)]).await);
        assert_eq!(segment_files(&partition).len(), 2);
        assert_eq!(read_all(&log).await, expected);
        log.close().await.unwrap();
        let log = open(&partition, &io).await;
        assert_eq!(read_all(&log).await, expected);
        log.close().await.unwrap();
    });
}

#[test]
fn preallocation_doubles_from_a_small_first_step_and_a_failed_growth_fails_only_its_append() {
    run(|| async {
        let dir = TestDir::new("prealloc-grow");
        let partition = dir.partition();
        let io = FaultIo::new();
        let config = LogConfig {
            segment_bytes: 1 << 20,
            segment_preallocate_bytes: 64 * 1024,
            ..config()
        };
        let log = PartitionLog::open_with_io(
            &crate::common::context(),
            &partition,
            config,
            Rc::new(io.clone()),
        )
        .await
        .unwrap();
        // The third fallocate (32 KiB -> 64 KiB) fails with a full disk, once.
        io.inject(FaultPlan {
            fault: Fault::Errno(ENOSPC),
            operations: Operations::Preallocations,
            after: 2,
            count: 1,
        });
        let mut expected = Vec::new();
        let mut sizes = Vec::new();
        for timestamp in 0..60 {
            let before = log.log_end_offset();
            match log.append(validated(&batch(3000, timestamp))).await {
                Ok(info) => expected.push((
                    info.base_offset,
                    stored(&batch(3000, timestamp), info.base_offset),
                )),
                Err(StorageError::Io(error)) => {
                    assert_eq!(error.kind(), ErrorKind::StorageFull);
                    assert_eq!(
                        log.log_end_offset(),
                        before,
                        "a failed append publishes nothing"
                    );
                    assert_eq!(read_all(&log).await, expected, "reads keep working");
                }
                Err(error) => panic!("not an I/O error: {error}"),
            }
            let size = file_bytes(&segment_files(&partition)[0].1);
            if sizes.last() != Some(&size) {
                sizes.push(size);
            }
        }
        assert_eq!(io.injected(), 1);
        assert_eq!(expected.len(), 59);
        let kib: Vec<u64> = sizes.iter().map(|size| size / 1024).collect();
        assert_eq!(kib, [16, 32, 64, 128, 192], "steps double up to 64 KiB");
        drop(log);
        let log = open(&partition, &io).await;
        assert_eq!(read_all(&log).await, expected);
        log.close().await.unwrap();
    });
}

#[test]
fn an_idle_partition_takes_kilobytes_of_disk() {
    use std::os::unix::fs::MetadataExt;
    /// Disk one partition with one small record may take (st_blocks).
    const IDLE_PARTITION_DISK_BYTES_MAX: u64 = 64 * 1024;
    run(|| async {
        let dir = TestDir::new("idle-disk");
        let mut logs = Vec::new();
        for partition in 0..64 {
            let path = dir.partition().join(format!("p-{partition}"));
            let log = PartitionLog::open(&crate::common::context(), &path, LogConfig::default())
                .await
                .unwrap();
            append_all(&log, &[batch(100, partition)]).await;
            log.sync_to(i64::MAX).await.unwrap();
            logs.push((path, log));
        }
        for (path, _) in &logs {
            let disk_bytes: u64 = std::fs::read_dir(path)
                .unwrap()
                .map(|entry| entry.unwrap().metadata().unwrap().blocks() * 512)
                .sum();
            assert!(
                disk_bytes <= IDLE_PARTITION_DISK_BYTES_MAX,
                "{} takes {disk_bytes} bytes of disk",
                path.display()
            );
        }
        for (_, log) in logs {
            log.close().await.unwrap();
        }
    });
}
