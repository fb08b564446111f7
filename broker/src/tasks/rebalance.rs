//! The active controller's preferred-leader rebalancing (Kafka's `auto.leader.rebalance.enable`):
//! every `--leader-imbalance-check-interval-ms`, while this broker leads the metadata quorum, the
//! partitions of brokers leading too few of the partitions they are the preferred replica of
//! (above `--leader-imbalance-per-broker-percentage`) go back to them, where they are live and in
//! the ISR (`cluster::election::rebalance_candidates` decides, `Controller::rebalance_leaders`
//! proposes). A broker that returns after a failure thus leads its partitions again once it has
//! caught up.

use std::rc::Rc;
use std::time::Duration;

use crate::cluster::controller::CONTROLLER_SHARD;
use crate::shard::Shard;

/// Starts the rebalancing task on the controller shard, unless it is turned off.
pub fn spawn(shard: Rc<Shard>) {
    if shard.id == CONTROLLER_SHARD && shard.config.auto_leader_rebalance_enable {
        glommio::spawn_local(run(shard)).detach();
    }
}

async fn run(shard: Rc<Shard>) {
    let interval = Duration::from_millis(shard.config.leader_imbalance_check_interval_ms);
    let percentage = shard.config.leader_imbalance_per_broker_percentage;
    loop {
        glommio::timer::sleep(interval).await;
        let controller = shard.controller();
        if !controller.is_active() {
            continue;
        }
        match controller.rebalance_leaders(percentage).await {
            Ok(0) => {}
            Ok(moved) => log::info!("moved {moved} leaderships back to preferred replicas"),
            Err((_, reason)) => log::warn!("preferred-leader rebalancing failed: {reason}"),
        }
    }
}
