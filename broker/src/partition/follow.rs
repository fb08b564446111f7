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
        self.maybe_snapshot(batch_bytes);
        if self.flush.get().append_must_sync(self.unsynced_records()) {
            self.log.sync_to(info.last_offset + 1).await?;
        }
        self.follow_high_watermark(leader_high_watermark);
        Ok(self.log.log_end_offset())
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

    /// Moves the high watermark up to min(`leader_high_watermark`, log end): a follower never
    /// counts as committed what it does not hold, nor what the leader has not committed.
    pub fn follow_high_watermark(&self, leader_high_watermark: i64) {
        let high_watermark = leader_high_watermark.min(self.log.log_end_offset());
        self.log.advance_high_watermark(high_watermark);
    }
}
