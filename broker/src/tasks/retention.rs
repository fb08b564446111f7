//! Retention: deletes the expired segments of every partition this shard owns, every
//! `--retention-check-interval-ms`.

use std::rc::Rc;

use storage::StorageError;

use crate::groups::store::OFFSETS_TOPIC;
use crate::shard::Shard;

/// CPU shares of the retention task queue; the default queue that serves produce and fetch has
/// 1000, so retention gets a tenth of a busy shard.
const RETENTION_SHARES: usize = 100;

/// Shortest pause between retention passes, whatever `--retention-check-interval-ms` says: an
/// interval of 0 would turn the task into a busy loop.
const RETENTION_CHECK_INTERVAL_MS_MIN: u64 = 10;

/// Runs retention on this shard every `--retention-check-interval-ms`, in a task queue of its
/// own with fewer shares than request handling.
pub fn spawn(shard: Rc<Shard>) {
    let interval_ms = shard
        .config
        .retention_check_interval_ms
        .max(RETENTION_CHECK_INTERVAL_MS_MIN);
    let interval = std::time::Duration::from_millis(interval_ms);
    let queue = glommio::executor().create_task_queue(
        glommio::Shares::Static(RETENTION_SHARES),
        glommio::Latency::NotImportant,
        "retention",
    );
    let task = async move {
        loop {
            glommio::timer::sleep(interval).await;
            apply_retention(&shard).await;
        }
    };
    glommio::spawn_local_into(task, queue)
        .expect("the retention task queue was just created")
        .detach();
}

/// Deletes the expired segments of every partition this shard owns, by its topic's
/// `retention.ms` and `retention.bytes`. Topics whose `cleanup.policy` lacks `delete` are
/// skipped, as in Kafka, and so is `__consumer_offsets` (compact only): it must keep its whole
/// history until compaction exists. Errors are logged per partition and the others go on.
pub async fn apply_retention(shard: &Shard) {
    for (topic, partition) in shard.owned_partitions() {
        if topic != OFFSETS_TOPIC {
            apply_partition_retention(shard, &topic, partition).await;
        }
        glommio::yield_if_needed().await;
    }
}

async fn apply_partition_retention(shard: &Shard, topic: &str, partition: i32) {
    let metadata = shard.metadata();
    // Deleted since the pass started: nothing is left to retain.
    let (Some(meta), Some(state)) = (
        metadata.topics.get(topic),
        shard.partition(topic, partition),
    ) else {
        return;
    };
    let Some(applied) = state.apply_retention(&meta.config).await else {
        return;
    };
    match applied {
        Ok(outcome) if outcome.segments_deleted > 0 => log::info!(
            "shard {}: retention deleted {} segment(s) of {topic}-{partition}; log start offset now {}",
            shard.id,
            outcome.segments_deleted,
            outcome.log_start_offset
        ),
        Ok(_) => {}
        // The topic is being deleted and its log closed.
        Err(StorageError::Closed) => {}
        Err(e) => log::error!(
            "shard {}: retention of {topic}-{partition} failed: {e}",
            shard.id
        ),
    }
}
