//! The replica table of one partition: the role this broker has for it (from the metadata
//! snapshot), the committed ISR and the change this leader has proposed, and per follower its
//! log end offset (LEO), last fetch and last caught-up time.
//!
//! Pure state: every method takes the time as an argument and does no I/O, so the rules
//! (Kafka's `Partition.scala`: the high watermark, when a follower counts as caught up, which
//! followers leave or join the ISR) are unit-tested without a broker.
//!
//! Invariant: the high watermark this table gives is the minimum LEO over the *maximal* ISR (the
//! committed ISR plus the members a pending proposal adds, never minus those it removes), so a
//! record below it is on every replica that is or may become in sync.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use crate::cluster::controller::Refusal;
use crate::cluster::metadata::{PartitionAssignment, NO_LEADER};

/// What this broker does for a partition it is a replica of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Serves Produce and Fetch.
    Leader,
    /// Fetches from `leader`.
    Follower { leader: i32 },
    /// No leader: neither serves nor fetches.
    Offline,
}

/// A log end offset not known yet (the follower has not fetched since this broker became
/// leader).
pub const LOG_END_OFFSET_UNKNOWN: i64 = -1;

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// The follower's log end: the fetch offset of its last fetch.
    pub log_end_offset: i64,
    /// When it last fetched, ms since the Unix epoch (0: never).
    pub last_fetch_ms: i64,
    /// The leader's log end at the follower's last fetch.
    pub last_fetch_leader_log_end_offset: i64,
    /// The last time the follower was known to hold everything the leader had.
    pub last_caught_up_ms: i64,
}

/// An ISR change to propose: the new ISR for the leader epoch it was computed under.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// The replica table (see the module documentation). Concurrency: owned by the partition on
/// its owner shard, borrowed only between awaits.
#[derive(Debug)]
pub struct Replicas {
    node_id: i32,
    role: Role,
    leader_epoch: i32,
    replicas: Vec<i32>,
    /// The committed ISR, as the snapshot lists it.
    isr: Vec<i32>,
    /// The ISR this leader proposed and has not yet seen answered; one at a time.
    pending_isr: Option<Vec<i32>>,
    /// The leader's log end when it became leader at this epoch: a follower joins the ISR only
    /// once it holds the records of earlier epochs.
    epoch_start_offset: i64,
    followers: BTreeMap<i32, FollowerState>,
}

impl Replicas {
    /// The table of a partition just opened, before the snapshot gave it a role.
    pub fn new(node_id: i32) -> Replicas {
        Replicas {
            node_id,
            role: Role::Offline,
            leader_epoch: -1,
            replicas: Vec::new(),
            isr: Vec::new(),
            pending_isr: None,
            epoch_start_offset: 0,
            followers: BTreeMap::new(),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    /// Whether `id` is one of the partition's replicas other than this broker.
    pub fn is_other_replica(&self, id: i32) -> bool {
        id != self.node_id && self.replicas.contains(&id)
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    #[cfg(test)]
    pub fn has_pending_change(&self) -> bool {
        self.pending_isr.is_some()
    }

    #[cfg(test)]
    pub fn follower(&self, id: i32) -> Option<&FollowerState> {
        self.followers.get(&id)
    }

    /// Takes the partition's assignment from a new snapshot; `log_end_offset` is the local log's
    /// end now. Returns whether the role or the leader epoch changed. Becoming leader (or a new
    /// epoch as leader) starts every follower afresh, as Kafka does: its LEO unknown, and caught
    /// up now if the ISR holds it, so that a new leader does not shrink the ISR at once.
    pub fn set_assignment(
        &mut self,
        assignment: &PartitionAssignment,
        log_end_offset: i64,
        now_ms: i64,
    ) -> bool {
        let role = match assignment.leader {
            leader if leader == self.node_id => Role::Leader,
            NO_LEADER => Role::Offline,
            leader => Role::Follower { leader },
        };
        let changed = role != self.role || assignment.leader_epoch != self.leader_epoch;
        self.role = role;
        self.leader_epoch = assignment.leader_epoch;
        self.replicas = assignment.replicas.clone();
        self.isr = assignment.isr.clone();
        if role != Role::Leader {
            self.followers.clear();
            self.pending_isr = None;
            return changed;
        }
        if changed {
            self.followers.clear();
            self.pending_isr = None;
            self.epoch_start_offset = log_end_offset;
        }
        if self.pending_isr.as_ref() == Some(&self.isr) {
            self.pending_isr = None;
        }
        let (node_id, isr) = (self.node_id, &self.isr);
        self.followers
            .retain(|id, _| assignment.replicas.contains(id));
        for &id in assignment.replicas.iter().filter(|id| **id != node_id) {
            self.followers.entry(id).or_insert(FollowerState {
                log_end_offset: LOG_END_OFFSET_UNKNOWN,
                last_fetch_ms: 0,
                last_fetch_leader_log_end_offset: LOG_END_OFFSET_UNKNOWN,
                last_caught_up_ms: if isr.contains(&id) { now_ms } else { 0 },
            });
        }
        changed
    }

    #[cfg(test)]
    /// The committed ISR plus the members a pending proposal adds (Kafka's maximal ISR).
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut maximal = self.isr.clone();
        for id in self.pending_isr.iter().flatten() {
            if !maximal.contains(id) {
                maximal.push(*id);
            }
        }
        maximal
    }

    /// The high watermark the replicas allow: the smallest LEO in the maximal ISR, the leader's
    /// being `leader_log_end_offset`. With the ISR {leader} it is the leader's log end.
    pub fn high_watermark(&self, leader_log_end_offset: i64) -> i64 {
        let follower_log_end = |id: &i32| {
            (self.followers.get(id)).map_or(LOG_END_OFFSET_UNKNOWN, |f| f.log_end_offset)
        };
        let mut high_watermark = leader_log_end_offset;
        for id in &self.isr {
            if *id != self.node_id {
                high_watermark = high_watermark.min(follower_log_end(id));
            }
        }
        for id in self.pending_isr.iter().flatten() {
            if *id != self.node_id {
                high_watermark = high_watermark.min(follower_log_end(id));
            }
        }
        high_watermark
    }

    /// Records a fetch of `follower` at `fetch_offset` (its LEO), the leader's log end being
    /// `leader_log_end_offset`. Kafka's rule: the follower is caught up as of this fetch if it
    /// asks for the leader's log end, or as of its previous fetch if it asks for at least the
    /// leader's log end at that one. Returns false (and records nothing) for a broker that is
    /// not a follower of this leader.
    pub fn record_fetch(
        &mut self,
        follower: i32,
        fetch_offset: i64,
        leader_log_end_offset: i64,
        now_ms: i64,
    ) -> bool {
        if !self.is_leader() {
            return false;
        }
        let Some(state) = self.followers.get_mut(&follower) else {
            return false;
        };
        if fetch_offset >= leader_log_end_offset {
            state.last_caught_up_ms = state.last_caught_up_ms.max(now_ms);
        } else if fetch_offset >= state.last_fetch_leader_log_end_offset {
            state.last_caught_up_ms = state.last_caught_up_ms.max(state.last_fetch_ms);
        }
        state.log_end_offset = fetch_offset;
        state.last_fetch_ms = now_ms;
        state.last_fetch_leader_log_end_offset = leader_log_end_offset;
        true
    }

    /// The ISR with `follower` added, if it should join: a replica outside the maximal ISR
    /// whose LEO reached the high watermark and the start of this leader's epoch, while no
    /// other change is pending. (Whether the broker is live the caller checks.)
    pub fn expansion(&self, follower: i32, high_watermark: i64) -> Option<Vec<i32>> {
        if !self.is_leader() || self.pending_isr.is_some() || self.isr.contains(&follower) {
            return None;
        }
        let state = self.followers.get(&follower)?;
        let caught_up = state.log_end_offset >= high_watermark
            && state.log_end_offset >= self.epoch_start_offset;
        caught_up.then(|| {
            // In replica order, so every leader lists the same ISR the same way.
            (self.replicas.iter().copied())
                .filter(|id| *id == follower || self.isr.contains(id))
                .collect()
        })
    }

    /// The ISR without the followers that have not caught up for more than `lag_max_ms`, if
    /// any has not, while no other change is pending. A follower whose LEO is the leader's log
    /// end is in sync however long ago it fetched (nothing was appended since).
    pub fn shrink(
        &self,
        leader_log_end_offset: i64,
        now_ms: i64,
        lag_max_ms: i64,
    ) -> Option<Vec<i32>> {
        if !self.is_leader() || self.pending_isr.is_some() {
            return None;
        }
        let out_of_sync = |id: &i32| match self.followers.get(id) {
            Some(state) => {
                state.log_end_offset != leader_log_end_offset
                    && now_ms - state.last_caught_up_ms > lag_max_ms
            }
            None => false,
        };
        let isr: Vec<i32> = (self.isr.iter().copied())
            .filter(|id| *id == self.node_id || !out_of_sync(id))
            .collect();
        (isr.len() < self.isr.len()).then_some(isr)
    }

    /// The replica a consumer should fetch from instead of this leader (Kafka's
    /// RackAwareReplicaSelector, KIP-392): none unless this broker leads, none when the leader
    /// is itself in the consumer's rack (`in_client_rack`, which the caller makes false for a
    /// broker that is not live), else a follower in that rack and in the committed ISR whose
    /// log end reached `fetch_offset` (it holds what the consumer asks for): the one with the
    /// highest log end, then the most recently caught up, then the lowest id.
    pub fn preferred_read_replica(
        &self,
        in_client_rack: impl Fn(i32) -> bool,
        fetch_offset: i64,
    ) -> Option<i32> {
        if !self.is_leader() || in_client_rack(self.node_id) {
            return None;
        }
        (self.isr.iter())
            .filter(|id| **id != self.node_id && in_client_rack(**id))
            .filter_map(|id| Some((*id, self.followers.get(id)?)))
            .filter(|(_, state)| state.log_end_offset >= fetch_offset)
            .max_by_key(|(id, state)| {
                (
                    state.log_end_offset,
                    state.last_caught_up_ms,
                    std::cmp::Reverse(*id),
                )
            })
            .map(|(id, _)| id)
    }

    /// Marks `isr` as proposed: the one change in flight, counted in the maximal ISR.
    pub fn start_change(&mut self, isr: Vec<i32>) -> IsrChange {
        assert!(self.is_leader() && self.pending_isr.is_none());
        assert!(isr.contains(&self.node_id), "an ISR without its leader");
        self.pending_isr = Some(isr.clone());
        IsrChange {
            leader_epoch: self.leader_epoch,
            isr,
        }
    }

    /// The proposal of `change` was answered with `result`. A commit (seen applied) or a
    /// definite refusal ends it: another may be proposed, from the snapshot as it is now. An
    /// ambiguous failure (a timeout, a quorum leader change, a stopped quorum: the entry may
    /// still commit) keeps it pending, still counted in the maximal ISR, so the high watermark
    /// never passes an added member's LEO while its addition may yet commit; returns true when
    /// the caller must propose the same change again. A new leader epoch or a snapshot whose
    /// ISR equals it (`set_assignment`) ends it too.
    pub fn finish_change(&mut self, change: &IsrChange, result: &Result<(), Refusal>) -> bool {
        let pending = self.is_leader()
            && self.leader_epoch == change.leader_epoch
            && self.pending_isr.as_ref() == Some(&change.isr);
        if !pending {
            return false;
        }
        if matches!(result, Err((code, _)) if refusal_is_ambiguous(*code)) {
            return true;
        }
        self.pending_isr = None;
        false
    }

    /// Whether `change` is still the one in flight (no new epoch or snapshot ended it).
    pub fn is_pending(&self, change: &IsrChange) -> bool {
        self.is_leader()
            && self.leader_epoch == change.leader_epoch
            && self.pending_isr.as_ref() == Some(&change.isr)
    }
}

/// Whether a refusal of a metadata change leaves its outcome open: the controller answers these
/// when the quorum did not answer in time (REQUEST_TIMED_OUT), lost or had no leader
/// (NOT_CONTROLLER), stopped (KAFKA_STORAGE_ERROR) or lost the entry's results
/// (UNKNOWN_SERVER_ERROR), and the entry may commit after all. The refusals of `apply`
/// (`controller/isr.rs`) use none of these codes.
pub fn refusal_is_ambiguous(code: ResponseError) -> bool {
    matches!(
        code,
        ResponseError::RequestTimedOut
            | ResponseError::NotController
            | ResponseError::KafkaStorageError
            | ResponseError::UnknownServerError
    )
}

#[cfg(test)]
#[path = "replicas_tests.rs"]
mod tests;
