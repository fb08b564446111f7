//! The consumer-group timers: session expiry and rebalance deadlines every
//! [`GROUP_TICK_MS`], and offset retention every [`OFFSETS_RETENTION_CHECK_INTERVAL_MS`].

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::groups;
use crate::shard::Shard;

/// How often each shard checks session timeouts and rebalance deadlines.
pub const GROUP_TICK_MS: u64 = 100;

/// How often each shard looks for committed offsets past their retention.
pub const OFFSETS_RETENTION_CHECK_INTERVAL_MS: u64 = 60_000;

/// Runs the group timers of this shard's groups forever.
pub fn spawn(shard: Rc<Shard>) {
    glommio::spawn_local(run_timers(shard)).detach();
}

async fn run_timers(shard: Rc<Shard>) {
    let retention_check_interval = Duration::from_millis(OFFSETS_RETENTION_CHECK_INTERVAL_MS);
    let mut last_retention_check = Instant::now();
    loop {
        glommio::timer::sleep(Duration::from_millis(GROUP_TICK_MS)).await;
        let now = Instant::now();
        shard.groups.tick(now);
        if now.duration_since(last_retention_check) > retention_check_interval {
            last_retention_check = now;
            groups::expire_offsets(&*shard).await;
        }
    }
}
