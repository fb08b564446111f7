//! What the controller knows of the quorum's liveness, in node ids: the input of the fencing
//! task (`tasks/fencing.rs`) and of DescribeQuorum, and the fence and unfence changes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use super::command::MetadataCommand;
use super::quorum_ids::node_id;
use super::{Controller, Refusal};
use crate::cluster::liveness::{LivenessChange, PeerLiveness};
use crate::cluster::metadata::MetadataSnapshot;
use crate::cluster::quorum_view::{QuorumView, VoterView};

/// The liveness the controller sees now.
pub struct LivenessInputs {
    /// The newest applied snapshot (its brokers are what may be fenced).
    pub snapshot: Arc<MetadataSnapshot>,
    pub peers: Vec<PeerLiveness>,
    pub commit_index: u64,
}

impl Controller {
    /// Whether this node leads the metadata quorum (is the active controller).
    pub fn is_active(&self) -> bool {
        self.quorum.is_leader()
    }

    /// The quorum's leader and term as this node sees them.
    pub fn leader_state(&self) -> quorum::LeaderState {
        self.quorum.leader_state()
    }

    /// Waits until the quorum's leader or term differs from `seen`.
    pub async fn leader_changed(&self, seen: quorum::LeaderState) -> quorum::LeaderState {
        self.quorum.leader_changed(seen).await
    }

    pub fn liveness_inputs(&self) -> LivenessInputs {
        let peers = (self.quorum.peers().into_iter())
            .map(|peer| PeerLiveness {
                node_id: node_id(peer.id),
                last_heard: peer.last_heard,
                matched: peer.matched,
            })
            .collect();
        LivenessInputs {
            snapshot: self.state.snapshot(),
            peers,
            commit_index: self.quorum.log_position().commit_index,
        }
    }

    /// Proposes a fence or an unfence, decided while this node led the quorum in `term`: a
    /// fence commits only from an entry of that term (`MetadataCommand::FenceBrokerInTerm`).
    pub async fn change_liveness(&self, change: LivenessChange, term: u64) -> Result<(), Refusal> {
        let command = match change {
            LivenessChange::Fence { id, incarnation } => MetadataCommand::FenceBrokerInTerm {
                id,
                incarnation,
                term,
            },
            LivenessChange::Unfence { id, incarnation } => {
                MetadataCommand::UnfenceBroker { id, incarnation }
            }
        };
        self.change_one(command).await
    }

    /// Proposes broker `id`'s controlled shutdown (see `membership::shut_down`) and waits
    /// until this node's shards serve a snapshot that holds it.
    pub async fn controlled_shutdown(&self, id: i32, incarnation: u64) -> Result<(), Refusal> {
        let command = MetadataCommand::ControlledShutdown { id, incarnation };
        self.change_one(command).await
    }

    /// The quorum as this node sees it. `voters` are the configured voters (node id, controller
    /// address); none means this node alone, `node_id`, on its controller listener.
    pub fn quorum_view(&self, node_id_self: i32, voters: &[(i32, SocketAddr)]) -> QuorumView {
        let alone = [(node_id_self, self.quorum.local_address())];
        let voters = if voters.is_empty() {
            &alone[..]
        } else {
            voters
        };
        let position = self.quorum.log_position();
        let peers = self.quorum.peers();
        let (now, now_ms) = (Instant::now(), crate::clock::now_ms());
        let as_wall_clock =
            |at: Instant| now_ms - i64::try_from(now.duration_since(at).as_millis()).unwrap_or(0);
        let leader = self.quorum.leader_state();
        let voters = (voters.iter())
            .map(|(id, address)| {
                let peer = peers.iter().find(|peer| node_id(peer.id) == *id);
                let (log_end, last_heard_ms) = match peer {
                    _ if *id == node_id_self => (Some(position.last_index), Some(now_ms)),
                    Some(peer) => (peer.matched, peer.last_heard.map(as_wall_clock)),
                    None => (None, None),
                };
                VoterView {
                    node_id: *id,
                    host: address.ip().to_string(),
                    port: address.port(),
                    log_end,
                    last_heard_ms,
                }
            })
            .collect();
        QuorumView {
            leader_id: leader.leader_id.map_or(-1, node_id),
            term: leader.term,
            commit_index: position.commit_index,
            voters,
        }
    }
}
