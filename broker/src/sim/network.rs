//! The simulated network between the brokers and the controller: every message is delayed by a
//! random time, may be dropped, and is delivered in a random order among those that are due;
//! a partition cuts links both ways (messages on a cut link are lost).

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::Rng;
use crate::cluster::controller::Refusal;
use crate::cluster::metadata::{BrokerRegistration, MetadataSnapshot};
use crate::partition::IsrChange;
use crate::replication::Followed;

/// The controller's node id on the simulated network (brokers are 1..=3).
pub const CONTROLLER: i32 = 0;
/// Messages in flight at most: a sender whose message would pass it loses it (a full socket
/// buffer), so a run's memory is bounded.
const IN_FLIGHT_MAX: usize = 512;
/// Delivery delay bounds, ms.
const DELAY_MS_MIN: u64 = 1;
pub const DELAY_MS_MAX: u64 = 40;
/// Chance (percent) that a message is lost.
const DROP_PERCENT: u64 = 4;

#[derive(Debug, Clone)]
pub enum Message {
    /// A follower's Fetch for one partition, at its log end.
    Fetch {
        incarnation: u64,
        followed: Followed,
        offset: i64,
    },
    FetchReply {
        incarnation: u64,
        followed: Followed,
        sent_offset: i64,
        error: Option<ResponseError>,
        records: Bytes,
        high_watermark: i64,
        log_start_offset: i64,
    },
    /// OffsetForLeaderEpoch for the follower's latest epoch `asked`.
    EpochAsk {
        incarnation: u64,
        followed: Followed,
        asked: i32,
    },
    EpochAnswer {
        incarnation: u64,
        followed: Followed,
        asked: i32,
        answer: Result<(i32, i64), ResponseError>,
    },
    /// ListOffsets EARLIEST, after OFFSET_OUT_OF_RANGE: the leader's log start.
    LogStartAsk {
        incarnation: u64,
        followed: Followed,
    },
    LogStartAnswer {
        incarnation: u64,
        followed: Followed,
        answer: Result<i64, ResponseError>,
    },
    Heartbeat {
        incarnation: u64,
    },
    Register(BrokerRegistration),
    ProposeIsr {
        incarnation: u64,
        change: IsrChange,
    },
    /// The controller's answer to an ISR proposal, with the snapshot after it: the real
    /// controller answers only once the proposer's own shards serve that snapshot
    /// (`Controller::change_isr`), so the leader never sees its change ended while its table
    /// still holds the old ISR.
    IsrResult {
        incarnation: u64,
        change: IsrChange,
        result: Result<(), Refusal>,
        snapshot: Arc<MetadataSnapshot>,
    },
    Metadata(Arc<MetadataSnapshot>),
}

#[derive(Debug)]
pub struct Envelope {
    pub from: i32,
    pub to: i32,
    pub deliver_at_ms: i64,
    pub message: Message,
}

#[derive(Default)]
pub struct Network {
    in_flight: Vec<Envelope>,
    /// Cut links, each as (smaller node, larger node).
    cut: BTreeSet<(i32, i32)>,
}

fn link(a: i32, b: i32) -> (i32, i32) {
    (a.min(b), a.max(b))
}

impl Network {
    /// Sends `message`, unless the link is cut, the message is lost, or too many are in flight.
    pub fn send(&mut self, rng: &mut Rng, now_ms: i64, from: i32, to: i32, message: Message) {
        if self.is_cut(from, to)
            || rng.chance(DROP_PERCENT)
            || self.in_flight.len() >= IN_FLIGHT_MAX
        {
            return;
        }
        let deliver_at_ms = now_ms + rng.range(DELAY_MS_MIN, DELAY_MS_MAX) as i64;
        self.in_flight.push(Envelope {
            from,
            to,
            deliver_at_ms,
            message,
        });
    }

    /// A message that is due, chosen at random among them (so messages overtake each other),
    /// or None; one on a link cut since it was sent is lost.
    pub fn deliver(&mut self, rng: &mut Rng, now_ms: i64) -> Option<Envelope> {
        loop {
            let due: Vec<usize> = (0..self.in_flight.len())
                .filter(|&i| self.in_flight[i].deliver_at_ms <= now_ms)
                .collect();
            if due.is_empty() {
                return None;
            }
            let chosen = due[rng.range(0, due.len() as u64) as usize];
            let envelope = self.in_flight.swap_remove(chosen);
            if !self.is_cut(envelope.from, envelope.to) {
                return Some(envelope);
            }
        }
    }

    /// Drops every message to or from `node` (it crashed: its sockets are gone).
    pub fn forget(&mut self, node: i32) {
        self.in_flight.retain(|e| e.from != node && e.to != node);
    }

    pub fn is_cut(&self, a: i32, b: i32) -> bool {
        self.cut.contains(&link(a, b))
    }

    /// Cuts `node` off from every node in `others`.
    pub fn isolate(&mut self, node: i32, others: impl Iterator<Item = i32>) {
        for other in others.filter(|other| *other != node) {
            self.cut.insert(link(node, other));
        }
    }

    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn cut_links(&self) -> &BTreeSet<(i32, i32)> {
        &self.cut
    }
}
