//! A shard's periodic background work, each a small loop with its interval named: retention,
//! the `flush.ms` timer, the consumer-group timers, the ISR shrink check, the cut-off check and, on the controller
//! shard, fencing and preferred-leader rebalancing.
//! Retention and flush run in task queues of their own with fewer shares than request handling.

pub mod cut_off;
pub mod fencing;
pub mod flush;
pub mod groups;
pub mod isr;
pub mod rebalance;
pub mod retention;

use std::rc::Rc;

use crate::shard::Shard;

/// Starts every periodic task of `shard`.
pub fn spawn_all(shard: &Rc<Shard>) {
    groups::spawn(shard.clone());
    retention::spawn(shard.clone());
    flush::spawn(shard.clone());
    fencing::spawn(shard.clone());
    cut_off::spawn(shard.clone());
    isr::spawn(shard.clone());
    rebalance::spawn(shard.clone());
}
