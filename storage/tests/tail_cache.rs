//! The tail cache: recent batches answered from memory, within the executor's budget, and
//! dropped when retention, close or delete make them invalid.

mod common;

use std::rc::Rc;

use bytes::Bytes;
use common::*;
use storage::fault::{Fault, FaultIo, FaultPlan, Operations, EIO};
use storage::{LogConfig, PartitionLog, RetentionPolicy, ValidatedBatches};

/// Segments of 4096 bytes hold two of the ~1500-byte batches below: a third one rolls.
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

/// Appends `count` batches; returns the stored form of each with its base offset.
async fn append_batches(log: &PartitionLog, count: usize, timestamp: i64) -> Vec<(i64, Vec<u8>)> {
    let mut stored_batches = Vec::new();
    for index in 0..count {
        let bytes = batch(timestamp, index as u8);
        let validated = ValidatedBatches::validate(Bytes::copy_from_slice(&bytes)).unwrap();
        let info = log.append(validated).await.unwrap();
        stored_batches.push((info.base_offset, stored(&bytes, info.base_offset)));
    }
    stored_batches
}

fn fail_every_read(io: &FaultIo) {
    io.inject(FaultPlan {
        fault: Fault::Errno(EIO),
        operations: Operations::Reads,
        after: 0,
        count: u64::MAX,
    });
}

#[test]
fn tail_reads_are_served_from_memory_and_older_ones_from_disk() {
    run(|| async {
        let dir = TestDir::new("tail-cache-memory");
        let io = FaultIo::new();
        let log = PartitionLog::open_with_io(
            &crate::common::context(),
            &dir.partition(),
            config(),
            Rc::new(io.clone()),
        )
        .await
        .unwrap();
        let batch_bytes = batch(0, 0).len();
        // Room for the last three batches (each costs its bytes and a small overhead).
        crate::common::context().set_tail_cache_bytes_max(3 * batch_bytes + 3 * 96);
        let batches = append_batches(&log, 6, 0).await;
        assert!(
            crate::common::context().tail_cache_bytes()
                <= crate::common::context().tail_cache_bytes_max()
        );
        fail_every_read(&io);
        // Every read now fails at the disk; the last three batches still come back, from
        // memory, whole and up to their segment's end (segments hold two batches).
        for (index, (base_offset, _)) in batches.iter().enumerate().skip(3) {
            let bytes = log.read(*base_offset, 1 << 20).await.unwrap();
            let segment_end = (index / 2 + 1) * 2;
            assert_eq!(split_batches(&bytes), batches[index..segment_end]);
        }
        let bytes = log.read(batches[3].0, 1).await.unwrap();
        assert_eq!(split_batches(&bytes), batches[3..4], "KIP-74");
        // The older ones need the disk.
        assert!(log.read(batches[2].0, 1 << 20).await.is_err());
        io.clear();
        let bytes = log.read(batches[2].0, batch_bytes).await.unwrap();
        assert_eq!(split_batches(&bytes), batches[2..3]);
        log.close().await.unwrap();
        assert_eq!(crate::common::context().tail_cache_bytes(), 0);
    });
}

#[test]
fn a_disabled_cache_reads_from_disk() {
    run(|| async {
        let dir = TestDir::new("tail-cache-disabled");
        let io = FaultIo::new();
        let log = PartitionLog::open_with_io(
            &crate::common::context(),
            &dir.partition(),
            config(),
            Rc::new(io.clone()),
        )
        .await
        .unwrap();
        crate::common::context().set_tail_cache_bytes_max(0);
        let batches = append_batches(&log, 2, 0).await;
        assert_eq!(crate::common::context().tail_cache_bytes(), 0);
        fail_every_read(&io);
        assert!(log.read(batches[1].0, 1 << 20).await.is_err());
        io.clear();
        let bytes = log.read(batches[0].0, 1 << 20).await.unwrap();
        assert_eq!(split_batches(&bytes), batches);
        log.delete().await.unwrap();
    });
}

#[test]
fn retention_and_delete_drop_cached_batches() {
    run(|| async {
        let dir = TestDir::new("tail-cache-retention");
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        crate::common::context().set_tail_cache_bytes_max(1 << 20);
        // Two full segments of old batches, then the active one.
        append_batches(&log, 4, 1_000).await;
        let recent = append_batches(&log, 1, 9_999_000).await;
        let cached_before = crate::common::context().tail_cache_bytes();
        let policy = RetentionPolicy {
            retention_ms: 60_000,
            retention_bytes: -1,
            now_ms: 10_000_000,
        };
        let outcome = log.apply_retention(policy).await.unwrap();
        assert_eq!(outcome.segments_deleted, 2);
        assert_eq!(outcome.log_start_offset, recent[0].0);
        assert_eq!(
            crate::common::context().tail_cache_bytes(),
            cached_before / 5
        );
        let bytes = log.read(recent[0].0, 1 << 20).await.unwrap();
        assert_eq!(split_batches(&bytes), recent);
        log.delete().await.unwrap();
        assert_eq!(crate::common::context().tail_cache_bytes(), 0);
    });
}

#[test]
fn reopened_logs_start_with_an_empty_cache() {
    run(|| async {
        let dir = TestDir::new("tail-cache-reopen");
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        let batches = append_batches(&log, 3, 0).await;
        // Dropped without close (a crash): its cached batches go with it.
        drop(log);
        assert_eq!(crate::common::context().tail_cache_bytes(), 0);
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config())
            .await
            .unwrap();
        let bytes = log.read(0, 1 << 20).await.unwrap();
        assert_eq!(split_batches(&bytes), batches[..2]);
        let more = append_batches(&log, 1, 0).await;
        let bytes = log.read(more[0].0, 1 << 20).await.unwrap();
        assert_eq!(split_batches(&bytes), more);
        log.close().await.unwrap();
    });
}

#[test]
fn sequential_reads_below_the_cache_are_served_from_the_readahead_chunk() {
    run(|| async {
        let dir = TestDir::new("read-ahead");
        let config = LogConfig::default();
        let log = PartitionLog::open(&crate::common::context(), &dir.partition(), config.clone())
            .await
            .unwrap();
        let batches = append_batches(&log, 40, 0).await;
        log.close().await.unwrap();
        let io = FaultIo::new();
        let log = PartitionLog::open_with_io(
            &crate::common::context(),
            &dir.partition(),
            config,
            Rc::new(io.clone()),
        )
        .await
        .unwrap();
        // The first read goes to the disk and reads ahead; 40 batches of ~1.5 KiB fit in one
        // chunk, so every later read is answered with the disk failing.
        let batch_bytes = batches[0].1.len();
        let first = log.read(0, 4 * batch_bytes).await.unwrap();
        assert_eq!(split_batches(&first), batches[..4]);
        assert!(crate::common::context().read_ahead_bytes() >= 40 * batch_bytes);
        fail_every_read(&io);
        for (index, (base_offset, _)) in batches.iter().enumerate().skip(4) {
            let bytes = log.read(*base_offset, batch_bytes).await.unwrap();
            assert_eq!(split_batches(&bytes), batches[index..index + 1]);
        }
        io.clear();
        log.close().await.unwrap();
        assert_eq!(crate::common::context().read_ahead_bytes(), 0);
    });
}

#[test]
fn two_contexts_on_one_thread_share_neither_entries_nor_budgets() {
    run(|| async {
        let dir = TestDir::new("two-contexts");
        // `a` keeps about two batches in its tail cache and one sealed file open; `b` caches no
        // tail and keeps four files open.
        let a = storage::StorageContext::new(storage::StorageBudgets {
            tail_cache_bytes_max: 4000,
            sealed_segment_files_max: 1,
            ..storage::StorageBudgets::default()
        });
        let b = storage::StorageContext::new(storage::StorageBudgets {
            tail_cache_bytes_max: 0,
            sealed_segment_files_max: 4,
            ..storage::StorageBudgets::default()
        });
        let log_a = PartitionLog::open(&a, &dir.path.join("a-0"), config())
            .await
            .unwrap();
        let log_b = PartitionLog::open(&b, &dir.path.join("b-0"), config())
            .await
            .unwrap();
        // Ten batches, two per segment: four sealed segments and the active one.
        let batches_a = append_batches(&log_a, 10, 0).await;
        let batches_b = append_batches(&log_b, 10, 0).await;
        assert!(a.tail_cache_bytes() > 0 && a.tail_cache_bytes() <= 4000);
        assert_eq!(b.tail_cache_bytes(), 0);
        for offset in [0, 2, 4, 6] {
            let index = offset as usize;
            let bytes = log_a.read(offset, 1).await.unwrap();
            assert_eq!(split_batches(&bytes), batches_a[index..index + 1]);
            let bytes = log_b.read(offset, 1).await.unwrap();
            assert_eq!(split_batches(&bytes), batches_b[index..index + 1]);
        }
        assert_eq!(a.sealed_segment_files_open(), 1);
        assert_eq!(b.sealed_segment_files_open(), 4);
        assert!(a.read_ahead_bytes() > 0 && b.read_ahead_bytes() > 0);
        assert!(a.sealed_index_cache_bytes() > 0 && b.sealed_index_cache_bytes() > 0);
        let a_cached = (a.tail_cache_bytes(), a.read_ahead_bytes());
        let a_index_bytes = a.sealed_index_cache_bytes();
        log_b.close().await.unwrap();
        assert_eq!(b.read_ahead_bytes(), 0);
        assert_eq!(b.sealed_index_cache_bytes(), 0);
        assert_eq!(b.sealed_segment_files_open(), 0);
        assert_eq!((a.tail_cache_bytes(), a.read_ahead_bytes()), a_cached);
        assert_eq!(a.sealed_index_cache_bytes(), a_index_bytes);
        assert_eq!(a.sealed_segment_files_open(), 1);
        log_a.close().await.unwrap();
        assert_eq!(a.tail_cache_bytes(), 0);
    });
}
