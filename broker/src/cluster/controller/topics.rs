//! The edits of topic commands: CreateTopics, DeleteTopics and CreatePartitions, and the
//! take-back of topics whose new partitions failed to open; each deterministic (see
//! `command.rs`).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use super::{Applied, ItemResults, Refusal};
use crate::cluster::metadata::{MetadataSnapshot, TopicMeta, OFFSETS_TOPIC, TOPIC_PARTITIONS_MAX};
use crate::cluster::{placement, topic_config};
use crate::fd_budget::FdBudget;
use crate::topic_name::validate_topic_name;

/// A topic to create, as asked by CreateTopics, the CLI or auto-creation.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TopicSpec {
    pub name: String,
    /// -1 asks for the broker default.
    pub partitions: i32,
    /// -1 asks for the broker default (`--default-replication-factor`).
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

/// A topic to create as the command carries it: the defaults resolved and the id chosen by the
/// proposer, so that every node creates the same topic.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct NewTopic {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

/// A topic to restore: if the topic `name` still has id `id`, it becomes `restore` (removed
/// when `None`).
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TakeBack {
    pub name: String,
    pub id: uuid::Uuid,
    pub restore: Option<TopicMeta>,
}

pub(super) fn apply_create(
    next: &mut MetadataSnapshot,
    topics: Vec<NewTopic>,
    fd_budget: &FdBudget,
) -> ItemResults {
    let mut results = Vec::with_capacity(topics.len());
    for topic in topics {
        let name = topic.name.clone();
        let result = check_new_topic(next, topic, fd_budget);
        if let Ok(meta) = &result {
            next.topics.insert(meta.name.clone(), meta.clone());
        }
        results.push((name, result.map(Applied::Topic)));
    }
    results
}

fn check_new_topic(
    metadata: &MetadataSnapshot,
    topic: NewTopic,
    fd_budget: &FdBudget,
) -> Result<TopicMeta, Refusal> {
    validate_topic_name(&topic.name).map_err(|m| (ResponseError::InvalidTopicException, m))?;
    if metadata.topics.contains_key(&topic.name) {
        return Err((
            ResponseError::TopicAlreadyExists,
            format!("topic {} already exists", topic.name),
        ));
    }
    if !(1..=TOPIC_PARTITIONS_MAX).contains(&topic.partitions) {
        return Err((
            ResponseError::InvalidPartitions,
            format!("partition count must be 1 to {TOPIC_PARTITIONS_MAX}"),
        ));
    }
    let live = placement::live_candidates(metadata);
    let assignments =
        placement::new_topic(&live, topic.partitions, topic.replication_factor, topic.id)?;
    let mut configs = topic.configs;
    for (key, value) in &configs {
        topic_config::validate_config(key, value).map_err(|m| (ResponseError::InvalidConfig, m))?;
    }
    topic_config::drop_ignored(&topic.name, &mut configs);
    let partitions_total = metadata.partition_count() + topic.partitions as u64;
    check_fd_budget(fd_budget, partitions_total, &topic.name)?;
    Ok(TopicMeta::new(topic.name, topic.id, assignments, configs))
}

/// Refuses a change that would leave `partitions_total` partitions, more than the descriptor
/// budget holds: each open partition holds a descriptor, and a partition that cannot open
/// would be reported as created while every request for it fails.
fn check_fd_budget(
    fd_budget: &FdBudget,
    partitions_total: u64,
    topic: &str,
) -> Result<(), Refusal> {
    fd_budget.check_partitions(partitions_total).map_err(|m| {
        (
            ResponseError::PolicyViolation,
            format!("topic {topic}: {m}"),
        )
    })
}

pub(super) fn apply_delete(next: &mut MetadataSnapshot, names: Vec<String>) -> ItemResults {
    (names.into_iter())
        .map(|name| {
            let result = match next.topics.remove(&name) {
                Some(meta) if meta.name == OFFSETS_TOPIC => {
                    next.topics.insert(meta.name.clone(), meta);
                    Err((
                        ResponseError::InvalidTopicException,
                        format!("{name} is internal and cannot be deleted"),
                    ))
                }
                Some(meta) => Ok(Applied::TopicId(meta.id)),
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name} does not exist"),
                )),
            };
            (name, result)
        })
        .collect()
}

pub(super) fn apply_grow(
    next: &mut MetadataSnapshot,
    requests: Vec<(String, i32)>,
    fd_budget: &FdBudget,
) -> ItemResults {
    (requests.into_iter())
        .map(|(name, count)| {
            let result = grow_topic(next, &name, count, fd_budget).map(|()| Applied::Done);
            (name, result)
        })
        .collect()
}

fn grow_topic(
    next: &mut MetadataSnapshot,
    name: &str,
    count: i32,
    fd_budget: &FdBudget,
) -> Result<(), Refusal> {
    let partitions_total = next.partition_count();
    let live = placement::live_candidates(next);
    match next.topics.get_mut(name) {
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
            check_fd_budget(fd_budget, total, name)?;
            let added = placement::grow(&live, meta.assignments(), count)?;
            meta.add_partitions(added);
            Ok(())
        }
    }
}

pub(super) fn apply_take_back(next: &mut MetadataSnapshot, topics: Vec<TakeBack>) -> ItemResults {
    (topics.into_iter())
        .map(|take_back| {
            let current = next.topics.get(&take_back.name);
            let result = if current.is_some_and(|meta| meta.id == take_back.id) {
                match take_back.restore {
                    Some(meta) => next.topics.insert(take_back.name.clone(), meta),
                    None => next.topics.remove(&take_back.name),
                };
                Ok(Applied::Done)
            } else {
                Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {} changed meanwhile", take_back.name),
                ))
            };
            (take_back.name, result)
        })
        .collect()
}
