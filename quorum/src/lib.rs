//! The metadata quorum: a fixed set of voters that replicate one log with raft-rs, each node
//! driven by a glommio task, persisting to its own directory and talking over TCP.
//!
//! `Quorum::start` runs on a glommio executor and returns the node's handle; `propose` completes
//! once the entry is committed and applied on this node. The user's `StateMachine` sees every
//! committed entry in order. Consensus itself is raft-rs's `RawNode`; this crate is the shell
//! around it: storage (`disk`, `store`, `frame`), transport, and the driver.

pub mod config;
mod contact;
mod disk;
mod driver;
mod files;
pub mod frame;
mod logger;
mod peers;
mod retry;
#[cfg(test)]
mod sim_tests;
pub mod state_machine;
mod store;
pub mod transport;

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use futures_channel::oneshot;
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpListener;
use glommio::Task;

pub use config::{parse_voters, Config, ConfigError, Voter, VotersParseError};
pub use contact::Lease;
pub use disk::DiskError;
pub use peers::{LogPosition, PeerStatus};
pub use raft;
pub use state_machine::StateMachine;

use driver::{Driver, Input, Shared};

/// The largest proposal: metadata records are small; a limit keeps one from filling messages.
pub const PROPOSAL_BYTES_MAX: usize = 1 << 20;
/// The most a leader holds appended but not committed (raft-rs refuses proposals past it), so
/// a leader cut off from its majority cannot grow its log without bound.
const UNCOMMITTED_BYTES_MAX: u64 = 64 << 20;
/// Inputs (messages, proposals) waiting for the driver. Messages beyond it are dropped (Raft
/// retransmits); proposals wait for room.
pub const INBOX_INPUTS_MAX: usize = 4096;
/// Raft's flow control: bytes of entries per append message, and appends in flight per peer.
const MESSAGE_ENTRIES_BYTES_MAX: u64 = 1 << 20;
const INFLIGHT_APPENDS_MAX: usize = 256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProposeError {
    #[error("no leader is known; retry")]
    NoLeader,
    #[error("the entry was not applied in time (no quorum, or a leader change); retry")]
    Timeout,
    #[error("the proposal is larger than {PROPOSAL_BYTES_MAX} bytes")]
    TooLarge,
    /// raft-rs appends empty entries of its own (on each new leader's term); the driver skips
    /// them, so an empty proposal could never be applied or answered.
    #[error("an empty proposal carries nothing to apply")]
    Empty,
    #[error("the quorum node has stopped")]
    Stopped,
}

impl ProposeError {
    /// True when the same proposal may succeed later. A timed-out proposal may still commit:
    /// the state machine must tolerate seeing it after a retry.
    pub fn is_retriable(&self) -> bool {
        matches!(self, ProposeError::NoLeader | ProposeError::Timeout)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Disk(#[from] DiskError),
    #[error("cannot listen on the controller address {address}: {source}")]
    Listen {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("raft-rs refused to start: {0}")]
    Raft(#[from] raft::Error),
}

/// The leader as this node last saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderState {
    /// `None` while no leader is known.
    pub leader_id: Option<u64>,
    pub term: u64,
}

/// A running node. Used on the executor that started it (it is not `Send`).
pub struct Quorum {
    inbox: Rc<LocalSender<Input>>,
    shared: Rc<Shared>,
    driver: RefCell<Option<Task<Result<(), DiskError>>>>,
    listener: RefCell<Option<Task<()>>>,
    propose_timeout: Duration,
    local_address: std::net::SocketAddr,
}

impl Quorum {
    /// Opens the directory, binds the controller listener, connects to the peers and starts the
    /// driver. A single voter elects itself at once.
    pub async fn start<S: StateMachine + 'static>(
        config: Config,
        state_machine: S,
    ) -> Result<Quorum, StartError> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen).map_err(|error| StartError::Listen {
            address: config.listen,
            source: error.into(),
        })?;
        let local_address = listener.local_addr().map_err(|error| StartError::Listen {
            address: config.listen,
            source: error.into(),
        })?;
        let (inbox, inbox_receiver) = local_channel::new_bounded(INBOX_INPUTS_MAX);
        let inbox = Rc::new(inbox);
        let transport = transport::Transport::start(&config);
        let raft_config = raft_config(&config);
        let driver = Driver::open(
            &config,
            raft_config,
            state_machine,
            transport,
            inbox_receiver,
        )
        .await?;
        let shared = driver.shared.clone();
        let deliver_inbox = inbox.clone();
        let deliver: transport::Deliver = Rc::new(move |message| {
            match deliver_inbox.try_send(Input::Message(Box::new(message))) {
                Ok(()) => true,
                Err(glommio::GlommioError::Closed(_)) => false,
                // Full: drop the message, Raft sends it again.
                Err(_) => true,
            }
        });
        let propose_timeout = config.propose_timeout;
        let listener = glommio::spawn_local(transport::serve(listener, Rc::new(config), deliver));
        let driver = glommio::spawn_local(driver.run());
        Ok(Quorum {
            inbox,
            shared,
            driver: RefCell::new(Some(driver)),
            listener: RefCell::new(Some(listener)),
            propose_timeout,
            local_address,
        })
    }

    /// Proposes `data`; returns its log index once it is committed and applied on this node.
    pub async fn propose(&self, data: Vec<u8>) -> Result<u64, ProposeError> {
        if data.len() > PROPOSAL_BYTES_MAX {
            return Err(ProposeError::TooLarge);
        }
        if data.is_empty() {
            return Err(ProposeError::Empty);
        }
        if self.shared.stopped.get() {
            return Err(ProposeError::Stopped);
        }
        let (done, result) = oneshot::channel();
        let wait = async {
            self.inbox
                .send(Input::Propose { data, done })
                .await
                .map_err(|_| ProposeError::Stopped)?;
            result.await.map_err(|_| ProposeError::Stopped)?
        };
        let timed_out = async {
            glommio::timer::sleep(self.propose_timeout).await;
            Err(ProposeError::Timeout)
        };
        futures_lite::future::or(wait, timed_out).await
    }

    pub fn leader_id(&self) -> Option<u64> {
        Some(self.shared.leader_id.get()).filter(|id| *id != 0)
    }

    pub fn leader_state(&self) -> LeaderState {
        LeaderState {
            leader_id: self.leader_id(),
            term: self.shared.term.get(),
        }
    }

    pub fn is_leader(&self) -> bool {
        self.shared.is_leader.get()
    }

    /// Whether the node has stopped (aborted, shut down, or its driver failed).
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.get()
    }

    pub fn applied_index(&self) -> u64 {
        self.shared.applied_index.get()
    }

    /// This node's commit index (the metadata log's high watermark), log end and applied index.
    pub fn log_position(&self) -> LogPosition {
        LogPosition {
            commit_index: self.shared.commit_index.get(),
            last_index: self.shared.last_index.get(),
            applied_index: self.shared.applied_index.get(),
        }
    }

    /// Every other voter: when this node last heard from it and, while this node leads, its
    /// matched log index. A leader's view is the cluster's liveness; a follower mostly hears
    /// from its leader.
    pub fn peers(&self) -> Vec<PeerStatus> {
        self.shared.peers.snapshot()
    }

    /// When this node was last known to be in contact with a working quorum: the time its
    /// latest answered read-index request went out (`contact.rs`). A follower's request is
    /// answered by its leader once a majority acknowledged a heartbeat sent after it arrived, a
    /// leader's own once a majority acknowledged its heartbeat, so the leader received the
    /// request after the contact it is credited with, and led then. `None` until the first
    /// answer in this process's life. A broker out of contact for longer than its session
    /// timeout has been, or will be, fenced. `now` is not needed since the contact is no longer
    /// derived from the peers' last messages; it is kept for callers.
    pub fn contact(&self, _now: std::time::Instant) -> Option<std::time::Instant> {
        self.lease().map(|lease| lease.at)
    }

    /// The latest contact with a working quorum ([`Quorum::contact`]) and the commit index the
    /// leader gave with it: once [`Quorum::applied_index`] reaches that index, the state machine
    /// holds everything committed before the contact.
    pub fn lease(&self) -> Option<Lease> {
        self.shared.lease.get()
    }

    /// The last index of the log when this node opened its directory: once `applied_index`
    /// reaches it, the state machine reflects everything this node had stored.
    pub fn opened_last_index(&self) -> u64 {
        self.shared.opened_last_index.get()
    }

    /// Waits until the state machine has applied `index` (false if the node stopped first).
    pub async fn wait_applied(&self, index: u64) -> bool {
        poll_fn(|context| {
            if self.shared.applied_index.get() >= index {
                return Poll::Ready(true);
            }
            if self.shared.stopped.get() {
                return Poll::Ready(false);
            }
            self.shared
                .applied_wakers
                .borrow_mut()
                .push(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The address the controller listener is bound to.
    pub fn local_address(&self) -> std::net::SocketAddr {
        self.local_address
    }

    /// Waits until the leader or term differs from `seen`, and returns the new state.
    pub async fn leader_changed(&self, seen: LeaderState) -> LeaderState {
        poll_fn(|context| {
            let now = self.leader_state();
            if now != seen || self.shared.stopped.get() {
                return Poll::Ready(now);
            }
            self.shared
                .leader_wakers
                .borrow_mut()
                .push(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Stops the node as a crash would: every task is cancelled where it is (no pending write
    /// completes, no goodbye), every socket closes. Pending proposals fail with `Stopped`.
    pub fn abort(&self) {
        self.shared.stopped.set(true);
        drop(self.listener.borrow_mut().take());
        drop(self.driver.borrow_mut().take());
    }

    /// Stops the node: the driver finishes the Ready it is handling, then every task ends.
    /// Pending proposals fail with `Stopped`.
    pub async fn shutdown(&self) -> Result<(), DiskError> {
        // A write being retried (a full disk) would hold the driver: it gives up instead.
        self.shared.stopping.set(true);
        drop(self.listener.borrow_mut().take());
        // Awaited, not tried: a full inbox must delay the stop, not lose it.
        let _ = self.inbox.send(Input::Stop).await;
        let driver = self.driver.borrow_mut().take();
        match driver {
            Some(driver) => driver.await,
            None => Ok(()),
        }
    }
}

/// raft-rs's settings. check_quorum makes a leader that lost its majority step down (so a
/// minority reports "no leader" instead of accepting proposals it cannot commit); pre_vote keeps a
/// node that was cut off from raising the term and deposing a healthy leader when it returns.
fn raft_config(config: &Config) -> raft::Config {
    raft::Config {
        id: config.node_id,
        election_tick: config.election_ticks,
        heartbeat_tick: config.heartbeat_ticks,
        max_size_per_msg: MESSAGE_ENTRIES_BYTES_MAX,
        max_inflight_msgs: INFLIGHT_APPENDS_MAX,
        max_uncommitted_size: UNCOMMITTED_BYTES_MAX,
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    }
}
