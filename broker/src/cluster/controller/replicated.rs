//! The broker's side of the quorum's state machine: every committed command applied to this
//! node's [`MetadataSnapshot`], the results of this process's own proposals kept for it, and
//! the hand-over of each new snapshot to the task that publishes it to the shards.
//!
//! Concurrency: everything here lives on the controller shard's executor. The quorum's driver
//! calls `apply` synchronously; it never waits for the shards: it leaves the newest snapshot in
//! [`Publication`] (one slot, latest value wins) and the publisher task installs it on every
//! shard when it gets to it. A proposer waits until the shards have a snapshot at least as new
//! as its entry (`Publication::published`).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

use super::command::{self, MetadataCommand};
use super::{ItemResults, MetadataPublisher};
use crate::cluster::metadata::MetadataSnapshot;

/// Results of this process's proposals waiting for their proposer. A proposer takes its
/// results as soon as its entry is applied, and changes run one at a time per node, so only a
/// lost proposer (a timed-out proposal that committed later) leaves results behind.
const PROPOSER_RESULTS_MAX: usize = 64;

/// Publishes remembered with the partitions that failed to open in each: a proposer reads the
/// failures of the first publish that covered its entry.
const PUBLISHES_REMEMBERED_MAX: usize = 64;

/// Bytes of a log entry before the command: the proposing process's id.
const PROPOSER_BYTES: usize = 8;

/// This node's replicated metadata and what waits on it.
pub struct MetadataState {
    snapshot: RefCell<Arc<MetadataSnapshot>>,
    /// Identifies this process's entries in the log: random per process start.
    proposer: u64,
    results: RefCell<BTreeMap<u64, ItemResults>>,
    pub publication: Publication,
}

impl MetadataState {
    pub fn new() -> Rc<MetadataState> {
        Rc::new(MetadataState {
            snapshot: RefCell::new(Arc::new(command::empty_snapshot())),
            proposer: crate::cluster::metadata::random_uuid().as_u64_pair().0,
            results: RefCell::new(BTreeMap::new()),
            publication: Publication::default(),
        })
    }

    /// The newest applied snapshot (the shards may still serve an older one).
    pub fn snapshot(&self) -> Arc<MetadataSnapshot> {
        self.snapshot.borrow().clone()
    }

    /// The log entry proposing `command` from this process.
    pub fn entry(&self, command: &MetadataCommand) -> Vec<u8> {
        let mut entry = self.proposer.to_le_bytes().to_vec();
        entry.extend_from_slice(&command.encode());
        entry
    }

    /// The results of this process's entry at `index`, once.
    pub fn take_results(&self, index: u64) -> Option<ItemResults> {
        self.results.borrow_mut().remove(&index)
    }

    fn apply(&self, index: u64, term: u64, entry: &[u8]) {
        let decoded = (entry.split_first_chunk::<PROPOSER_BYTES>())
            .ok_or_else(|| "shorter than its proposer id".to_string())
            .and_then(|(proposer, command)| {
                let command = MetadataCommand::decode(command).map_err(|e| e.to_string())?;
                Ok((u64::from_le_bytes(*proposer), command))
            });
        // Drops the publication's reference first, so that the edit below changes the snapshot
        // in place unless the shards hold it (at start-up, replaying the log copies nothing).
        self.publication.latest.borrow_mut().take();
        let mut snapshot = self.snapshot.borrow_mut();
        let next = Arc::make_mut(&mut snapshot);
        match decoded {
            Ok((proposer, command)) => {
                let results = command::apply_entry(next, index, term, command);
                if proposer == self.proposer {
                    let mut kept = self.results.borrow_mut();
                    kept.insert(index, results);
                    while kept.len() > PROPOSER_RESULTS_MAX {
                        kept.pop_first();
                    }
                }
            }
            Err(reason) => {
                // The same bytes are skipped on every node, so the snapshots stay equal.
                log::error!("metadata log entry {index} is not a command ({reason}); skipped");
                next.version = index;
            }
        }
        self.publication.offer(snapshot.clone());
    }
}

/// The quorum's view of the state: applies entries, snapshots and restores.
pub struct MetadataMachine {
    pub state: Rc<MetadataState>,
}

impl quorum::StateMachine for MetadataMachine {
    fn apply(&mut self, index: u64, term: u64, data: &[u8]) {
        self.state.apply(index, term, data);
    }

    fn snapshot(&self) -> Vec<u8> {
        command::encode_snapshot(&self.state.snapshot())
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        // The quorum checked the snapshot's CRC: bytes that do not decode were written by
        // another version, and serving any metadata from them would be wrong. The quorum stops
        // on this error and logs it (at start-up, the broker does not start).
        let snapshot = command::decode_snapshot(data)
            .map_err(|e| format!("the metadata snapshot does not decode: {e}"))?;
        self.state.publication.latest.borrow_mut().take();
        *self.state.snapshot.borrow_mut() = Arc::new(snapshot);
        let restored = self.state.snapshot();
        self.state.publication.offer(restored);
        Ok(())
    }
}

/// One publish: the version installed, and the partitions that failed to open as (topic, error).
type Published = (u64, Vec<(String, String)>);

/// The snapshots waiting to be published, and what has been published.
#[derive(Default)]
pub struct Publication {
    latest: RefCell<Option<Arc<MetadataSnapshot>>>,
    publisher: RefCell<Option<Waker>>,
    /// The version every shard has installed.
    published: Cell<u64>,
    /// The last publishes, oldest first.
    history: RefCell<VecDeque<Published>>,
    waiters: RefCell<Vec<Waker>>,
}

impl Publication {
    fn offer(&self, snapshot: Arc<MetadataSnapshot>) {
        *self.latest.borrow_mut() = Some(snapshot);
        if let Some(waker) = self.publisher.borrow_mut().take() {
            waker.wake();
        }
    }

    /// The version every shard has installed.
    pub fn published_version(&self) -> u64 {
        self.published.get()
    }

    /// Records that the shards serve `version` from the start (nothing to publish up to it).
    pub fn started_with(&self, version: u64) {
        self.published.set(version);
    }

    async fn next(&self) -> Arc<MetadataSnapshot> {
        poll_fn(|context| match self.latest.borrow_mut().take() {
            Some(snapshot) => Poll::Ready(snapshot),
            None => {
                *self.publisher.borrow_mut() = Some(context.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    /// Waits until every shard has a snapshot of at least `version`; returns the partitions
    /// that failed to open when the first such snapshot was installed.
    pub async fn published(&self, version: u64) -> Vec<(String, String)> {
        poll_fn(|context| {
            if self.published.get() >= version {
                let history = self.history.borrow();
                let covering = history.iter().find(|(published, _)| *published >= version);
                return Poll::Ready(
                    covering
                        .map(|(_, failed)| failed.clone())
                        .unwrap_or_default(),
                );
            }
            self.waiters.borrow_mut().push(context.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn record(&self, version: u64, failures: Vec<(String, String)>) {
        self.published.set(version);
        let mut history = self.history.borrow_mut();
        history.push_back((version, failures));
        while history.len() > PUBLISHES_REMEMBERED_MAX {
            history.pop_front();
        }
        for waker in self.waiters.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

/// The publisher task: installs each new snapshot on every shard, newest first (snapshots
/// offered while one is being installed collapse into the newest). Runs on the controller
/// shard for the life of the process, started once every shard has opened its partitions.
pub async fn publish_forever(
    state: Rc<MetadataState>,
    shards: impl MetadataPublisher,
    data_dir: std::path::PathBuf,
) {
    loop {
        let snapshot = state.publication.next().await;
        let version = snapshot.version;
        if version <= state.publication.published.get() {
            continue;
        }
        let failures = shards.publish(snapshot).await;
        // A change on a full disk may have used the reserve; a deletion has now freed space.
        crate::data_dir::ensure_reserve(&data_dir);
        state.publication.record(version, failures);
    }
}
