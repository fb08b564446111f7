//! The follower side of replication: per shard, one fetcher task per leader broker, holding one
//! connection to that leader's Kafka listener and carrying every partition the shard follows
//! from it (`fetcher.rs`). The shard tells it which partitions it follows, from each new
//! metadata snapshot (`Replication::set_followed`, called by `Shard::apply_metadata`).
//!
//! Layering: below `shard`; what it needs of the shard comes through `table::ReplicaHost`.

pub mod connection;
pub mod fetcher;
#[cfg(test)]
mod fetcher_tests;
pub mod table;
pub mod truncation;
pub mod wire;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

pub use table::{FetcherConfig, Followed, ReplicaHost};
use table::{FetcherState, SharedFetcher};

/// The fetchers of one shard, by leader broker id. Concurrency: one executor.
pub struct Replication {
    config: FetcherConfig,
    fetchers: RefCell<HashMap<i32, SharedFetcher>>,
}

impl Replication {
    pub fn new(config: FetcherConfig) -> Replication {
        Replication {
            config,
            fetchers: RefCell::new(HashMap::new()),
        }
    }

    /// Makes `followed` the partitions this shard fetches: fetchers of leaders that lead none of
    /// them stop, new leaders get a fetcher task, and each fetcher gets its partitions (see
    /// `FetcherState::set_partitions`). Synchronous, so a partition that became leader is out of
    /// its fetcher before the shard serves anything else.
    pub fn set_followed(&self, host: Rc<dyn ReplicaHost>, followed: Vec<Followed>) {
        let mut by_leader: HashMap<i32, Vec<Followed>> = HashMap::new();
        for entry in followed {
            assert_ne!(
                entry.leader, self.config.node_id,
                "a broker never follows itself"
            );
            by_leader.entry(entry.leader).or_default().push(entry);
        }
        let mut fetchers = self.fetchers.borrow_mut();
        fetchers.retain(|leader, fetcher| {
            let keep = by_leader.contains_key(leader);
            if !keep {
                fetcher.stop();
            }
            keep
        });
        for (leader, partitions) in by_leader {
            let fetcher = fetchers.entry(leader).or_insert_with(|| {
                let fetcher = Rc::new(FetcherState::new(leader));
                let task = fetcher::run(host.clone(), fetcher.clone(), self.config.clone());
                glommio::spawn_local(task).detach();
                log::info!(
                    "shard {}: fetching from broker {leader}",
                    self.config.shard_id
                );
                fetcher
            });
            fetcher.set_partitions(partitions);
        }
    }
}
