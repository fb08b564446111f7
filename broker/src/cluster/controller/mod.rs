//! The controller: the single writer of cluster metadata, living on shard 0.
//!
//! Every change builds a new snapshot, persists it (the durable point of the change), then
//! publishes it to every shard and waits until each has applied it, so that when a create
//! request is answered, every shard can route to and serve the new partitions. Each change is
//! an edit of a copy of the snapshot run by [`Controller::change`]: topics (`topics.rs`),
//! configs (`configs.rs`); producer ids come in persisted blocks (`producer_ids.rs`).
//!
//! The controller does not know the shard: it reads the current snapshot and publishes a new
//! one through [`MetadataPublisher`], and other shards reach it with a request to
//! [`CONTROLLER_SHARD`].
//!
//! Invariant: only the controller writes `meta/topics.json`, and only one change is in progress
//! at a time (the semaphore).

mod configs;
mod producer_ids;
mod topics;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use glommio::sync::Semaphore;
use kafka_protocol::error::ResponseError;

use crate::cluster::metadata::MetadataSnapshot;
use crate::fd_budget::FdBudget;
pub use configs::{BrokerTarget, ConfigChange};
use producer_ids::ProducerIdBlock;
pub use topics::TopicSpec;

/// The controller's shard.
pub const CONTROLLER_SHARD: usize = 0;

/// What the controller needs of the broker besides the shards.
pub struct ControllerConfig {
    pub data_dir: PathBuf,
    /// Partitions of a topic created without a count.
    pub default_partitions: i32,
    /// How the process's descriptors are divided; partitions beyond it are refused.
    pub fd_budget: FdBudget,
}

/// How the controller reaches the shards, without knowing them: the snapshot they serve, and
/// the installation of a new one on every shard.
pub trait MetadataPublisher {
    /// The snapshot the shards serve now.
    fn metadata(&self) -> Arc<MetadataSnapshot>;
    /// Installs `snapshot` on every shard and waits until each has applied it; returns the
    /// partitions that failed to open, as (topic, error).
    fn publish(
        &self,
        snapshot: Arc<MetadataSnapshot>,
    ) -> impl Future<Output = Vec<(String, String)>>;
}

/// The single writer of metadata. Concurrency: used on the controller shard only, which serves
/// changes one at a time (`changes`).
pub struct Controller {
    config: ControllerConfig,
    changes: Semaphore,
    producer_ids: RefCell<ProducerIdBlock>,
}

/// A refused change: the Kafka error and a message for the client.
pub type Refusal = (ResponseError, String);

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
    pub fn new(config: ControllerConfig) -> anyhow::Result<Controller> {
        let producer_ids = ProducerIdBlock::load(&config.data_dir)?;
        Ok(Controller {
            config,
            changes: Semaphore::new(1),
            producer_ids: RefCell::new(producer_ids),
        })
    }

    /// Runs one metadata change, the only way metadata changes: `edit` changes a copy of the
    /// current snapshot and gives one (topic, result) per item asked; the copy is persisted and
    /// published unless `validate_only` or every result is a refusal. If publishing fails,
    /// every result becomes that failure. Results keep the order `edit` gave.
    async fn change<T>(
        &self,
        shards: &impl MetadataPublisher,
        validate_only: bool,
        on_open_failure: OpenFailures,
        edit: impl FnOnce(&mut MetadataSnapshot) -> Vec<(String, Result<T, Refusal>)>,
    ) -> Vec<Result<T, Refusal>> {
        let _change =
            (self.changes.acquire_permit(1).await).expect("controller semaphore is never closed");
        let before = shards.metadata();
        let mut next = (*before).clone();
        let (names, results): (Vec<String>, Vec<Result<T, Refusal>>) =
            edit(&mut next).into_iter().unzip();
        if validate_only || !results.iter().any(Result::is_ok) {
            return results;
        }
        let failures = match self.publish(shards, next).await {
            Ok(failures) => failures,
            Err(e) => {
                let refusal = storage_refusal(&e);
                return results.into_iter().map(|_| Err(refusal.clone())).collect();
            }
        };
        match on_open_failure {
            OpenFailures::Keep => results,
            OpenFailures::TakeBack => {
                (self.take_back_unopened(shards, &before, &names, results, failures)).await
            }
        }
    }

    /// Persists `next` as the new metadata and applies it on every shard; returns the partitions
    /// that failed to open, as (topic, error).
    async fn publish(
        &self,
        shards: &impl MetadataPublisher,
        mut next: MetadataSnapshot,
    ) -> std::io::Result<Vec<(String, String)>> {
        next.version = shards.metadata().version + 1;
        next.persist(&self.config.data_dir)?;
        let failures = shards.publish(Arc::new(next)).await;
        // A change on a full disk may have used the reserve; a deletion has now freed space.
        crate::data_dir::ensure_reserve(&self.config.data_dir);
        Ok(failures)
    }

    /// Takes back the changes of `results` (the result for topic `names[i]` is `results[i]`) whose
    /// topic has a partition in `failures` (which failed to open, EMFILE or ENOSPC for example):
    /// each such topic is restored to its entry in `before` (removed if it was not there), the
    /// partitions it gained are closed on their shards and their directories removed, and its
    /// result becomes the error. A topic is reported as created, or grown, only if every new
    /// partition opened; it is never left half-created.
    async fn take_back_unopened<T>(
        &self,
        shards: &impl MetadataPublisher,
        before: &MetadataSnapshot,
        names: &[String],
        mut results: Vec<Result<T, Refusal>>,
        failures: Vec<(String, String)>,
    ) -> Vec<Result<T, Refusal>> {
        assert_eq!(names.len(), results.len());
        let changed = |topic: &String| {
            names
                .iter()
                .zip(&results)
                .any(|(name, result)| name == topic && result.is_ok())
        };
        let failed: BTreeMap<String, String> = failures
            .into_iter()
            .filter(|(topic, _)| changed(topic))
            .collect();
        if failed.is_empty() {
            return results;
        }
        let mut next = (*shards.metadata()).clone();
        let mut added = Vec::new();
        for topic in failed.keys() {
            let Some(meta) = next.topics.remove(topic) else {
                continue;
            };
            let kept = match before.topics.get(topic) {
                Some(old) if old.id == meta.id => old.partitions,
                _ => 0,
            };
            if kept > 0 {
                next.topics
                    .insert(topic.clone(), before.topics[topic].clone());
            }
            added.extend((kept..meta.partitions).map(|partition| (topic.clone(), partition)));
        }
        if let Err(e) = self.publish(shards, next).await {
            // The topics stay listed with partitions that are not open, as after a failed open at
            // start; requests for those get UNKNOWN_TOPIC_OR_PARTITION.
            log::error!("taking back topics whose partitions did not open failed: {e}");
            return results;
        }
        // The owners removed the directories of the partitions that opened; these are the others.
        for (topic, partition) in added {
            let dir = crate::data_dir::partition_dir(&self.config.data_dir, &topic, partition);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    log::warn!("removing {}: {e}", dir.display());
                }
            }
        }
        for (name, result) in names.iter().zip(&mut results) {
            if let (Ok(_), Some(error)) = (&result, failed.get(name)) {
                *result = Err((
                    ResponseError::KafkaStorageError,
                    format!(
                        "a partition of {name} failed to open, so the change was taken back: {error}"
                    ),
                ));
            }
        }
        results
    }
}

fn storage_refusal(e: &std::io::Error) -> Refusal {
    log::error!("persisting metadata failed: {e}");
    (
        ResponseError::KafkaStorageError,
        format!("persisting metadata failed: {e}"),
    )
}

#[cfg(test)]
mod tests;
