//! The `flush.ms` timer: syncs each partition whose unsynced data has waited its topic's
//! `flush.ms` (see `partition::flush`).

use std::rc::Rc;

use crate::shard::Shard;

/// How often the flush task looks at the shard's partitions. A `flush.ms` below this is
/// honoured to within one interval.
pub const FLUSH_CHECK_INTERVAL_MS: u64 = 10;

/// CPU shares of the flush task queue (produce and fetch have 1000).
const FLUSH_SHARES: usize = 100;

/// Runs the `flush.ms` checks of this shard in a task queue of their own.
pub fn spawn(shard: Rc<Shard>) {
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
    let timed = (metadata.topics.values()).filter(|topic| topic.config.flush_ms != i64::MAX);
    for topic in timed {
        for partition in shard.partitions_of(&topic.name) {
            partition.flush_if_due().await;
            glommio::yield_if_needed().await;
        }
    }
}
