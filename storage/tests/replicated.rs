//! `PartitionLog::append_replicated`, a follower's append: batches are written byte for byte as
//! the leader stored them (base offsets and partition leader epochs kept), from the cache, from
//! disk and after a crash; batches that do not continue the log are refused and change nothing.

mod common;

use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use common::*;
use storage::fault::{CrashOptions, FaultIo};
use storage::{LogConfig, PartitionLog, StorageContext, StorageError, ValidatedBatches};

/// Segments of 8 KiB: a few of the batches below roll, so kept offsets cross segment files.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 8 * 1024,
        index_interval_bytes: 512,
        ..LogConfig::default()
    }
}

/// A leader's stored batch of `records` records: base offset `base`, epoch `epoch`, the CRC the
/// producer computed (neither field is covered by it).
fn leader_batch(base: i64, records: usize, epoch: i32, fill: u8) -> Vec<u8> {
    let records: Vec<_> = (0..records)
        .map(|i| record(1_000 + i as i64, 300, fill))
        .collect();
    let mut batch = encode_batch(&records);
    record_batch::set_base_offset(&mut batch, base);
    record_batch::set_partition_leader_epoch(&mut batch, epoch);
    batch
}

/// What one fetch of the leader returns: consecutive batches from `base`, the epoch rising by one
/// every third batch, each batch holding 1 to 3 records.
fn leader_log(base: i64, count: usize, first_epoch: i32) -> Vec<(i64, Vec<u8>)> {
    let mut offset = base;
    (0..count)
        .map(|i| {
            let records = 1 + i % 3;
            let epoch = first_epoch + (i / 3) as i32;
            let batch = leader_batch(offset, records, epoch, i as u8);
            let entry = (offset, batch);
            offset += records as i64;
            entry
        })
        .collect()
}

fn concat(batches: &[(i64, Vec<u8>)]) -> ValidatedBatches {
    let bytes: Vec<u8> = batches.iter().flat_map(|(_, b)| b.clone()).collect();
    ValidatedBatches::validate(Bytes::from(bytes)).unwrap()
}

async fn open(partition: &Path, context: &StorageContext, io: &FaultIo) -> PartitionLog {
    PartitionLog::open_with_io(context, partition, config(), Rc::new(io.clone()))
        .await
        .unwrap()
}

#[test]
fn replicated_batches_keep_their_offsets_and_epochs_byte_for_byte() {
    run(|| async {
        let dir = TestDir::new("replicated-bytes");
        let partition = dir.partition();
        let io = FaultIo::new();
        let log = open(&partition, &context(), &io).await;
        let fetched = leader_log(0, 12, 3);
        // Three fetches of four batches each, as a follower appends them.
        for chunk in fetched.chunks(4) {
            let info = log.append_replicated(concat(chunk)).await.unwrap();
            assert_eq!(info.base_offset, chunk[0].0);
        }
        let end = fetched
            .last()
            .map(|(o, b)| o + 1 + last_offset_delta(b))
            .unwrap();
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(read_all(&log).await, fetched, "from the tail cache");
        log.close().await.unwrap();
        // A fresh context: nothing cached, as after a restart.
        let log = open(&partition, &StorageContext::default(), &io).await;
        assert_eq!(read_all(&log).await, fetched, "from disk");
        assert_eq!(log.log_end_offset(), end);
        log.close().await.unwrap();
    });
}

#[test]
fn replicated_batches_that_do_not_continue_the_log_are_refused_and_change_nothing() {
    run(|| async {
        let dir = TestDir::new("replicated-refused");
        let partition = dir.partition();
        let io = FaultIo::new();
        let log = open(&partition, &context(), &io).await;
        let fetched = leader_log(0, 6, 1);
        log.append_replicated(concat(&fetched[..2])).await.unwrap();
        let end = log.log_end_offset();
        assert_eq!(end, fetched[2].0);
        // Starts past the end (a gap), at an offset already held, and inside the log.
        for (base, label) in [(end + 1, "gap"), (end - 1, "overlap"), (0, "rewind")] {
            let batch = leader_batch(base, 2, 1, 9);
            match log.append_replicated(concat(&[(base, batch)])).await {
                Err(StorageError::NotContiguous { expected, found }) => {
                    assert_eq!((expected, found), (end, base), "{label}");
                }
                other => panic!("{label}: expected NotContiguous, got {other:?}"),
            }
        }
        // The first batch fits, the second leaves a hole after it: nothing is written.
        let first = leader_batch(end, 2, 1, 7);
        let holed = leader_batch(end + 3, 1, 1, 8);
        match log
            .append_replicated(concat(&[(end, first), (end + 3, holed)]))
            .await
        {
            Err(StorageError::NotContiguous { expected, found }) => {
                assert_eq!((expected, found), (end + 2, end + 3));
            }
            other => panic!("expected NotContiguous, got {other:?}"),
        }
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(read_all(&log).await, fetched[..2].to_vec());
        // The log goes on from where it was.
        log.append_replicated(concat(&fetched[2..])).await.unwrap();
        assert_eq!(read_all(&log).await, fetched);
        log.close().await.unwrap();
    });
}

#[test]
fn a_crash_keeps_every_synced_replicated_batch_and_appends_continue_after_it() {
    run(|| async {
        let dir = TestDir::new("replicated-crash");
        let partition = dir.partition();
        let io = FaultIo::new();
        let log = open(&partition, &context(), &io).await;
        let fetched = leader_log(0, 16, 5);
        log.append_replicated(concat(&fetched[..10])).await.unwrap();
        let synced_end = fetched[10].0;
        log.sync_to(synced_end).await.unwrap();
        log.append_replicated(concat(&fetched[10..])).await.unwrap();
        drop(log);
        io.crash(CrashOptions::default()).unwrap();
        let log = open(&partition, &StorageContext::default(), &io).await;
        let recovered = read_all(&log).await;
        assert_eq!(
            recovered,
            fetched[..10].to_vec(),
            "synced batches kept, unsynced ones lost whole"
        );
        assert_eq!(log.log_end_offset(), synced_end);
        // The follower fetches again from its log end, and the batches fit.
        log.append_replicated(concat(&fetched[10..])).await.unwrap();
        log.sync_to(i64::MAX).await.unwrap();
        assert_eq!(read_all(&log).await, fetched);
        log.close().await.unwrap();
    });
}
