//! Kafka's per-topic background flush: `flush.messages` and `flush.ms`.
//!
//! acks=all already waits for fdatasync, and acks=1 for the write to the file; these configs let
//! a topic bound how much acknowledged-but-unsynced data acks=1 (and acks=0) can leave in the
//! page cache of the disk. As in Kafka, both default to "never" (`i64::MAX`).
//!
//! - `flush.messages = N`: an append that leaves N or more records unsynced waits for an
//!   fdatasync covering it before it is answered (Kafka flushes in the append path too).
//! - `flush.ms = T`: a task per shard (`tasks::flush`) checks every few milliseconds and syncs each
//!   partition whose unsynced data has waited T ms or more since its last flush.
//!
//! Either way the sync is the log's group-committed `sync_to`, shared with acks=all producers.

use super::Partition;
use crate::clock::now_ms;
use crate::cluster::topic_config::TopicConfig;

/// A topic's flush configs. `i64::MAX` (Kafka's default) means never.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    pub messages: i64,
    pub ms: i64,
}

impl FlushPolicy {
    pub fn of(config: &TopicConfig) -> FlushPolicy {
        FlushPolicy {
            messages: config.flush_messages,
            ms: config.flush_ms,
        }
    }

    /// Whether an append that leaves `unsynced_records` records unsynced must wait for a sync.
    pub fn append_must_sync(&self, unsynced_records: i64) -> bool {
        unsynced_records >= self.messages
    }

    /// Whether the flush task syncs a partition with unsynced data last flushed at
    /// `last_flush_ms`.
    pub fn time_to_flush(&self, last_flush_ms: i64, now_ms: i64) -> bool {
        self.ms != i64::MAX && now_ms.saturating_sub(last_flush_ms) >= self.ms
    }
}

impl Partition {
    /// Records appended but not yet covered by an fdatasync.
    pub fn unsynced_records(&self) -> i64 {
        (self.log.log_end_offset() - self.log.synced_offset()).max(0)
    }

    /// Syncs the partition if its unsynced data has waited `flush.ms` since the last flush.
    pub async fn flush_if_due(&self) {
        let now = now_ms();
        if self.unsynced_records() == 0 {
            // Nothing waits: the clock starts with the next unsynced append.
            self.last_flush_ms.set(now);
            return;
        }
        if !self
            .flush
            .get()
            .time_to_flush(self.last_flush_ms.get(), now)
        {
            return;
        }
        self.last_flush_ms.set(now);
        if let Err(e) = self.log.sync_to(i64::MAX).await {
            // The log logs its own I/O failures once per run; this only adds the cause.
            log::debug!("flush.ms sync of {} failed: {e}", self.dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn topic(configs: &[(&str, &str)]) -> TopicConfig {
        TopicConfig::parse(
            &configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    #[test]
    fn defaults_never_flush() {
        let policy = FlushPolicy::of(&topic(&[]));
        assert!(!policy.append_must_sync(1_000_000));
        assert!(!policy.time_to_flush(0, i64::MAX));
    }

    #[test]
    fn flush_messages_counts_unsynced_records() {
        let policy = FlushPolicy::of(&topic(&[("flush.messages", "3")]));
        assert!(!policy.append_must_sync(2));
        assert!(policy.append_must_sync(3));
        assert!(policy.append_must_sync(30));
    }

    #[test]
    fn flush_ms_counts_from_the_last_flush() {
        let policy = FlushPolicy::of(&topic(&[("flush.ms", "100")]));
        assert!(!policy.time_to_flush(1_000, 1_099));
        assert!(policy.time_to_flush(1_000, 1_100));
        let always = FlushPolicy::of(&topic(&[("flush.ms", "0")]));
        assert!(always.time_to_flush(1_000, 1_000));
    }
}
