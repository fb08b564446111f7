//! Stopping the broker on SIGTERM or SIGINT: Kafka's controlled shutdown.
//!
//! The signal handler only sets an atomic. The controller shard sees it, proposes
//! `MetadataCommand::ControlledShutdown` for this broker (its leaderships move to other in-sync
//! replicas, the preferred one first, and it leaves every ISR: `cluster::membership::shut_down`)
//! and waits until the command is committed and installed on its shards, at most
//! `--controlled-shutdown-timeout-ms`. Then every shard syncs its partition logs, and the
//! process exits. A second signal exits at once.
//!
//! A broker with no other live broker (one node, or the last of a cluster) has nothing to move
//! and stops at once; so does one whose metadata quorum has had no leader for
//! [`QUORUM_LEADERLESS_GIVE_UP`], since nobody can move its leaderships then.
//!
//! **Invariant:** an acks=all produce on a partition this broker stopped leading is answered
//! NOT_LEADER_OR_FOLLOWER, never acknowledged (the role change from the committed command does
//! this, as for any leadership move); the logs are synced only after the command is installed,
//! so nothing is appended as leader afterwards.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::cluster::controller::CONTROLLER_SHARD;
use crate::cluster::metadata::MetadataSnapshot;
use crate::shard::Shard;

/// How often each shard looks whether the broker stops: a signal waits at most this long.
const STOP_POLL: Duration = Duration::from_millis(50);

/// How long the metadata quorum may be without a leader before a stopping broker gives up
/// moving its leaderships: longer than an election, and short enough that a cluster whose
/// quorum is lost (the other brokers stopped) stops in seconds, not after the whole timeout.
pub const QUORUM_LEADERLESS_GIVE_UP: Duration = Duration::from_millis(3_000);

/// Pause between two proposals of the controlled shutdown that failed.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How long the controller shard waits for the other shards to sync their logs.
const SYNC_WAIT_MAX: Duration = Duration::from_millis(10_000);

/// Set by the signal handler.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_signal: libc::c_int) {
    if SIGNALLED.swap(true, Ordering::SeqCst) {
        // A second signal: the operator does not want to wait.
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// Installs the SIGTERM and SIGINT handler; call once, before the shards start.
pub fn watch_signals() {
    let handler = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only touches an atomic and calls _exit, both async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, handler);
        libc::signal(libc::SIGINT, handler);
    }
}

/// Whether SIGTERM or SIGINT has arrived.
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

/// Returns once SIGTERM or SIGINT has arrived (polled every [`STOP_POLL`]).
pub async fn signal_arrived() {
    while !signalled() {
        glommio::timer::sleep(STOP_POLL).await;
    }
}

/// Ends the process on a signal that came while the metadata quorum was starting (before the
/// stop task runs: start-up waits for the quorum to take the broker's registration, forever
/// while the quorum has no majority). Nothing is open but the quorum, whose writes survive a
/// stop at any point as they survive kill -9, and nothing is led or served yet: there is nothing
/// to move or sync.
pub fn exit_during_start_up() -> ! {
    log::info!("stopping on a signal during start-up, before the broker registered");
    std::process::exit(0)
}

/// The stop's progress, shared by every shard of the process (polled, like the start gate, so
/// no waker crosses a thread).
pub struct StopGate {
    shards: usize,
    /// 0 while running, 1 once the controller shard has finished the metadata step: every
    /// shard syncs its logs.
    phase: AtomicU8,
    synced: AtomicUsize,
}

impl StopGate {
    pub fn new(shards: usize) -> StopGate {
        StopGate {
            shards,
            phase: AtomicU8::new(0),
            synced: AtomicUsize::new(0),
        }
    }
}

/// What a stopping broker does about its leaderships, from the newest snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownStep {
    /// No other broker is live (or this one is not registered): nothing can move.
    NothingToMove,
    /// The controlled shutdown of this registration is applied.
    Done,
    /// Propose the controlled shutdown of this incarnation.
    Propose { incarnation: u64 },
}

/// The next step of broker `id`'s controlled shutdown in `snapshot`.
pub fn next_step(snapshot: &MetadataSnapshot, id: i32) -> ShutdownStep {
    let Some(registration) = snapshot.brokers.get(&id) else {
        return ShutdownStep::NothingToMove;
    };
    if registration.shutting_down {
        return ShutdownStep::Done;
    }
    if !snapshot.live_brokers().any(|broker| broker.id != id) {
        return ShutdownStep::NothingToMove;
    }
    ShutdownStep::Propose {
        incarnation: registration.incarnation,
    }
}

/// Starts the shard's stop task: on the controller shard it runs the controlled shutdown and
/// ends the process; on the others it syncs the logs when told.
pub fn spawn(shard: Rc<Shard>, gate: std::sync::Arc<StopGate>) {
    glommio::spawn_local(async move {
        if shard.id == CONTROLLER_SHARD {
            signal_arrived().await;
            stop(&shard, &gate).await;
        } else {
            while gate.phase.load(Ordering::Acquire) == 0 {
                glommio::timer::sleep(STOP_POLL).await;
            }
            sync_logs(&shard).await;
            gate.synced.fetch_add(1, Ordering::AcqRel);
        }
    })
    .detach();
}

/// The controller shard's part: the metadata step, every shard's sync, the exit.
async fn stop(shard: &Shard, gate: &StopGate) -> ! {
    let node = shard.config.node_id;
    let timeout = Duration::from_millis(shard.config.controlled_shutdown_timeout_ms);
    log::info!("node {node} stopping: moving its leaderships away (at most {timeout:?})");
    let started = Instant::now();
    move_leaderships(shard, started + timeout).await;
    gate.phase.store(1, Ordering::Release);
    sync_logs(shard).await;
    gate.synced.fetch_add(1, Ordering::AcqRel);
    let sync_deadline = Instant::now() + SYNC_WAIT_MAX;
    while gate.synced.load(Ordering::Acquire) < gate.shards && Instant::now() < sync_deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    log::info!(
        "node {node} stopped after {:?}",
        Instant::now().duration_since(started)
    );
    std::process::exit(0)
}

/// Proposes this broker's controlled shutdown until it is applied on this shard, no other
/// broker is live, the quorum stays leaderless too long or `deadline` passes.
async fn move_leaderships(shard: &Shard, deadline: Instant) {
    let node = shard.config.node_id;
    let mut leaderless_since: Option<Instant> = None;
    loop {
        let incarnation = match next_step(&shard.metadata(), node) {
            ShutdownStep::NothingToMove => {
                log::info!("node {node}: no other live broker, nothing to move");
                return;
            }
            ShutdownStep::Done => {
                log::info!("node {node}: its leaderships moved and it left the ISRs");
                return;
            }
            ShutdownStep::Propose { incarnation } => incarnation,
        };
        let now = Instant::now();
        if now >= deadline {
            log::warn!("node {node}: controlled shutdown timed out; stopping anyway");
            return;
        }
        if shard.controller_id() >= 0 {
            leaderless_since = None;
        } else if now.duration_since(*leaderless_since.get_or_insert(now))
            >= QUORUM_LEADERLESS_GIVE_UP
        {
            log::warn!("node {node}: the metadata quorum has no leader; stopping anyway");
            return;
        }
        let proposal = async {
            let result = (shard.controller())
                .controlled_shutdown(node, incarnation)
                .await;
            if let Err((_, reason)) = result {
                log::warn!("node {node}: controlled shutdown not applied: {reason}");
                glommio::timer::sleep(RETRY_PAUSE).await;
            }
        };
        // A proposal the quorum cannot take may wait long: look at the quorum again meanwhile
        // (proposing again is harmless, the command applies once).
        let attempt = deadline
            .saturating_duration_since(now)
            .min(QUORUM_LEADERLESS_GIVE_UP);
        futures_lite::future::or(proposal, glommio::timer::sleep(attempt)).await;
    }
}

/// Syncs every partition log this shard owns (what acks=1 appended reaches the disk).
async fn sync_logs(shard: &Shard) {
    for (topic, partition) in shard.owned_partitions() {
        let Some(open) = shard.partition(&topic, partition) else {
            continue;
        };
        if let Err(e) = open.log.sync_to(i64::MAX).await {
            log::warn!("syncing {topic}-{partition} at shutdown failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::membership::{register, shut_down};
    use crate::cluster::metadata::BrokerRegistration;

    fn registration(id: i32) -> BrokerRegistration {
        BrokerRegistration {
            id,
            incarnation: 10 + id as u64,
            host: "localhost".to_string(),
            port: 9092,
            rack: None,
            fenced: false,
            shutting_down: false,
        }
    }

    #[test]
    fn a_broker_proposes_its_shutdown_only_while_another_broker_is_live() {
        let mut snapshot = crate::cluster::controller::command::empty_snapshot();
        assert_eq!(next_step(&snapshot, 1), ShutdownStep::NothingToMove);
        register(&mut snapshot, registration(1));
        assert_eq!(next_step(&snapshot, 1), ShutdownStep::NothingToMove);
        register(&mut snapshot, registration(2));
        assert_eq!(
            next_step(&snapshot, 1),
            ShutdownStep::Propose { incarnation: 11 }
        );
        shut_down(&mut snapshot, 1, 11).unwrap();
        assert_eq!(next_step(&snapshot, 1), ShutdownStep::Done);
        // The last broker standing has nobody to hand anything to.
        assert_eq!(next_step(&snapshot, 2), ShutdownStep::NothingToMove);
    }
}
