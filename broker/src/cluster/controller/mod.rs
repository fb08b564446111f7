//! The controller: the one place that changes cluster metadata, living on shard 0 of every
//! broker.
//!
//! The metadata is the state machine of the metadata quorum (the `quorum` crate, raft-rs): a
//! change is proposed as a [`command::MetadataCommand`], and once the quorum commits it every
//! node applies it to its own snapshot with the same deterministic edit (`command::apply`),
//! hands the new snapshot to its publisher task (`replicated.rs`), which installs it on every
//! shard. The proposer answers only after its own shards serve a snapshot that holds the change,
//! so that when a create request is answered, every shard can route to and serve the new
//! partitions. The commands' edits live with their kinds: topics (`topics.rs`), configs
//! (`configs.rs`); producer ids come in replicated blocks (`producer_ids.rs`). Start-up
//! (`start.rs`) opens the quorum, replays it and migrates an old single-node data directory.
//!
//! The controller does not know the shard: it reads the current snapshot and publishes a new
//! one through [`MetadataPublisher`], and other shards reach it with a request to
//! [`CONTROLLER_SHARD`].
//!
//! Invariant: the quorum's log is the ground truth of metadata; nothing else persists it, and
//! each node proposes one change at a time (the semaphore).

mod changes;
pub mod command;
mod configs;
pub mod elections;
mod isr;
pub mod liveness;
mod producer_ids;
pub mod quorum_ids;
pub mod reassign;
pub mod replicated;
mod snapshot_codec;
pub mod start;
mod topics;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;
use kafka_protocol::error::ResponseError;

use crate::cluster::metadata::{MetadataSnapshot, TopicMeta};
use crate::fd_budget::FdBudget;
use command::MetadataCommand;
pub use configs::{BrokerTarget, ConfigChange};
pub use isr::ProposedIsr;
use producer_ids::ProducerIdBlock;
use replicated::MetadataState;
use topics::TakeBack;
pub use topics::TopicSpec;

/// The controller's shard.
pub const CONTROLLER_SHARD: usize = 0;

/// What the controller needs of the broker besides the shards.
pub struct ControllerConfig {
    pub data_dir: PathBuf,
    /// Partitions of a topic created without a count.
    pub default_partitions: i32,
    /// Replication factor of a topic created without one.
    pub default_replication_factor: i16,
    /// How the process's descriptors are divided; partitions beyond it are refused.
    pub fd_budget: FdBudget,
}

/// How the publisher task reaches the shards, without knowing them: the installation of a new
/// snapshot on every shard.
pub trait MetadataPublisher {
    /// Installs `snapshot` on every shard and waits until each has applied it; returns the
    /// partitions that failed to open, as (topic, error).
    fn publish(
        &self,
        snapshot: Arc<MetadataSnapshot>,
    ) -> impl Future<Output = Vec<(String, String)>>;
}

/// The one writer of metadata on this node. Concurrency: used on the controller shard only,
/// which proposes changes one at a time (`changes`).
pub struct Controller {
    config: ControllerConfig,
    changes: Semaphore,
    quorum: Rc<quorum::Quorum>,
    state: Rc<MetadataState>,
    producer_ids: RefCell<ProducerIdBlock>,
}

/// A refused change: the Kafka error and a message for the client.
pub type Refusal = (ResponseError, String);

/// What an item of a command produced, for the proposer to answer with.
#[derive(Debug, Clone, PartialEq)]
pub enum Applied {
    Topic(TopicMeta),
    TopicId(uuid::Uuid),
    /// A topic grown: its id, and its partition counts before and after, as applied (which may
    /// differ from the proposer's snapshot if another change committed first).
    Grown {
        id: uuid::Uuid,
        from: i32,
        to: i32,
    },
    Done,
    /// The first producer id of the allocated block.
    ProducerIds(i64),
    /// A partition's new leader, from an election.
    Leader(i32),
}

/// Per item of a command: the topic (or resource) it names and its result, in command order.
pub type ItemResults = Vec<(String, Result<Applied, Refusal>)>;

/// What a change does when partitions it added fail to open (EMFILE or ENOSPC, for example).
#[derive(Debug, Clone, Copy, PartialEq)]
enum OpenFailures {
    /// Takes back the topic's change: a topic is created, or grown, only if every new partition
    /// opened.
    TakeBack,
    /// Keeps the change: it added no partition, so a failure belongs to an earlier one.
    Keep,
}

impl Controller {
    pub fn new(
        config: ControllerConfig,
        quorum: Rc<quorum::Quorum>,
        state: Rc<MetadataState>,
    ) -> Controller {
        Controller {
            config,
            changes: Semaphore::new(1),
            quorum,
            state,
            producer_ids: RefCell::new(ProducerIdBlock::empty()),
        }
    }

    /// Runs one metadata change, the only way metadata changes: `command` is applied to a copy
    /// of the newest snapshot first, and proposed only if `validate_only` is false and some item
    /// would succeed. Results are those of the command as the quorum applied it (one per item,
    /// in order); a failed proposal makes every result its refusal.
    async fn change(
        &self,
        validate_only: bool,
        on_open_failure: OpenFailures,
        command: MetadataCommand,
    ) -> Vec<Result<Applied, Refusal>> {
        let _change = self.change_permit().await;
        self.change_holding_permit(validate_only, on_open_failure, command)
            .await
    }

    /// [`Controller::change`] for a command whose items all answer with one kind of
    /// [`Applied`]: `pick` takes the value out of it, or gives it back if it is of another kind,
    /// which is a bug.
    async fn change_as<T>(
        &self,
        validate_only: bool,
        on_open_failure: OpenFailures,
        command: MetadataCommand,
        pick: fn(Applied) -> Result<T, Box<Applied>>,
    ) -> Vec<Result<T, Refusal>> {
        let results = self.change(validate_only, on_open_failure, command).await;
        (results.into_iter())
            .map(|result| {
                let applied = pick(result?);
                Ok(applied.unwrap_or_else(|other| panic!("a command answered with {other:?}")))
            })
            .collect()
    }

    /// [`Controller::change_as`] for a command of one item that answers [`Applied::Done`].
    async fn change_one(&self, command: MetadataCommand) -> Result<(), Refusal> {
        let results = self.change_as(false, OpenFailures::Keep, command, done);
        (results.await.pop()).expect("one result for a command of one item")
    }

    /// The right to run a change: changes run one at a time on each node.
    async fn change_permit(&self) -> glommio::sync::Permit<'_> {
        (self.changes.acquire_permit(1).await).expect("controller semaphore is never closed")
    }

    /// [`Controller::change`] for a caller that holds the change permit.
    async fn change_holding_permit(
        &self,
        validate_only: bool,
        on_open_failure: OpenFailures,
        command: MetadataCommand,
    ) -> Vec<Result<Applied, Refusal>> {
        let mut copy = (*self.state.snapshot()).clone();
        let trial_index = copy.version + 1;
        let term = self.quorum.leader_state().term;
        let trial = command::apply_entry(&mut copy, trial_index, term, command.clone());
        if validate_only || !trial.iter().any(|(_, result)| result.is_ok()) {
            return trial.into_iter().map(|(_, result)| result).collect();
        }
        match self.propose(&command).await {
            Err(refusal) => vec![Err(refusal); trial.len()],
            Ok((applied, failures)) => {
                let (names, results): (Vec<String>, Vec<_>) = applied.into_iter().unzip();
                match on_open_failure {
                    OpenFailures::Keep => results,
                    OpenFailures::TakeBack => {
                        (self.take_back_unopened(&names, results, failures)).await
                    }
                }
            }
        }
    }

    /// Proposes `command` and waits until this node's shards serve a snapshot that holds it;
    /// returns its results and the partitions that failed to open on this node's shards.
    async fn propose(
        &self,
        command: &MetadataCommand,
    ) -> Result<(ItemResults, Vec<(String, String)>), Refusal> {
        // On a full disk the quorum's log could not take the entry, and the quorum stops at a
        // failed write: the reserve makes room for it (a deletion is how space comes back).
        crate::data_dir::release_reserve_if_full(&self.config.data_dir);
        let index =
            (self.quorum.propose(self.state.entry(command)).await).map_err(propose_refusal)?;
        let results = self.state.take_results(index).ok_or_else(|| {
            (
                ResponseError::UnknownServerError,
                format!("the results of metadata entry {index} were lost"),
            )
        })?;
        let failures = self.state.publication.published(index).await;
        Ok((results, failures))
    }

    /// Takes back the changes of `results` (the result for topic `names[i]` is `results[i]`) whose
    /// topic has a partition in `failures` (which failed to open, EMFILE or ENOSPC for example):
    /// each such topic is shrunk back to the partition count its change grew it from, as the
    /// change was applied (removed if the change created it), by a follow-up command that names
    /// the topic id the change applied to and keeps any other change made to it meanwhile. For
    /// each topic whose take-back applied, the partitions its change added are closed on their
    /// shards and their directories removed, and its result becomes the error. A topic is
    /// reported as created, or grown, only if every new partition opened; it is never left
    /// half-created. A take-back refused at apply (the topic was deleted, or re-created, since)
    /// leaves the result and the directories alone.
    async fn take_back_unopened(
        &self,
        names: &[String],
        mut results: Vec<Result<Applied, Refusal>>,
        failures: Vec<(String, String)>,
    ) -> Vec<Result<Applied, Refusal>> {
        assert_eq!(names.len(), results.len());
        let failed: BTreeMap<String, String> = failures.into_iter().collect();
        // (take-back, first partition added, end of the partitions added) per failed topic.
        let mut take_backs: Vec<(TakeBack, i32, i32)> = Vec::new();
        for (name, result) in names.iter().zip(&results) {
            let (id, from, to) = match result {
                Ok(Applied::Topic(meta)) => (meta.id, 0, meta.partitions),
                Ok(Applied::Grown { id, from, to }) => (*id, *from, *to),
                _ => continue,
            };
            if !failed.contains_key(name) || take_backs.iter().any(|(t, ..)| &t.name == name) {
                continue;
            }
            let take_back = TakeBack {
                name: name.clone(),
                id,
                partitions: from,
            };
            take_backs.push((take_back, from, to));
        }
        if take_backs.is_empty() {
            return results;
        }
        let topics = take_backs.iter().map(|(t, ..)| t.clone()).collect();
        let command = MetadataCommand::TakeBack { topics };
        let applied = match self.propose(&command).await {
            Ok((applied, _)) => applied,
            Err((_, message)) => {
                // The topics stay listed with partitions that are not open, as after a failed
                // open at start; requests for those get UNKNOWN_TOPIC_OR_PARTITION.
                log::error!("taking back topics whose partitions did not open failed: {message}");
                return results;
            }
        };
        assert_eq!(applied.len(), take_backs.len());
        for ((take_back, from, to), (_, outcome)) in take_backs.iter().zip(applied) {
            let name = &take_back.name;
            if let Err((_, message)) = outcome {
                log::warn!("the change of {name} was not taken back: {message}");
                continue;
            }
            self.remove_partition_dirs(name, *from..*to);
            let error = &failed[name];
            for (item, result) in names.iter().zip(&mut results) {
                if item == name && result.is_ok() {
                    *result = Err((
                        ResponseError::KafkaStorageError,
                        format!(
                            "a partition of {name} failed to open, so the change was taken back: {error}"
                        ),
                    ));
                }
            }
        }
        results
    }

    /// Removes the directories of `topic`'s partitions in `range`, which a take-back removed from
    /// the metadata. The owners removed those of the partitions that opened; these are the others.
    fn remove_partition_dirs(&self, topic: &str, range: std::ops::Range<i32>) {
        for partition in range {
            let dir = crate::data_dir::partition_dir(&self.config.data_dir, topic, partition);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("removing {}: {e}", dir.display());
                }
            }
        }
    }
}

/// The Kafka error for a proposal the quorum did not take. Clients retry NOT_CONTROLLER and
/// REQUEST_TIMED_OUT; a timed-out proposal may still commit, and the retry then finds its
/// effect (TOPIC_ALREADY_EXISTS, for example), as with Kafka's controller.
fn propose_refusal(error: quorum::ProposeError) -> Refusal {
    use quorum::ProposeError;
    let code = match error {
        ProposeError::NoLeader => ResponseError::NotController,
        ProposeError::Timeout => ResponseError::RequestTimedOut,
        ProposeError::TooLarge => ResponseError::PolicyViolation,
        ProposeError::Empty => ResponseError::InvalidRequest,
        ProposeError::Stopped => ResponseError::KafkaStorageError,
    };
    (
        code,
        format!("the metadata quorum did not take the change: {error}"),
    )
}

/// The results of a command whose items answer with nothing but success.
/// The value of [`Applied::Done`], for [`Controller::change_as`].
fn done(applied: Applied) -> Result<(), Box<Applied>> {
    match applied {
        Applied::Done => Ok(()),
        other => Err(Box::new(other)),
    }
}

#[cfg(test)]
mod format_tests;
#[cfg(test)]
mod tests;
