//! The task that drives one node's raft-rs `RawNode`: ticks, inbound messages, proposals, and
//! the handling of each `Ready` in the order raft-rs documents.
//!
//! **Invariant:** persist before send. Entries, the hard state and an installed snapshot are
//! durable before the Ready's persisted messages leave (votes, append acknowledgements). A
//! write that fails (ENOSPC, EIO) is retried in place (`disk.rs`, `retry.rs`): the driver then
//! steps no input and ticks no clock, so the node acknowledges nothing, and it resumes where it
//! was once the write succeeds.
//! **Invariant:** apply in order. Committed entries reach the state machine once each, in index
//! order, after the snapshot they follow.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::task::Waker;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use glommio::channels::local_channel::LocalReceiver;
use raft::prelude::{Entry, EntryType, Message, MessageType, Snapshot};
use raft::{ProgressState, RawNode, SnapshotStatus, StateRole};

use crate::config::Config;
use crate::contact::{self, Lease};
use crate::disk::{Disk, DiskError};
use crate::peers::Peers;
use crate::state_machine::StateMachine;
use crate::store::SharedStore;
use crate::transport::Outbox;
use crate::{logger, ProposeError, StartError};

/// Ticks a peer may stay in raft-rs's Snapshot state after a snapshot was sent to it before the
/// send counts as failed. raft-rs pauses replication to such a peer until `report_snapshot`, so
/// a snapshot lost with its connection would otherwise stall that peer for good.
const SNAPSHOT_ACK_TICKS_MAX: u64 = 50;

/// Inputs handled per Ready: more are coalesced into one fdatasync, fewer keep latency low.
const INPUTS_PER_READY_MAX: usize = 256;

pub enum Input {
    Message(Box<Message>),
    Propose {
        data: Vec<u8>,
        done: oneshot::Sender<Result<u64, ProposeError>>,
    },
    Stop,
}

/// What the handle reads without asking the driver.
#[derive(Default)]
pub struct Shared {
    pub leader_id: Cell<u64>,
    pub term: Cell<u64>,
    pub is_leader: Cell<bool>,
    pub applied_index: Cell<u64>,
    pub commit_index: Cell<u64>,
    pub last_index: Cell<u64>,
    pub peers: Peers,
    /// The latest contact with a working quorum proven by a read-index round trip
    /// (`contact.rs`); `None` until the first answer in this process's life.
    pub lease: Cell<Option<Lease>>,
    /// Tasks waiting for `applied_index` to grow.
    pub applied_wakers: RefCell<Vec<Waker>>,
    /// The last index of the log when the node opened its directory.
    pub opened_last_index: Cell<u64>,
    pub leader_version: Cell<u64>,
    pub leader_wakers: RefCell<Vec<Waker>>,
    pub stopped: Cell<bool>,
    /// Set by `Quorum::shutdown`: a write being retried gives up, and the node stops.
    pub stopping: Rc<Cell<bool>>,
}

impl Shared {
    fn set_leader(&self, leader_id: u64, term: u64, is_leader: bool) {
        if (self.leader_id.get(), self.term.get()) == (leader_id, term) {
            return;
        }
        self.leader_id.set(leader_id);
        self.term.set(term);
        self.is_leader.set(is_leader);
        self.leader_version.set(self.leader_version.get() + 1);
        for waker in self.leader_wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

pub struct Driver<S: StateMachine, O: Outbox> {
    pub node: RawNode<SharedStore>,
    pub disk: Disk,
    pub outbox: O,
    pub state_machine: S,
    pub shared: Rc<Shared>,
    pub inbox: LocalReceiver<Input>,
    pub tick: Duration,
    pub snapshot_every: u64,
    pub node_id: u64,
    /// Distinguishes this process's proposals from an earlier life's entries replayed at start.
    pub incarnation: u64,
    pub next_proposal: u64,
    pub pending: HashMap<u64, oneshot::Sender<Result<u64, ProposeError>>>,
    pub ticks: u64,
    /// The tick at which a snapshot was last sent, by peer.
    pub snapshots_sent: BTreeMap<u64, u64>,
    /// The time read-index contexts count from (`contact::request_context`).
    pub origin: Instant,
}

impl<S: StateMachine, O: Outbox> Driver<S, O> {
    /// Opens the node's directory, restores the state machine from its snapshot and creates the
    /// `RawNode` (`raft_config` without id and applied index: they come from here). A single
    /// voter campaigns at once.
    pub async fn open(
        config: &Config,
        mut raft_config: raft::Config,
        mut state_machine: S,
        outbox: O,
        inbox: LocalReceiver<Input>,
    ) -> Result<Self, StartError> {
        let disk = Disk::open(&config.dir, &config.voter_ids()).await?;
        let snapshot_index = disk.core().snapshot_index();
        if snapshot_index > 0 {
            (state_machine.restore(&disk.core().snapshot.data)).map_err(|reason| {
                DiskError::Unrestorable {
                    index: snapshot_index,
                    reason,
                }
            })?;
        }
        raft_config.id = config.node_id;
        raft_config.applied = snapshot_index;
        let mut node = RawNode::new(
            &raft_config,
            disk.store(),
            &logger::raft_logger(config.node_id),
        )?;
        if config.voters.len() == 1 {
            node.campaign()?;
        }
        let shared = Rc::new(Shared {
            peers: Peers::new(&config.voter_ids(), config.node_id),
            stopping: disk.stopping.clone(),
            ..Shared::default()
        });
        shared.applied_index.set(snapshot_index);
        shared
            .opened_last_index
            .set(node.raft.raft_log.last_index());
        Ok(Driver {
            node,
            disk,
            outbox,
            state_machine,
            shared,
            inbox,
            tick: config.tick,
            snapshot_every: config.snapshot_every,
            node_id: config.node_id,
            incarnation: incarnation(),
            next_proposal: 0,
            pending: HashMap::new(),
            ticks: 0,
            snapshots_sent: BTreeMap::new(),
            origin: Instant::now(),
        })
    }

    /// Runs until `Input::Stop` or a storage error (the node then stops: its disk can no longer
    /// be trusted to hold what it acknowledged).
    pub async fn run(mut self) -> Result<(), DiskError> {
        let result = self.run_loop().await;
        if let Err(error) = &result {
            log::error!("quorum node {} stops: {error}", self.node_id);
        }
        self.shared.stopped.set(true);
        for waker in self.shared.applied_wakers.borrow_mut().drain(..) {
            waker.wake();
        }
        for (_, done) in self.pending.drain() {
            let _ = done.send(Err(ProposeError::Stopped));
        }
        result
    }

    async fn run_loop(&mut self) -> Result<(), DiskError> {
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let input = futures_lite::future::or(async { Some(self.inbox.recv().await) }, async {
                glommio::timer::sleep(next_tick.saturating_duration_since(Instant::now())).await;
                None
            })
            .await;
            if let Some(input) = input {
                let Some(input) = input else { return Ok(()) };
                if !self.handle_input(input) {
                    return Ok(());
                }
                for _ in 1..INPUTS_PER_READY_MAX {
                    match futures_lite::future::poll_once(self.inbox.recv()).await {
                        Some(Some(input)) => {
                            if !self.handle_input(input) {
                                return Ok(());
                            }
                        }
                        Some(None) => return Ok(()),
                        None => break,
                    }
                }
            }
            if Instant::now() >= next_tick {
                self.tick();
                next_tick = Instant::now() + self.tick;
            }
            self.handle_ready().await?;
            self.publish_log_position();
        }
    }

    /// One tick of raft-rs's logical clock, and the driver's periodic checks.
    pub fn tick(&mut self) {
        self.node.tick();
        self.ticks += 1;
        self.pending.retain(|_, done| !done.is_canceled());
        self.retry_lost_snapshots();
        self.request_contact(Instant::now());
    }

    /// Asks for a read index whose answer proves contact as of `now` (`contact.rs`). Only with
    /// a known leader: raft-rs drops the request otherwise, and logs each drop.
    fn request_contact(&mut self, now: Instant) {
        if self.node.raft.leader_id == raft::INVALID_ID {
            return;
        }
        self.node
            .read_index(contact::request_context(self.origin, now));
    }

    /// Keeps the newest contact the answered read indexes prove.
    fn note_contact(&self, states: Vec<raft::ReadState>) {
        let now = Instant::now();
        for state in states {
            let answer = contact::lease_of(self.origin, now, &state.request_ctx, state.index);
            if let Some(answer) = answer {
                self.shared
                    .lease
                    .set(contact::newer(self.shared.lease.get(), answer));
            }
        }
    }

    /// Returns false on `Stop`.
    pub fn handle_input(&mut self, input: Input) -> bool {
        match input {
            Input::Message(mut message) => {
                self.shared.peers.heard(message.from, Instant::now());
                // A node that lost a torn log tail at start-up may still be counted by the leader
                // as holding it, and raft-rs panics on a heartbeat committing past its log. The
                // commit is lowered to the log's end: the leader's next append is then refused
                // and it sends the lost entries again.
                let last_index = self.node.raft.raft_log.last_index();
                if message.get_msg_type() == MessageType::MsgHeartbeat
                    && message.commit > last_index
                {
                    message.commit = last_index;
                }
                // A message from an old term or a peer this node does not know is refused by
                // raft-rs with an error; nothing more to do with it.
                let _ = self.node.step(*message);
            }
            Input::Propose { data, done } => self.propose(data, done),
            Input::Stop => return false,
        }
        true
    }

    fn propose(&mut self, data: Vec<u8>, done: oneshot::Sender<Result<u64, ProposeError>>) {
        self.next_proposal += 1;
        let id = self.next_proposal;
        let context = proposal_context(self.node_id, self.incarnation, id);
        match self.node.propose(context, data) {
            Ok(()) => {
                self.pending.insert(id, done);
            }
            Err(_) => {
                let _ = done.send(Err(ProposeError::NoLeader));
            }
        }
    }

    /// One Ready, in raft-rs's documented order (see `RawNode::ready`).
    pub async fn handle_ready(&mut self) -> Result<(), DiskError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        // 1. Messages that need nothing persisted (a leader's appends and heartbeats).
        self.send(ready.take_messages());
        self.note_contact(ready.take_read_states());
        // 2. A snapshot from the leader: durable, then the state machine takes it.
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.install_snapshot(snapshot).await?;
        }
        // 3. Entries committed earlier and persisted here.
        self.apply(ready.take_committed_entries());
        // 4, 5. New entries, then the hard state, durable.
        self.disk.append(ready.entries()).await?;
        if let Some(hard_state) = ready.hs() {
            self.disk.save_hard_state(hard_state).await?;
        }
        // 6. Messages that promise what was just persisted (votes, append responses).
        self.send(ready.take_persisted_messages());
        // 7. Advance, then what the advance released.
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.disk.note_commit(commit);
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries());
        self.node.advance_apply();
        for waker in self.shared.applied_wakers.borrow_mut().drain(..) {
            waker.wake();
        }
        self.publish_leader();
        self.compact_if_due().await
    }

    async fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), DiskError> {
        let index = snapshot
            .metadata
            .as_ref()
            .map_or(0, |metadata| metadata.index);
        self.disk.install_snapshot(snapshot.clone()).await?;
        // A snapshot this node cannot read stops it (`run` logs why), as a disk error does.
        (self.state_machine.restore(&snapshot.data))
            .map_err(|reason| DiskError::Unrestorable { index, reason })?;
        self.shared.applied_index.set(index);
        log::info!(
            "quorum node {} installed a snapshot at index {index}",
            self.node_id
        );
        Ok(())
    }

    fn send(&mut self, messages: Vec<Message>) {
        for message in messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                self.snapshots_sent.insert(message.to, self.ticks);
            }
            self.outbox.send(message);
        }
    }

    /// Reports as failed the snapshots that a peer has not acknowledged in time, so raft-rs
    /// sends another.
    fn retry_lost_snapshots(&mut self) {
        let ticks = self.ticks;
        let node = &mut self.node;
        self.snapshots_sent.retain(|peer, sent_at| {
            let waiting = node
                .raft
                .prs()
                .get(*peer)
                .is_some_and(|progress| progress.state == ProgressState::Snapshot);
            if waiting && ticks - *sent_at > SNAPSHOT_ACK_TICKS_MAX {
                node.report_snapshot(*peer, SnapshotStatus::Failure);
                return false;
            }
            waiting
        });
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        for entry in entries {
            let index = entry.index;
            assert!(
                index > self.shared.applied_index.get(),
                "entry {index} applied out of order"
            );
            self.shared.applied_index.set(index);
            if entry.get_entry_type() != EntryType::EntryNormal {
                // The voter set is fixed: nothing proposes configuration changes.
                log::error!(
                    "quorum node {} skips a configuration change at {index}",
                    self.node_id
                );
                continue;
            }
            if entry.data.is_empty() {
                continue;
            }
            self.state_machine.apply(index, entry.term, &entry.data);
            if let Some(id) = own_proposal(&entry.context, self.node_id, self.incarnation) {
                if let Some(done) = self.pending.remove(&id) {
                    let _ = done.send(Ok(index));
                }
            }
        }
    }

    fn publish_leader(&self) {
        let raft = &self.node.raft;
        self.shared
            .set_leader(raft.leader_id, raft.term, raft.state == StateRole::Leader);
    }

    /// The log position and the peers' matched indexes, for the handle. raft-rs moves a peer's
    /// matched index while stepping its responses, without always producing a Ready, so this
    /// runs after every batch of inputs and every tick.
    pub fn publish_log_position(&self) {
        let raft_log = &self.node.raft.raft_log;
        self.shared.commit_index.set(raft_log.committed);
        self.shared.last_index.set(raft_log.last_index());
        self.shared.peers.refresh(&self.node);
    }

    /// After `snapshot_every` applied entries past the last snapshot, or once the log file
    /// passes `LOG_COMPACT_BYTES`, snapshots the state machine and drops the entries it covers.
    async fn compact_if_due(&mut self) -> Result<(), DiskError> {
        let applied = self.shared.applied_index.get();
        let snapshot_index = self.disk.core().snapshot_index();
        let by_count = applied >= snapshot_index + self.snapshot_every;
        let by_size =
            applied > snapshot_index && self.disk.log_bytes() > crate::disk::LOG_COMPACT_BYTES;
        if !by_count && !by_size {
            return Ok(());
        }
        let data = self.state_machine.snapshot();
        if data.len() >= crate::transport::MESSAGE_BYTES_MAX - 64 * 1024 {
            // Not a panic: the node stops with this error, and restarts from the last good
            // snapshot instead of panicking again at the same place.
            return Err(DiskError::Io(std::io::Error::other(format!(
                "a state machine snapshot of {} bytes does not fit a Raft message",
                data.len()
            ))));
        }
        if let Err(error) = self.disk.compact(applied, data).await {
            // Compaction can wait: the log keeps every entry, and the next Ready tries again.
            log::debug!("quorum node {} could not compact: {error}", self.node_id);
            return Ok(());
        }
        log::debug!(
            "quorum node {} compacted its log up to {applied}",
            self.node_id
        );
        Ok(())
    }
}

pub fn proposal_context(node_id: u64, incarnation: u64, id: u64) -> Vec<u8> {
    let mut context = Vec::with_capacity(24);
    context.extend_from_slice(&node_id.to_le_bytes());
    context.extend_from_slice(&incarnation.to_le_bytes());
    context.extend_from_slice(&id.to_le_bytes());
    context
}

/// The proposal id in `context`, if this node in this life proposed the entry.
fn own_proposal(context: &[u8], node_id: u64, incarnation: u64) -> Option<u64> {
    if context.len() != 24 {
        return None;
    }
    let field = |at: usize| u64::from_le_bytes(context[at..at + 8].try_into().expect("8 bytes"));
    (field(0) == node_id && field(8) == incarnation).then(|| field(16))
}

/// A number that differs between two starts of the same node.
fn incarnation() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}
