//! The heartbeat thread of a `GroupConsumer`: keeps the member's session alive on its own
//! connection and tells the poll loop when the group needs it to rejoin.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;

use crate::{Client, ClientConfig, ClientError, GroupMembership};

/// What the heartbeat thread learned that the poll loop must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatSignal {
    /// REBALANCE_IN_PROGRESS: rejoin with the same member id.
    Rejoin,
    /// UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION or FENCED_INSTANCE_ID: the generation is gone;
    /// rejoin as a new member.
    Reset,
    /// NOT_COORDINATOR or COORDINATOR_NOT_AVAILABLE: find the coordinator again, then rejoin.
    CoordinatorLost,
}

#[derive(Debug, Default)]
struct State {
    /// The generation to heartbeat for; `None` while (re)joining, when no heartbeats are sent.
    membership: Option<GroupMembership>,
    signal: Option<HeartbeatSignal>,
    stop: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Notified on stop, on a new membership and on a new signal.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in the other thread while holding the lock leaves plain data behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Owns the thread; stopping (or dropping) joins it.
///
/// Concurrency: the poll loop and the thread share only `State` behind one mutex. The thread
/// sends a heartbeat without holding the lock and ignores the answer if the membership changed
/// meanwhile, so a late error of an old generation never disturbs the new one.
pub struct Heartbeat {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

pub struct HeartbeatConfig {
    pub bootstrap: String,
    pub group_id: String,
    pub client: ClientConfig,
    pub interval: Duration,
}

impl Heartbeat {
    pub fn start(config: HeartbeatConfig) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("heartbeat-{}", config.group_id))
            .spawn(move || run(&thread_shared, &config))?;
        Ok(Heartbeat {
            shared,
            thread: Some(thread),
        })
    }

    /// Starts (`Some`) or pauses (`None`) heartbeats; clears any pending signal.
    pub fn set_membership(&self, membership: Option<GroupMembership>) {
        let mut state = self.shared.lock();
        state.membership = membership;
        state.signal = None;
        self.shared.changed.notify_all();
    }

    /// Takes the pending signal, if any.
    pub fn take_signal(&self) -> Option<HeartbeatSignal> {
        self.shared.lock().signal.take()
    }

    /// Waits up to `timeout` for a signal (without taking it); returns early when one arrives.
    pub fn wait_for_signal(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.signal.is_none() && !state.stop {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    pub fn stop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.stop = true;
            state.membership = None;
            self.shared.changed.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            // The thread only panics on a broken invariant; surface it here.
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if self.thread.is_some() && !std::thread::panicking() {
            self.stop();
        }
    }
}

/// Every `interval`: heartbeat for the current membership, if any.
fn run(shared: &Shared, config: &HeartbeatConfig) {
    let mut client: Option<Client> = None;
    let mut state = shared.lock();
    loop {
        let deadline = Instant::now() + config.interval;
        // Sleep out the interval, waking early only to stop.
        while !state.stop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        if state.stop {
            return;
        }
        let Some(membership) = state.membership.clone() else {
            continue;
        };
        drop(state);
        let signal = beat(&mut client, config, &membership);
        state = shared.lock();
        if state.membership.as_ref() == Some(&membership) {
            if let Some(signal) = signal {
                state.signal = Some(signal);
                shared.changed.notify_all();
            }
        }
    }
}

/// One heartbeat; connects first if needed. Connection failures are not signals: the next
/// interval tries again, and if the session expired meanwhile the broker says UNKNOWN_MEMBER_ID.
fn beat(
    client: &mut Option<Client>,
    config: &HeartbeatConfig,
    membership: &GroupMembership,
) -> Option<HeartbeatSignal> {
    if client.is_none() {
        match Client::connect_coordinator(
            &config.bootstrap,
            &config.group_id,
            config.client.clone(),
        ) {
            Ok(connected) => *client = Some(connected),
            Err(_) => return None,
        }
    }
    let connected = client.as_mut().expect("connected above");
    match connected.heartbeat(membership) {
        Ok(()) => None,
        Err(ClientError::Kafka(error)) => {
            let signal = signal_for(error.error);
            if signal == Some(HeartbeatSignal::CoordinatorLost) {
                *client = None;
            }
            signal
        }
        Err(_) => {
            // Mid-frame or closed; reconnect next time.
            *client = None;
            None
        }
    }
}

pub fn signal_for(error: ResponseError) -> Option<HeartbeatSignal> {
    match error {
        ResponseError::RebalanceInProgress => Some(HeartbeatSignal::Rejoin),
        ResponseError::UnknownMemberId
        | ResponseError::IllegalGeneration
        | ResponseError::FencedInstanceId => Some(HeartbeatSignal::Reset),
        ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable => {
            Some(HeartbeatSignal::CoordinatorLost)
        }
        // COORDINATOR_LOAD_IN_PROGRESS and the like: try again next interval.
        _ => None,
    }
}
