//! The high watermark: its own value, `log_start <= HW <= LEO`, moved only by its owner (and
//! pulled up by a moving log start); consumer reads stop at it.

mod common;

use bytes::Bytes;
use common::*;
use storage::{LogConfig, PartitionLog, StorageContext, ValidatedBatches};

fn validated() -> ValidatedBatches {
    let batch = encode_batch(&[record(1_000, 100, 1), record(1_001, 100, 2)]);
    ValidatedBatches::validate(Bytes::from(batch)).unwrap()
}

fn assert_bounds(log: &PartitionLog) {
    assert!(log.log_start_offset() <= log.high_watermark());
    assert!(log.high_watermark() <= log.log_end_offset());
}

#[test]
fn the_high_watermark_is_separate_from_the_log_end_and_bounds_consumer_reads() {
    run(|| async {
        let dir = TestDir::new("high-watermark");
        let log = PartitionLog::open(&context(), &dir.partition(), LogConfig::default())
            .await
            .unwrap();
        assert_eq!(log.high_watermark(), 0);
        log.append(validated()).await.unwrap();
        log.append(validated()).await.unwrap();
        assert_eq!((log.high_watermark(), log.log_end_offset()), (0, 4));
        assert_bounds(&log);
        // Nothing committed yet: consumers see nothing, the log itself has both batches.
        assert!(log.read_committed(0, 1 << 20).await.unwrap().is_empty());
        assert_eq!(split_batches(&log.read(0, 1 << 20).await.unwrap()).len(), 2);

        log.advance_high_watermark(2);
        let committed = split_batches(&log.read_committed(0, 1 << 20).await.unwrap());
        assert_eq!(
            committed.iter().map(|(base, _)| *base).collect::<Vec<_>>(),
            [0]
        );
        assert!(log.read_committed(2, 1 << 20).await.unwrap().is_empty());
        assert!(
            log.read_committed(5, 1 << 20).await.is_err(),
            "past the log end"
        );
        // It never moves back.
        log.advance_high_watermark(1);
        assert_eq!(log.high_watermark(), 2);

        // DeleteRecords past the high watermark pulls it up to the new log start.
        log.delete_records(3).await.unwrap();
        assert_eq!(log.high_watermark(), 3);
        assert_bounds(&log);
        log.advance_high_watermark(4);
        assert_eq!(log.high_watermark(), log.log_end_offset());
        log.close().await.unwrap();

        // Nothing recovered is known to be committed (a restarted leader's tail may be on it
        // alone): the log opens with its high watermark at its start, and consumers see
        // nothing until the replica logic raises it.
        let fresh = StorageContext::default();
        let reopened = PartitionLog::open(&fresh, &dir.partition(), LogConfig::default())
            .await
            .unwrap();
        assert_eq!(
            (reopened.high_watermark(), reopened.log_end_offset()),
            (3, 4)
        );
        assert_bounds(&reopened);
        assert!(reopened
            .read_committed(3, 1 << 20)
            .await
            .unwrap()
            .is_empty());
        reopened.advance_high_watermark(4);
        assert_eq!(reopened.high_watermark(), reopened.log_end_offset());
        reopened.close().await.unwrap();
    });
}

#[test]
#[should_panic]
fn the_high_watermark_never_passes_the_log_end() {
    run(|| async {
        let dir = TestDir::new("high-watermark-past-end");
        let log = PartitionLog::open(&context(), &dir.partition(), LogConfig::default())
            .await
            .unwrap();
        log.append(validated()).await.unwrap();
        log.advance_high_watermark(3);
    });
}
