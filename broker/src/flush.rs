//! Kafka's per-topic background flush: `flush.messages` and `flush.ms`.
//!
//! acks=all already waits for fdatasync, and acks=1 for the write to the file; these configs let
//! a topic bound how much acknowledged-but-unsynced data acks=1 (and acks=0) can leave in the
//! page cache of the disk. As in Kafka, both default to "never" (`i64::MAX`).
//!
//! - `flush.messages = N`: an append that leaves N or more records unsynced waits for an
//!   fdatasync covering it before it is answered (Kafka flushes in the append path too).
//! - `flush.ms = T`: a task per shard checks every [`FLUSH_CHECK_INTERVAL_MS`] and syncs each
//!   partition whose unsynced data has waited T ms or more since its last flush.
//!
//! Either way the sync is the log's group-committed `sync_to`, shared with acks=all producers.

use std::rc::Rc;

use crate::ops::now_ms;
use crate::shard::{Partition, Shard};
use crate::topic_config::TopicConfig;

/// How often the flush task looks at the shard's partitions. A `flush.ms` below this is
/// honoured to within one interval.
pub const FLUSH_CHECK_INTERVAL_MS: u64 = 10;

/// CPU shares of the flush task queue (produce and fetch have 1000).
const FLUSH_SHARES: usize = 100;

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

/// Records in `partition` appended but not yet covered by an fdatasync.
pub fn unsynced_records(partition: &Partition) -> i64 {
    let log = &partition.log;
    (log.log_end_offset() - log.synced_offset()).max(0)
}

/// Runs the `flush.ms` checks of this shard in a task queue of their own.
pub fn spawn_flusher(shard: Rc<Shard>) {
    let queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(FLUSH_SHARES),
        glommio::Latency::NotImportant,
        "flush",
    );
    let interval = std::time::Duration::from_millis(FLUSH_CHECK_INTERVAL_MS);
    let task = async move {
        loop {
            glommio::timer::sleep(interval).await;
            flush_due_partitions(&shard).await;
        }
    };
    glommio::spawn_local_into(task, queue)
        .expect("the flush task queue was just created")
        .detach();
}

async fn flush_due_partitions(shard: &Shard) {
    let metadata = shard.metadata();
    let timed: Vec<(String, FlushPolicy)> = metadata
        .topics
        .values()
        .map(|topic| (topic.name.clone(), FlushPolicy::of(&topic.config)))
        .filter(|(_, policy)| policy.ms != i64::MAX)
        .collect();
    for (topic, policy) in timed {
        for partition in shard.partitions_of(&topic) {
            flush_if_due(&partition, &policy).await;
            glommio::yield_if_needed().await;
        }
    }
}

async fn flush_if_due(partition: &Partition, policy: &FlushPolicy) {
    let now = now_ms();
    if unsynced_records(partition) == 0 {
        // Nothing waits: the clock starts with the next unsynced append.
        partition.last_flush_ms.set(now);
        return;
    }
    if !policy.time_to_flush(partition.last_flush_ms.get(), now) {
        return;
    }
    partition.last_flush_ms.set(now);
    if let Err(e) = partition.log.sync_to(i64::MAX).await {
        // The log logs its own I/O failures once per run; this only adds the cause.
        log::debug!("flush.ms sync of {} failed: {e}", partition.dir.display());
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
