//! The partition leader epoch an append is given is stamped into every batch it writes and
//! read back, from the tail cache and from disk after a reopen.

mod common;

use bytes::Bytes;
use common::*;
use storage::{LogConfig, PartitionLog, StorageContext, ValidatedBatches, LEADER_EPOCH_DEFAULT};

fn leader_epochs(bytes: &[u8]) -> Vec<i32> {
    split_batches(bytes)
        .iter()
        .map(|(_, batch)| {
            record_batch::check_integrity(batch)
                .expect("stamped batches keep their CRC")
                .partition_leader_epoch
        })
        .collect()
}

#[test]
fn appended_batches_carry_their_leader_epoch_across_a_restart() {
    run(|| async {
        let dir = TestDir::new("leader-epoch");
        let partition = dir.partition();
        let log = PartitionLog::open(&context(), &partition, LogConfig::default())
            .await
            .unwrap();
        let batch = || encode_batch(&[record(1_000, 100, 1), record(1_001, 100, 2)]);
        let plain = ValidatedBatches::validate(Bytes::from(batch())).unwrap();
        assert_eq!(plain.leader_epoch(), LEADER_EPOCH_DEFAULT);
        log.append(plain).await.unwrap();
        let epoch_7 = ValidatedBatches::validate(Bytes::from(batch()))
            .unwrap()
            .with_leader_epoch(7);
        let info = log.append(epoch_7).await.unwrap();
        log.sync_to(info.last_offset + 1).await.unwrap();
        let cached = log.read(0, 1 << 20).await.unwrap();
        assert_eq!(leader_epochs(&cached), vec![LEADER_EPOCH_DEFAULT, 7]);
        log.close().await.unwrap();

        // A fresh context: nothing cached, as after a restart.
        let fresh = StorageContext::default();
        let reopened = PartitionLog::open(&fresh, &partition, LogConfig::default())
            .await
            .unwrap();
        let from_disk = reopened.read(0, 1 << 20).await.unwrap();
        assert_eq!(leader_epochs(&from_disk), vec![LEADER_EPOCH_DEFAULT, 7]);
        reopened.close().await.unwrap();
    });
}
