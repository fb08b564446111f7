//! What this node knows of the other voters' liveness: when it last heard from each (any Raft
//! message), and, while it leads, how far each one's log matches its own (raft-rs's
//! `Progress::matched`). The broker's membership reads it to fence brokers that fell silent.
//!
//! Voters are the brokers, so the messages a follower exchanges with its leader (heartbeat
//! responses every heartbeat tick, append responses) are its heartbeats: nothing else is sent.

use std::cell::RefCell;
use std::time::Instant;

use raft::{RawNode, StateRole};

use crate::store::SharedStore;

/// One other voter as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    /// Its Raft id.
    pub id: u64,
    /// When this node last received a message from it; `None` if never in this process's life.
    pub last_heard: Option<Instant>,
    /// The highest log index known to match this node's log, only while this node leads
    /// (`None` otherwise: a follower does not track the others).
    pub matched: Option<u64>,
}

/// The log position of this node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogPosition {
    /// The highest index known committed (the metadata log's high watermark).
    pub commit_index: u64,
    /// The index of the last entry in this node's log (its log end).
    pub last_index: u64,
    /// The highest index applied to the state machine.
    pub applied_index: u64,
}

/// Every other voter's status, one slot each in voter order (fixed for the node's life, at most
/// `VOTERS_MAX`, so nothing here grows). Written by the driver, read by the handle.
#[derive(Default)]
pub struct Peers {
    peers: RefCell<Vec<PeerStatus>>,
}

impl Peers {
    pub fn new(voter_ids: &[u64], node_id: u64) -> Peers {
        let peers = voter_ids
            .iter()
            .filter(|id| **id != node_id)
            .map(|id| PeerStatus {
                id: *id,
                last_heard: None,
                matched: None,
            })
            .collect();
        Peers {
            peers: RefCell::new(peers),
        }
    }

    /// Notes a message from `from`; a sender that is not a peer voter is ignored (the transport
    /// already refuses those).
    pub fn heard(&self, from: u64, now: Instant) {
        if let Some(peer) = self
            .peers
            .borrow_mut()
            .iter_mut()
            .find(|peer| peer.id == from)
        {
            peer.last_heard = Some(now);
        }
    }

    /// Copies each peer's matched index from raft-rs's progress while this node leads, and
    /// clears it otherwise.
    pub fn refresh(&self, node: &RawNode<SharedStore>) {
        let leading = node.raft.state == StateRole::Leader;
        for peer in self.peers.borrow_mut().iter_mut() {
            peer.matched = if leading {
                node.raft
                    .prs()
                    .get(peer.id)
                    .map(|progress| progress.matched)
            } else {
                None
            };
        }
    }

    pub fn snapshot(&self) -> Vec<PeerStatus> {
        self.peers.borrow().clone()
    }
}
