//! The controller: the single writer of cluster metadata, living on shard 0.
//!
//! Every change builds a new snapshot, persists it (the durable point of the change), then
//! publishes it to every shard and waits until each has applied it, so that when a create
//! request is answered, every shard can route to and serve the new partitions.
//!
//! Invariant: only the controller writes `meta/topics.json`, and only one change is in progress
//! at a time (the semaphore).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use glommio::sync::Semaphore;
use kafka_protocol::error::ResponseError;

use crate::metadata::{
    random_uuid, validate_topic_name, MetadataSnapshot, TopicMeta, TOPIC_PARTITIONS_MAX,
};
use crate::shard::message::{Reply, Request};
use crate::shard::Shard;
use crate::{broker_config, topic_config};

/// The controller's shard.
pub const CONTROLLER_SHARD: usize = 0;

pub struct Controller {
    changes: Semaphore,
    producer_ids: std::cell::RefCell<ProducerIdBlock>,
}

/// Producer ids handed out per persisted block: one fsync per this many InitProducerId calls.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// The controller's supply of producer ids. The end of the current block is persisted before any
/// id of the block is handed out, so no id is ever given twice, across restarts included (ids
/// left in a block at a crash are skipped).
struct ProducerIdBlock {
    next: i64,
    end: i64,
}

/// A topic to create, as asked by CreateTopics, the CLI or auto-creation.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    /// -1 asks for the broker default.
    pub partitions: i32,
    /// -1 asks for the broker default (1: there is one broker).
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

/// A refused change: the Kafka error and a message for the client.
pub type Refusal = (ResponseError, String);

impl Controller {
    pub fn new(data_dir: &std::path::Path) -> anyhow::Result<Controller> {
        let persisted_end = match std::fs::read_to_string(producer_id_path(data_dir)) {
            Ok(text) => text
                .trim()
                .parse::<i64>()
                .map_err(|e| anyhow::anyhow!("meta/producer_ids: {e}"))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        Ok(Controller {
            changes: Semaphore::new(1),
            producer_ids: std::cell::RefCell::new(ProducerIdBlock {
                next: persisted_end,
                end: persisted_end,
            }),
        })
    }
}

fn producer_id_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("meta").join("producer_ids")
}

/// A new producer id (from any shard).
pub async fn allocate_producer_id(shard: &Rc<Shard>) -> Result<i64, ResponseError> {
    match shard
        .call(CONTROLLER_SHARD, Request::AllocateProducerId)
        .await
    {
        Reply::AllocateProducerId(result) => result,
        other => other.mismatch("AllocateProducerId"),
    }
}

pub(crate) fn allocate_producer_id_here(shard: &Shard) -> Result<i64, ResponseError> {
    let mut block = controller(shard).producer_ids.borrow_mut();
    if block.next == block.end {
        let end = block.end + PRODUCER_ID_BLOCK_SIZE;
        crate::data_dir::persist_atomically(
            &producer_id_path(&shard.config.data_dir),
            end.to_string().as_bytes(),
        )
        .map_err(|e| {
            log::error!("persisting the producer id block failed: {e}");
            ResponseError::KafkaStorageError
        })?;
        block.end = end;
    }
    let id = block.next;
    block.next += 1;
    Ok(id)
}

fn controller(shard: &Shard) -> &Controller {
    shard
        .controller
        .as_ref()
        .expect("controller work runs on the controller shard")
}

/// Creates topics (from any shard). Results are in the order of `specs`.
pub async fn create_topics(
    shard: &Rc<Shard>,
    specs: Vec<TopicSpec>,
    validate_only: bool,
) -> Vec<Result<TopicMeta, Refusal>> {
    let request = Request::CreateTopics {
        specs,
        validate_only,
    };
    match shard.call(CONTROLLER_SHARD, request).await {
        Reply::CreateTopics(results) => results,
        other => other.mismatch("CreateTopics"),
    }
}

pub(crate) async fn create_topics_here(
    shard: &Rc<Shard>,
    specs: Vec<TopicSpec>,
    validate_only: bool,
) -> Vec<Result<TopicMeta, Refusal>> {
    let _change = controller(shard)
        .changes
        .acquire_permit(1)
        .await
        .expect("controller semaphore is never closed");
    let before = shard.metadata();
    let mut next = (*before).clone();
    let mut results = Vec::with_capacity(specs.len());
    let names: Vec<String> = specs.iter().map(|spec| spec.name.clone()).collect();
    for spec in specs {
        let result = check_new_topic(shard, &next, spec);
        if let Ok(meta) = &result {
            next.topics.insert(meta.name.clone(), meta.clone());
        }
        results.push(result);
    }
    let (results, failures) =
        publish_results_and_failures(shard, next, results, validate_only).await;
    take_back_unopened(shard, &before, &names, results, failures).await
}

fn check_new_topic(
    shard: &Shard,
    metadata: &MetadataSnapshot,
    spec: TopicSpec,
) -> Result<TopicMeta, Refusal> {
    validate_topic_name(&spec.name).map_err(|m| (ResponseError::InvalidTopicException, m))?;
    if metadata.topics.contains_key(&spec.name) {
        return Err((
            ResponseError::TopicAlreadyExists,
            format!("topic {} already exists", spec.name),
        ));
    }
    let partitions = if spec.partitions == -1 {
        shard.config.default_partitions
    } else {
        spec.partitions
    };
    if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
        return Err((
            ResponseError::InvalidPartitions,
            format!("partition count must be 1 to {TOPIC_PARTITIONS_MAX}"),
        ));
    }
    if spec.replication_factor != -1 && spec.replication_factor != 1 {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {} is larger than the 1 available broker",
                spec.replication_factor
            ),
        ));
    }
    let mut configs = spec.configs;
    for (key, value) in &configs {
        topic_config::validate_config(key, value).map_err(|m| (ResponseError::InvalidConfig, m))?;
    }
    topic_config::drop_ignored(&spec.name, &mut configs);
    check_fd_budget(
        shard,
        metadata.partition_count() + partitions as u64,
        &spec.name,
    )?;
    Ok(TopicMeta::new(
        spec.name,
        random_uuid(),
        partitions,
        configs,
    ))
}

/// Refuses a change that would leave `partitions_total` partitions, more than the descriptor
/// budget holds: each open partition holds a descriptor, and a partition that cannot open
/// would be reported as created while every request for it fails.
fn check_fd_budget(shard: &Shard, partitions_total: u64, topic: &str) -> Result<(), Refusal> {
    shard
        .fd_budget
        .check_partitions(partitions_total)
        .map_err(|m| {
            (
                ResponseError::PolicyViolation,
                format!("topic {topic}: {m}"),
            )
        })
}

/// Deletes topics by name (from any shard); returns each deleted topic's id.
pub async fn delete_topics(
    shard: &Rc<Shard>,
    names: Vec<String>,
) -> Vec<Result<uuid::Uuid, Refusal>> {
    match shard
        .call(CONTROLLER_SHARD, Request::DeleteTopics { names })
        .await
    {
        Reply::DeleteTopics(results) => results,
        other => other.mismatch("DeleteTopics"),
    }
}

pub(crate) async fn delete_topics_here(
    shard: &Rc<Shard>,
    names: Vec<String>,
) -> Vec<Result<uuid::Uuid, Refusal>> {
    let _change = controller(shard)
        .changes
        .acquire_permit(1)
        .await
        .expect("controller semaphore is never closed");
    let mut next = (*shard.metadata()).clone();
    let results: Vec<Result<uuid::Uuid, Refusal>> = names
        .iter()
        .map(|name| match next.topics.remove(name) {
            Some(meta) if meta.name == crate::groups::store::OFFSETS_TOPIC => {
                next.topics.insert(meta.name.clone(), meta);
                Err((
                    ResponseError::InvalidTopicException,
                    format!("{name} is internal and cannot be deleted"),
                ))
            }
            Some(meta) => Ok(meta.id),
            None => Err((
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            )),
        })
        .collect();
    publish_results(shard, next, results, false).await
}

/// Grows topics to new partition counts (from any shard).
pub async fn create_partitions(
    shard: &Rc<Shard>,
    requests: Vec<(String, i32)>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    let request = Request::CreatePartitions {
        requests,
        validate_only,
    };
    match shard.call(CONTROLLER_SHARD, request).await {
        Reply::CreatePartitions(results) => results,
        other => other.mismatch("CreatePartitions"),
    }
}

pub(crate) async fn create_partitions_here(
    shard: &Rc<Shard>,
    requests: Vec<(String, i32)>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    let _change = controller(shard)
        .changes
        .acquire_permit(1)
        .await
        .expect("controller semaphore is never closed");
    let before = shard.metadata();
    let mut next = (*before).clone();
    let mut results = Vec::with_capacity(requests.len());
    let names: Vec<String> = requests.iter().map(|(name, _)| name.clone()).collect();
    for (name, count) in requests {
        let partitions_total = next.partition_count();
        let result = match next.topics.get_mut(&name) {
            None => Err((
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            )),
            Some(meta) if count <= meta.partitions => Err((
                ResponseError::InvalidPartitions,
                format!(
                    "topic {name} has {} partitions; the new count must be larger",
                    meta.partitions
                ),
            )),
            Some(_) if count > TOPIC_PARTITIONS_MAX => Err((
                ResponseError::InvalidPartitions,
                format!("partition count must be at most {TOPIC_PARTITIONS_MAX}"),
            )),
            Some(meta) => {
                let total = partitions_total - meta.partitions as u64 + count as u64;
                check_fd_budget(shard, total, &name).map(|()| meta.partitions = count)
            }
        };
        results.push(result);
    }
    let (results, failures) =
        publish_results_and_failures(shard, next, results, validate_only).await;
    take_back_unopened(shard, &before, &names, results, failures).await
}

/// Publishes `next` if any result succeeded and this is not a dry run; when publishing fails,
/// every result becomes that failure.
async fn publish_results<T>(
    shard: &Rc<Shard>,
    next: MetadataSnapshot,
    results: Vec<Result<T, Refusal>>,
    validate_only: bool,
) -> Vec<Result<T, Refusal>> {
    publish_results_and_failures(shard, next, results, validate_only)
        .await
        .0
}

/// [`publish_results`], also returning the partitions that failed to open, as (topic, error).
async fn publish_results_and_failures<T>(
    shard: &Rc<Shard>,
    next: MetadataSnapshot,
    results: Vec<Result<T, Refusal>>,
    validate_only: bool,
) -> (Vec<Result<T, Refusal>>, Vec<(String, String)>) {
    if validate_only || !results.iter().any(Result::is_ok) {
        return (results, Vec::new());
    }
    match publish(shard, next).await {
        Ok(failures) => (results, failures),
        Err(e) => {
            let refusal = storage_refusal(&e);
            (
                results.into_iter().map(|_| Err(refusal.clone())).collect(),
                Vec::new(),
            )
        }
    }
}

/// Persists `next` as the new metadata and applies it on every shard; returns the partitions
/// that failed to open, as (topic, error).
async fn publish(
    shard: &Rc<Shard>,
    mut next: MetadataSnapshot,
) -> std::io::Result<Vec<(String, String)>> {
    next.version = shard.metadata().version + 1;
    next.persist(&shard.config.data_dir)?;
    let snapshot = Arc::new(next);
    let mut failures = Vec::new();
    for target in 0..shard.count {
        let snapshot = snapshot.clone();
        // Boxed: publishing runs inside a controller request, so the call nests in itself.
        let applied: std::pin::Pin<Box<dyn std::future::Future<Output = Reply>>> =
            Box::pin(shard.call(target, Request::ApplyMetadata(snapshot)));
        match applied.await {
            Reply::ApplyMetadata(failed) => failures.extend(failed),
            other => other.mismatch("ApplyMetadata"),
        }
    }
    // A change on a full disk may have used the reserve; a deletion has now freed space.
    crate::data_dir::ensure_reserve(&shard.config.data_dir);
    Ok(failures)
}

/// Takes back the changes of `results` (the result for topic `names[i]` is `results[i]`) whose
/// topic has a partition in `failures` (which failed to open, EMFILE or ENOSPC for example):
/// each such topic is restored to its entry in `before` (removed if it was not there), the
/// partitions it gained are closed on their shards and their directories removed, and its
/// result becomes the error. A topic is reported as created, or grown, only if every new
/// partition opened; it is never left half-created.
async fn take_back_unopened<T>(
    shard: &Rc<Shard>,
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
    let mut next = (*shard.metadata()).clone();
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
    if let Err(e) = publish(shard, next).await {
        // The topics stay listed with partitions that are not open, as after a failed open at
        // start; requests for those get UNKNOWN_TOPIC_OR_PARTITION.
        log::error!("taking back topics whose partitions did not open failed: {e}");
        return results;
    }
    // The owners removed the directories of the partitions that opened; these are the others.
    for (topic, partition) in added {
        let dir = crate::metadata::partition_dir(&shard.config.data_dir, &topic, partition);
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

fn storage_refusal(e: &std::io::Error) -> Refusal {
    log::error!("persisting metadata failed: {e}");
    (
        ResponseError::KafkaStorageError,
        format!("persisting metadata failed: {e}"),
    )
}

/// Creates missing topics with the broker defaults if auto-creation is on; invalid names and
/// topics that appeared meanwhile are left alone (the caller reports them from the metadata).
/// Returns the error of each topic whose creation was refused (beyond the descriptor budget,
/// for example), for the caller to report instead of UNKNOWN_TOPIC_OR_PARTITION.
pub async fn auto_create(shard: &Rc<Shard>, names: Vec<String>) -> AutoCreateRefusals {
    let mut refusals = AutoCreateRefusals::new();
    if !shard.config.auto_create_topics || names.is_empty() {
        return refusals;
    }
    let specs = names
        .into_iter()
        .filter(|name| validate_topic_name(name).is_ok())
        .map(|name| TopicSpec {
            name,
            partitions: -1,
            replication_factor: -1,
            configs: BTreeMap::new(),
        })
        .collect::<Vec<_>>();
    if specs.is_empty() {
        return refusals;
    }
    let names: Vec<String> = specs.iter().map(|spec| spec.name.clone()).collect();
    for (name, result) in names
        .into_iter()
        .zip(create_topics(shard, specs, false).await)
    {
        match result {
            Ok(meta) => log::info!(
                "auto-created topic {} with {} partitions",
                meta.name,
                meta.partitions
            ),
            Err((ResponseError::TopicAlreadyExists, _)) => {}
            Err((error, message)) => {
                // The first failure and then a count: a request may name thousands of topics.
                if refusals.is_empty() {
                    log::warn!("auto-creating a topic failed: {error}: {message}");
                }
                refusals.insert(name, error);
            }
        }
    }
    if refusals.len() > 1 {
        log::warn!("auto-creating {} topics failed", refusals.len());
    }
    refusals
}

/// Topics whose auto-creation was refused, with the error to report for each.
pub type AutoCreateRefusals = std::collections::HashMap<String, ResponseError>;

/// A change to one topic's explicit configs.
#[derive(Debug, Clone)]
pub enum ConfigChange {
    /// AlterConfigs: these become the topic's explicit configs, replacing all others.
    Replace(BTreeMap<String, String>),
    /// IncrementalAlterConfigs: (key, operation, value) with Kafka's operations 0 SET,
    /// 1 DELETE, 2 APPEND, 3 SUBTRACT (the last two for list configs).
    Incremental(Vec<(String, i8, Option<String>)>),
}

/// Changes topic configs (from any shard). Results are in the order of `changes`.
pub async fn alter_topic_configs(
    shard: &Rc<Shard>,
    changes: Vec<(String, ConfigChange)>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    if changes.is_empty() {
        return Vec::new();
    }
    let request = Request::AlterTopicConfigs {
        changes,
        validate_only,
    };
    match shard.call(CONTROLLER_SHARD, request).await {
        Reply::AlterTopicConfigs(results) => results,
        other => other.mismatch("AlterTopicConfigs"),
    }
}

pub(crate) async fn alter_topic_configs_here(
    shard: &Rc<Shard>,
    changes: Vec<(String, ConfigChange)>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    edit_metadata(shard, validate_only, move |next| {
        changes
            .into_iter()
            .map(|(topic, change)| {
                let meta = next.topics.get_mut(&topic).ok_or_else(|| {
                    (
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic {topic} does not exist"),
                    )
                })?;
                let mut configs = changed_configs(meta.configs(), change, &TopicRules)?;
                topic_config::drop_ignored(&topic, &mut configs);
                meta.set_configs(configs);
                Ok(())
            })
            .collect()
    })
    .await
}

/// Which broker configs a BROKER resource names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BrokerTarget {
    /// This broker's own (the resource named by its node id).
    ThisBroker,
    /// The cluster-wide defaults (the resource with an empty name).
    ClusterDefault,
}

/// Changes dynamic broker configs (from any shard), persisted in the metadata like any other
/// change. Results are in the order of `changes`.
pub async fn alter_broker_configs(
    shard: &Rc<Shard>,
    changes: Vec<(BrokerTarget, ConfigChange)>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    if changes.is_empty() {
        return Vec::new();
    }
    let request = Request::AlterBrokerConfigs {
        changes,
        validate_only,
    };
    match shard.call(CONTROLLER_SHARD, request).await {
        Reply::AlterBrokerConfigs(results) => results,
        other => other.mismatch("AlterBrokerConfigs"),
    }
}

pub(crate) async fn alter_broker_configs_here(
    shard: &Rc<Shard>,
    changes: Vec<(BrokerTarget, ConfigChange)>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    edit_metadata(shard, validate_only, move |next| {
        changes
            .into_iter()
            .map(|(target, change)| {
                let per_broker = target == BrokerTarget::ThisBroker;
                let configs = if per_broker {
                    &mut next.broker_configs
                } else {
                    &mut next.broker_default_configs
                };
                *configs = changed_configs(configs, change, &BrokerRules { per_broker })?;
                Ok(())
            })
            .collect()
    })
    .await
}

/// Runs `edit` on a copy of the metadata (on the controller shard, one change at a time) and
/// publishes the copy unless `validate_only` or every result is a refusal.
async fn edit_metadata<F>(
    shard: &Rc<Shard>,
    validate_only: bool,
    edit: F,
) -> Vec<Result<(), Refusal>>
where
    F: FnOnce(&mut MetadataSnapshot) -> Vec<Result<(), Refusal>>,
{
    let _change = controller(shard)
        .changes
        .acquire_permit(1)
        .await
        .expect("controller semaphore is never closed");
    let mut next = (*shard.metadata()).clone();
    let results = edit(&mut next);
    publish_results(shard, next, results, validate_only).await
}

/// How the entries of one kind of resource are checked.
trait ConfigRules {
    /// Checks one entry; the refusal carries the error code Kafka gives.
    fn validate(&self, key: &str, value: &str) -> Result<(), Refusal>;
    /// The default of a list config (APPEND and SUBTRACT apply), `None` for other configs.
    fn list_default(&self, key: &str) -> Option<&'static str>;
}

struct TopicRules;

impl ConfigRules for TopicRules {
    fn validate(&self, key: &str, value: &str) -> Result<(), Refusal> {
        topic_config::validate_config(key, value).map_err(|m| (ResponseError::InvalidConfig, m))
    }

    fn list_default(&self, key: &str) -> Option<&'static str> {
        topic_config::is_list(key).then(|| topic_config::config_default(key).unwrap_or(""))
    }
}

/// Broker configs, per broker or cluster-wide. Kafka refuses a broker config it cannot apply
/// with INVALID_REQUEST (KAFKA-13609), not INVALID_CONFIG.
struct BrokerRules {
    per_broker: bool,
}

impl ConfigRules for BrokerRules {
    fn validate(&self, key: &str, value: &str) -> Result<(), Refusal> {
        broker_config::validate_config(key, value, self.per_broker)
            .map_err(|m| (ResponseError::InvalidRequest, m))
    }

    fn list_default(&self, key: &str) -> Option<&'static str> {
        broker_config::list_default(key)
    }
}

/// The explicit configs after `change`, every entry validated.
fn changed_configs(
    current: &BTreeMap<String, String>,
    change: ConfigChange,
    rules: &dyn ConfigRules,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut configs = match &change {
        ConfigChange::Replace(_) => BTreeMap::new(),
        ConfigChange::Incremental(_) => current.clone(),
    };
    match change {
        ConfigChange::Replace(all) => configs = all,
        ConfigChange::Incremental(ops) => {
            for (key, op, value) in ops {
                apply_config_op(&mut configs, key, op, value, rules)?;
            }
        }
    }
    for (key, value) in &configs {
        rules.validate(key, value)?;
    }
    Ok(configs)
}

fn apply_config_op(
    configs: &mut BTreeMap<String, String>,
    key: String,
    op: i8,
    value: Option<String>,
    rules: &dyn ConfigRules,
) -> Result<(), Refusal> {
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    const APPEND: i8 = 2;
    const SUBTRACT: i8 = 3;
    let invalid = |m: String| (ResponseError::InvalidConfig, m);
    match op {
        SET => {
            let value = value.ok_or_else(|| invalid(format!("SET of {key} needs a value")))?;
            configs.insert(key, value);
        }
        DELETE => {
            configs.remove(&key);
        }
        APPEND | SUBTRACT if rules.list_default(&key).is_some() => {
            let value = value.ok_or_else(|| invalid(format!("{key} needs a value")))?;
            let default = rules.list_default(&key).unwrap_or_default();
            let current = configs
                .get(&key)
                .map_or(default, String::as_str)
                .to_string();
            let mut items: Vec<String> = topic_config::list_items(&current)
                .map(str::to_string)
                .collect();
            for item in topic_config::list_items(&value) {
                if op == APPEND && !items.iter().any(|i| i == item) {
                    items.push(item.to_string());
                } else if op == SUBTRACT {
                    items.retain(|i| i != item);
                }
            }
            configs.insert(key, items.join(","));
        }
        APPEND | SUBTRACT => return Err(invalid(format!("{key} is not a list config"))),
        _ => {
            return Err((
                ResponseError::InvalidRequest,
                format!("unknown config operation {op}"),
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn incremental_config_operations() {
        let current = configs(&[("retention.ms", "1000"), ("segment.bytes", "4096")]);
        let change = ConfigChange::Incremental(vec![
            ("retention.ms".into(), 0, Some("5000".into())),
            ("segment.bytes".into(), 1, None),
            ("cleanup.policy".into(), 2, Some("compact".into())),
        ]);
        assert_eq!(
            changed_configs(&current, change, &TopicRules).unwrap(),
            configs(&[
                ("cleanup.policy", "delete,compact"),
                ("retention.ms", "5000")
            ])
        );
        let bad = ConfigChange::Incremental(vec![("retention.ms".into(), 0, Some("soon".into()))]);
        assert_eq!(
            changed_configs(&current, bad, &TopicRules).unwrap_err().0,
            ResponseError::InvalidConfig
        );
        let not_a_list =
            ConfigChange::Incremental(vec![("retention.ms".into(), 2, Some("1".into()))]);
        assert_eq!(
            changed_configs(&current, not_a_list, &TopicRules)
                .unwrap_err()
                .0,
            ResponseError::InvalidConfig
        );
    }

    #[test]
    fn replace_drops_configs_not_named() {
        let current = configs(&[("retention.ms", "1000")]);
        let change = ConfigChange::Replace(configs(&[("segment.bytes", "2097152")]));
        assert_eq!(
            changed_configs(&current, change, &TopicRules).unwrap(),
            configs(&[("segment.bytes", "2097152")])
        );
    }
}
