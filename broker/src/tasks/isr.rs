//! The ISR shrink check: every `--replica-lag-time-max-ms / 2`, each partition this shard leads
//! proposes an ISR without the followers that have not caught up for `--replica-lag-time-max-ms`
//! (Kafka's `isr-expiration` task). Followers join again on their fetches (`partition::ops`).

use std::rc::Rc;

use crate::clock::now_ms;
use crate::shard::{admin, Shard};

/// Runs the shrink check of this shard.
pub fn spawn(shard: Rc<Shard>) {
    let lag_max_ms = shard.config.replica_lag_time_max_ms;
    let interval = std::time::Duration::from_millis(lag_max_ms / 2);
    let task = async move {
        loop {
            glommio::timer::sleep(interval).await;
            shrink_lagging(&shard, lag_max_ms as i64).await;
        }
    };
    glommio::spawn_local(task).detach();
}

/// Proposes the smaller ISR of each led partition with a lagging follower.
async fn shrink_lagging(shard: &Rc<Shard>, lag_max_ms: i64) {
    for (topic, index) in shard.owned_partitions() {
        let Some(partition) = shard.partition(&topic, index) else {
            continue;
        };
        let change = {
            let mut replicas = partition.replicas.borrow_mut();
            let log_end_offset = partition.log.log_end_offset();
            (replicas.shrink(log_end_offset, now_ms(), lag_max_ms))
                .map(|isr| replicas.start_change(isr))
        };
        if let Some(change) = change {
            log::info!(
                "shard {}: {topic}-{index} shrinks its ISR to {:?}",
                shard.id,
                change.isr
            );
            admin::propose_isr_change(shard, topic, index, partition, change);
        }
        glommio::yield_if_needed().await;
    }
}
