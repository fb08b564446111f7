//! A follower's side of a partition: batches fetched from the leader are appended as the leader
//! stored them, the producer state observes them (so that it is current when this broker
//! becomes the leader), and the high watermark follows the leader's.

use storage::{StorageError, ValidatedBatches};

use super::Partition;
use crate::producers::BatchIdentity;
use record_batch::BatchHeader;

impl Partition {
    /// Appends batches fetched from the leader (`append_replicated`: offsets and epochs kept),
    /// observes each in the producer state, syncs only if the topic's `flush.messages` asks
    /// (as Kafka's followers, which do not fsync per fetch), and
    /// moves the high watermark up to min(`leader_high_watermark`, log end). Returns the log end.
    pub async fn append_fetched(
        &self,
        batches: ValidatedBatches,
        leader_high_watermark: i64,
    ) -> Result<i64, StorageError> {
        let batch_bytes = batches.len_bytes() as u64;
        // A second handle on the bytes (no copy), to walk the batches once they are stored.
        let bytes = batches.bytes().clone();
        // Counted until the producer state has observed the batches, or the append failed.
        let in_flight = ReplicatedInFlight::start(self);
        let info = self.log.append_replicated(batches).await?;
        {
            let mut producers = self.producers.borrow_mut();
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let header = BatchHeader::parse(rest).expect("validated batches parse");
                let identity = BatchIdentity::of(&header);
                producers.observe_stored(&identity, header.base_offset, header.max_timestamp);
                rest = &rest[header.total_bytes()..];
            }
        }
        drop(in_flight);
        self.maybe_snapshot(batch_bytes);
        if self.flush.get().append_must_sync(self.unsynced_records()) {
            self.log.sync_to(info.last_offset + 1).await?;
        }
        self.follow_high_watermark(leader_high_watermark);
        Ok(self.log.log_end_offset())
    }

    /// Waits until every append of fetched batches already started has been observed by the
    /// producer state (or has failed): a partition that became leader while one was being
    /// written checks a produced batch only against a producer state that knows it.
    pub(super) async fn replicated_appends_settled(&self) {
        while self.replicated_in_flight.get() > 0 {
            let settled = self.replicated_settled.listen();
            if self.replicated_in_flight.get() == 0 {
                return;
            }
            settled.await;
        }
    }

    /// Cuts the log at `offset` (a divergent suffix, see `replication::truncation`) and
    /// rebuilds the producer state, which may remember batches that are gone.
    pub async fn truncate_to(&self, offset: i64) -> Result<(), StorageError> {
        let cut = offset < self.log.log_end_offset();
        self.log.truncate_to(offset).await?;
        if !cut {
            return Ok(());
        }
        let rebuilt = super::rebuild_producer_states(&self.log, &self.dir).await?;
        *self.producers.borrow_mut() = rebuilt;
        Ok(())
    }

    /// Empties the log and starts it again at `offset`, the leader's log start past the local
    /// log end (`replication::truncation::start_at_leader_log_start`); the producer state,
    /// which remembers batches that are gone, starts empty too.
    pub async fn reset_to(&self, offset: i64) -> Result<(), StorageError> {
        self.log.reset_to(offset).await?;
        let rebuilt = super::rebuild_producer_states(&self.log, &self.dir).await?;
        *self.producers.borrow_mut() = rebuilt;
        Ok(())
    }

    /// Moves the log start up to the leader's `leader_log_start`, no further than the high
    /// watermark (`log_start_to_follow`), so DeleteRecords and retention on the leader shrink
    /// every replica (Kafka's follower calls `maybeIncrementLogStartOffset` with the log start
    /// each fetch response carries). Checkpointed durably like a DeleteRecords on the leader.
    pub async fn follow_log_start(&self, leader_log_start: i64) -> Result<(), StorageError> {
        let log = &self.log;
        let to = log_start_to_follow(
            log.log_start_offset(),
            log.high_watermark(),
            leader_log_start,
        );
        if let Some(offset) = to {
            log.delete_records(offset).await?;
        }
        Ok(())
    }

    /// Moves the high watermark up to min(`leader_high_watermark`, log end): a follower never
    /// counts as committed what it does not hold, nor what the leader has not committed.
    pub fn follow_high_watermark(&self, leader_high_watermark: i64) {
        let high_watermark = leader_high_watermark.min(self.log.log_end_offset());
        self.log.advance_high_watermark(high_watermark);
    }
}

/// Where a follower's log start moves, given the leader's (pure): up to min(leader's log start,
/// own high watermark), if that is past its own; None otherwise (-1 from a leader that sends no
/// log start moves nothing). Never past the high watermark: a follower behind the leader's log
/// start catches up through OFFSET_OUT_OF_RANGE, not by moving its start past what it holds.
pub fn log_start_to_follow(
    log_start_offset: i64,
    high_watermark: i64,
    leader_log_start: i64,
) -> Option<i64> {
    let to = leader_log_start.min(high_watermark);
    (to > log_start_offset).then_some(to)
}

/// One append of fetched batches not yet observed by the producer state: counted from its
/// start until dropped (after the observation, or on an error or cancellation).
struct ReplicatedInFlight<'a> {
    partition: &'a Partition,
}

impl<'a> ReplicatedInFlight<'a> {
    fn start(partition: &'a Partition) -> ReplicatedInFlight<'a> {
        let count = &partition.replicated_in_flight;
        count.set(count.get() + 1);
        ReplicatedInFlight { partition }
    }
}

impl Drop for ReplicatedInFlight<'_> {
    fn drop(&mut self) {
        let count = &self.partition.replicated_in_flight;
        count.set(count.get() - 1);
        if count.get() == 0 {
            self.partition.replicated_settled.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::BTreeMap;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use storage::ValidatedBatches;

    use crate::cluster::metadata::PartitionAssignment;
    use crate::cluster::topic_config::TopicConfig;
    use crate::partition::{wait_for_any, OpenOptions, Partition, Replication, WaitFor};

    const NODE: i32 = 1;
    const OTHER: i32 = 2;
    const PRODUCER_ID: i64 = 42;

    /// Two records of producer `PRODUCER_ID` at sequence 0, at offset 0, stamped with `epoch`.
    fn idempotent_batch(epoch: i32) -> Bytes {
        let mut body = Vec::new();
        for i in 0..2 {
            record_batch::encode_record(&mut body, i, 0, None, Some(b"value"), &[]);
        }
        let fields = record_batch::BatchFields {
            producer_id: PRODUCER_ID,
            producer_epoch: 0,
            base_sequence: 0,
            ..record_batch::BatchFields::plain(1_000)
        };
        let mut batch = record_batch::encode_batch(&fields, 2, &body).to_vec();
        record_batch::set_partition_leader_epoch(&mut batch, epoch);
        Bytes::from(batch)
    }

    fn assignment(leader: i32, leader_epoch: i32) -> PartitionAssignment {
        PartitionAssignment {
            replicas: vec![OTHER, NODE],
            isr: vec![OTHER, NODE],
            leader,
            leader_epoch,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    async fn open(dir: &std::path::Path) -> Rc<Partition> {
        let options = OpenOptions {
            storage: storage::StorageContext::default(),
            default_segment_bytes: 1 << 20,
            snapshot_interval_bytes: 1 << 30,
            power_loss_io: None,
            node_id: NODE,
            cut_off: Rc::new(Cell::new(false)),
        };
        let config = TopicConfig::parse(&BTreeMap::new());
        let id = uuid::Uuid::from_u128(9);
        let opened = Partition::open(dir.join("t-0"), id, true, &config, &options).await;
        Rc::new(opened.unwrap())
    }

    const REPLICATION: Replication = Replication {
        min_insync_replicas: 1,
        timeout: Duration::from_secs(1),
    };

    #[test]
    fn a_followers_long_poll_ends_when_the_high_watermark_passes_what_it_was_answered() {
        let dir = std::env::temp_dir().join(format!("sluice-follow-hw-{}", std::process::id()));
        glommio::LocalExecutor::default().run(async {
            let partition = open(&dir).await;
            partition.set_assignment(&assignment(NODE, 1), 0);
            let batch = ValidatedBatches::validate(idempotent_batch(-1)).unwrap();
            partition.append(batch, 1, REPLICATION).await.unwrap();
            // The follower fetched at 0: the high watermark stays there, its records are sent.
            let (read, _) = partition.read_for_follower(OTHER, 0, 1 << 20, 1).await;
            assert_eq!((read.high_watermark, read.records.is_empty()), (0, false));
            assert!(!read.high_watermark_moved);
            // Its next fetch, at the log end, was answered that high watermark and waits...
            let deadline = Instant::now() + Duration::from_secs(60);
            let ended = Rc::new(Cell::new(false));
            let waiting = glommio::spawn_local({
                let (partition, ended) = (partition.clone(), ended.clone());
                async move {
                    wait_for_any(vec![(Some(partition), 2, 0)], WaitFor::LogEnd, deadline).await;
                    ended.set(true);
                }
            });
            for _ in 0..10 {
                futures_lite::future::yield_now().await;
            }
            assert!(!ended.get(), "nothing new: the poll waits");
            // ...until the high watermark moves (here by that same fetch, recorded at the
            // leader), with no record appended: it ends so the follower learns it.
            let (read, _) = partition.read_for_follower(OTHER, 2, 1 << 20, 2).await;
            assert_eq!(read.high_watermark, 2);
            assert!(read.high_watermark_moved, "its fetch is answered at once");
            waiting.await;
            assert!(Instant::now() < deadline);
            // Answered the current high watermark, a poll waits for its deadline.
            let start = Instant::now();
            let short = start + Duration::from_millis(50);
            wait_for_any(vec![(Some(partition), 2, 2)], WaitFor::LogEnd, short).await;
            assert!(Instant::now() >= short);
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_followers_log_start_follows_the_leaders_up_to_its_high_watermark() {
        use super::log_start_to_follow;
        // (own start, own high watermark, leader's start) -> new start
        assert_eq!(log_start_to_follow(0, 10, 4), Some(4));
        assert_eq!(log_start_to_follow(0, 10, 10), Some(10));
        assert_eq!(
            log_start_to_follow(0, 10, 25),
            Some(10),
            "not past the high watermark"
        );
        assert_eq!(log_start_to_follow(4, 10, 4), None);
        assert_eq!(log_start_to_follow(6, 10, 4), None, "never back");
        assert_eq!(log_start_to_follow(10, 10, 25), None);
        assert_eq!(log_start_to_follow(0, 10, -1), None, "no log start sent");
    }

    #[test]
    fn delete_records_on_a_follower_is_not_leader_or_follower() {
        let dir = std::env::temp_dir().join(format!("sluice-follow-dr-{}", std::process::id()));
        glommio::LocalExecutor::default().run(async {
            let partition = open(&dir).await;
            partition.set_assignment(&assignment(OTHER, 3), 0);
            let fetched = ValidatedBatches::validate(idempotent_batch(3)).unwrap();
            assert_eq!(partition.append_fetched(fetched, 2).await.unwrap(), 2);
            let refused = partition.delete_records(1).await;
            assert_eq!(
                refused,
                Err(kafka_protocol::error::ResponseError::NotLeaderOrFollower)
            );
            assert_eq!(partition.log.log_start_offset(), 0);
            // The leader's log start, carried by a fetch response, moves it.
            partition.follow_log_start(1).await.unwrap();
            assert_eq!(partition.log.log_start_offset(), 1);
            partition.set_assignment(&assignment(NODE, 4), 0);
            assert_eq!(partition.delete_records(2).await, Ok(2));
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_new_leader_knows_the_idempotent_batches_it_was_still_writing_as_a_follower() {
        let dir = std::env::temp_dir().join(format!("sluice-follow-{}", std::process::id()));
        glommio::LocalExecutor::default().run(async {
            let partition = open(&dir).await;
            partition.set_assignment(&assignment(OTHER, 3), 0);
            // The batch fetched from the old leader, still being written...
            let fetched = ValidatedBatches::validate(idempotent_batch(3)).unwrap();
            let follower = partition.clone();
            let write =
                glommio::spawn_local(async move { follower.append_fetched(fetched, 0).await });
            futures_lite::future::yield_now().await;
            // ...when this broker becomes the leader and the producer retries the same batch.
            partition.set_assignment(&assignment(NODE, 4), 0);
            let retried = ValidatedBatches::validate(idempotent_batch(-1)).unwrap();
            let appended = partition.append(retried, 1, REPLICATION).await.unwrap();
            assert_eq!(appended.base_offset, 0, "answered as the stored batch");
            assert_eq!(partition.log.log_end_offset(), 2, "not appended twice");
            assert_eq!(write.await.unwrap(), 2);
        });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
