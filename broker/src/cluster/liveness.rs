//! The active controller's liveness decisions: which brokers to fence and which to unfence,
//! from when it last heard from each (the quorum's view as leader) and the session timeout. A
//! pure function of its inputs; the fencing task (`tasks/fencing.rs`) is the shell that feeds it
//! and proposes what it decides.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::cluster::metadata::BrokerRegistration;

/// What the quorum's leader knows of one other voter, by node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLiveness {
    pub node_id: i32,
    pub last_heard: Option<Instant>,
    /// The highest index of the leader's log known to be in the voter's log.
    pub matched: Option<u64>,
}

/// What the controller sees at one moment.
pub struct LivenessView<'a> {
    /// This node: the controller, live by definition.
    pub controller_id: i32,
    /// When this node became the leader: nobody is fenced for silence from before then, since
    /// an earlier leader's last contacts are unknown here.
    pub leading_since: Instant,
    /// The leader this node followed before it led, if any. A follower hears its leader, so
    /// that one broker's silence is counted from when this node last heard it, if that was
    /// within a session timeout of `leading_since`: a dead controller is then fenced within the
    /// session timeout of its death, not of the election after it.
    pub previous_leader_id: Option<i32>,
    pub now: Instant,
    pub session_timeout: Duration,
    pub commit_index: u64,
    pub peers: &'a [PeerLiveness],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivenessChange {
    Fence { id: i32, incarnation: u64 },
    Unfence { id: i32, incarnation: u64 },
}

/// The fences and unfences due, in broker id order. An unfenced broker not heard from for
/// longer than the session timeout (counted from `leading_since` at the earliest, except for the
/// leader this node followed: see [`LivenessView::previous_leader_id`]) is fenced. A
/// fenced broker is unfenced once heard within half the session timeout (so a broker at the edge
/// of its timeout does not flap) and its log holds every committed entry, unless it is shutting
/// down. The controller itself
/// is never fenced, and is unfenced if an earlier controller fenced it.
pub fn changes_due(
    brokers: &BTreeMap<i32, BrokerRegistration>,
    view: &LivenessView,
) -> Vec<LivenessChange> {
    let mut changes = Vec::new();
    for broker in brokers.values() {
        let (id, incarnation) = (broker.id, broker.incarnation);
        if id == view.controller_id {
            if broker.fenced {
                changes.push(LivenessChange::Unfence { id, incarnation });
            }
            continue;
        }
        let peer = view.peers.iter().find(|peer| peer.node_id == id);
        let last_heard = peer.and_then(|peer| peer.last_heard);
        if !broker.fenced {
            let silent_since = silent_since(view, id, last_heard);
            if view.now.saturating_duration_since(silent_since) > view.session_timeout {
                changes.push(LivenessChange::Fence { id, incarnation });
            }
            continue;
        }
        if broker.shutting_down {
            // It stops: heard or not, it must lead nothing and join no ISR until it registers
            // again.
            continue;
        }
        let heard_lately = last_heard.is_some_and(|heard| {
            view.now.saturating_duration_since(heard) <= view.session_timeout / 2
        });
        let caught_up = peer
            .and_then(|peer| peer.matched)
            .is_some_and(|matched| matched >= view.commit_index);
        if heard_lately && caught_up {
            changes.push(LivenessChange::Unfence { id, incarnation });
        }
    }
    changes
}

/// How much later than scheduled a tick of the fencing task may come before it counts as a
/// pause of this process (SIGSTOP, a stalled machine): the quorum's view of its peers is then as
/// old as the pause, and their silence in it may be this node's own.
pub const OWN_PAUSE_MIN: Duration = Duration::from_millis(1_000);

/// From when the fencing task counts silence, and which leader's earlier contacts it trusts: the
/// `leading_since` and `previous_leader_id` of its [`LivenessView`]s, moved forward when a tick
/// comes [`OWN_PAUSE_MIN`] or more after it was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SilenceClock {
    pub since: Instant,
    pub previous_leader_id: Option<i32>,
}

impl SilenceClock {
    pub fn new(since: Instant, previous_leader_id: Option<i32>) -> SilenceClock {
        SilenceClock {
            since,
            previous_leader_id,
        }
    }

    /// Observes a tick scheduled for `due` that ran at `now`. After a pause of this process
    /// every broker's silence counts afresh from `now` (none is fenced for a silence this node
    /// may have caused by not running) and returns true: the caller decides nothing at this
    /// tick, so the quorum first handles what arrived during the pause (a newer term deposes
    /// this node).
    pub fn tick(&mut self, due: Instant, now: Instant) -> bool {
        if now.saturating_duration_since(due) < OWN_PAUSE_MIN {
            return false;
        }
        *self = SilenceClock::new(now, None);
        true
    }
}

/// From when broker `id`'s silence counts: its last contact, but not before this node led,
/// except for the leader it followed, heard within a session timeout before this node led.
fn silent_since(view: &LivenessView, id: i32, last_heard: Option<Instant>) -> Instant {
    let followed_lately = |heard: Instant| {
        view.previous_leader_id == Some(id)
            && view.leading_since.saturating_duration_since(heard) <= view.session_timeout
    };
    match last_heard {
        Some(heard) if followed_lately(heard) => heard,
        Some(heard) => heard.max(view.leading_since),
        None => view.leading_since,
    }
}

#[cfg(test)]
#[path = "liveness_tests.rs"]
mod tests;
