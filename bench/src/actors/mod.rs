//! The actors: OS threads with one broker connection each, reporting their results once, at
//! the end, over a bounded channel.

pub mod batching;
pub mod consumer;
pub mod producer;
pub mod producer_config;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::clock::Clock;
use crate::stats::Progress;

/// What every actor shares.
#[derive(Debug, Clone)]
pub struct Shared {
    pub bootstrap: String,
    pub topic: String,
    pub run_id: u32,
    pub clock: Clock,
    pub progress: Arc<Progress>,
    /// Set once every producer has finished; e2e consumers then drain to the end offsets.
    pub producers_done: Arc<AtomicBool>,
}

pub fn client_config(role: &str, id: u32) -> client::ClientConfig {
    client::ClientConfig {
        client_id: format!("sluice-bench-{role}-{id}"),
        ..client::ClientConfig::default()
    }
}
