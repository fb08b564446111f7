//! The active controller's fencing task: every [`FENCING_CHECK_MS`], while this broker leads the
//! metadata quorum, it fences the brokers it has not heard from for `--session-timeout-ms` and
//! unfences fenced brokers heard again with their log caught up (`cluster::liveness` decides,
//! `Controller::change_liveness` proposes).
//!
//! **Invariant:** only the active controller fences. The task acts only while this node leads;
//! it starts every broker's timer afresh each time this node becomes the leader (an earlier
//! leader's contacts are unknown here), except the timer of the leader it followed, which it
//! heard as a follower, and stops at once when it loses the lead. A tick that comes much later
//! than scheduled (this process was paused) starts every timer afresh too, and decides nothing:
//! a controller's own pause is not its brokers' silence.

use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::cluster::controller::quorum_ids::node_id;
use crate::cluster::controller::CONTROLLER_SHARD;
use crate::cluster::liveness::{changes_due, LivenessChange, LivenessView, SilenceClock};
use crate::shard::Shard;

/// How often the active controller looks for brokers to fence: a tenth of the quorum's
/// heartbeat-driven contact interval would be pointless, a second would add a second to every
/// fencing; 100 ms adds at most that to the session timeout.
pub const FENCING_CHECK_MS: u64 = 100;

/// Starts the fencing task on the controller shard.
pub fn spawn(shard: Rc<Shard>) {
    if shard.id == CONTROLLER_SHARD {
        glommio::spawn_local(run(shard)).detach();
    }
}

async fn run(shard: Rc<Shard>) {
    let controller = shard.controller();
    let own = shard.config.node_id;
    let leader_node = |state: quorum::LeaderState| state.leader_id.map(node_id);
    let mut seen = controller.leader_state();
    // The last other node this one followed as the quorum's leader.
    let mut followed = leader_node(seen).filter(|leader| *leader != own);
    loop {
        if !controller.is_active() {
            let now = controller.leader_changed(seen).await;
            if now == seen {
                return; // Only a stopped quorum answers without a change.
            }
            seen = now;
            followed = leader_node(seen)
                .filter(|leader| *leader != own)
                .or(followed);
            continue;
        }
        seen = controller.leader_state();
        lead(&shard, seen.term, followed).await;
        followed = None;
    }
}

/// Fences and unfences while this node leads in `term`, having followed `previous_leader_id`.
async fn lead(shard: &Shard, term: u64, previous_leader_id: Option<i32>) {
    let controller = shard.controller();
    let mut clock = SilenceClock::new(Instant::now(), previous_leader_id);
    let session_timeout = Duration::from_millis(shard.config.session_timeout_ms);
    let leading = || controller.is_active() && controller.leader_state().term == term;
    log::info!(
        "node {} is the active controller (term {term})",
        shard.config.node_id
    );
    while leading() {
        let interval = Duration::from_millis(FENCING_CHECK_MS);
        let due = Instant::now() + interval;
        glommio::timer::sleep(interval).await;
        let now = Instant::now();
        if clock.tick(due, now) {
            log::warn!(
                "node {}: the fencing check ran {:?} late (this process was paused); every \
                 broker's silence counts from now",
                shard.config.node_id,
                now - due
            );
            continue;
        }
        let inputs = controller.liveness_inputs();
        let view = LivenessView {
            controller_id: shard.config.node_id,
            leading_since: clock.since,
            previous_leader_id: clock.previous_leader_id,
            now,
            session_timeout,
            commit_index: inputs.commit_index,
            peers: &inputs.peers,
        };
        for change in changes_due(&inputs.snapshot.brokers, &view) {
            if !leading() {
                return;
            }
            match controller.change_liveness(change, term).await {
                Ok(()) => log_change(change),
                Err((_, reason)) => log::warn!("{change:?} was not applied: {reason}"),
            }
        }
    }
}

fn log_change(change: LivenessChange) {
    match change {
        LivenessChange::Fence { id, .. } => {
            log::warn!("fenced broker {id}: not heard from within the session timeout")
        }
        LivenessChange::Unfence { id, .. } => log::info!("unfenced broker {id}: heard again"),
    }
}
