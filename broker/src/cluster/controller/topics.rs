//! Topic changes: CreateTopics, DeleteTopics and CreatePartitions.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use super::{Controller, MetadataPublisher, OpenFailures, Refusal};
use crate::cluster::metadata::{
    random_uuid, MetadataSnapshot, TopicMeta, OFFSETS_TOPIC, TOPIC_PARTITIONS_MAX,
};
use crate::cluster::placement;
use crate::cluster::topic_config;

/// Replication factor of a topic created without one.
const DEFAULT_REPLICATION_FACTOR: i16 = 1;
use crate::topic_name::validate_topic_name;

/// A topic to create, as asked by CreateTopics, the CLI or auto-creation.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TopicSpec {
    pub name: String,
    /// -1 asks for the broker default.
    pub partitions: i32,
    /// -1 asks for the broker default.
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

impl Controller {
    /// Creates topics. Results are in the order of `specs`; a topic whose partitions do not
    /// all open is taken back and reported as failed.
    pub async fn create_topics(
        &self,
        shards: &impl MetadataPublisher,
        specs: Vec<TopicSpec>,
        validate_only: bool,
    ) -> Vec<Result<TopicMeta, Refusal>> {
        let edit = |next: &mut MetadataSnapshot| {
            let mut results = Vec::with_capacity(specs.len());
            for spec in specs {
                let name = spec.name.clone();
                let result = self.check_new_topic(next, spec);
                if let Ok(meta) = &result {
                    next.topics.insert(meta.name.clone(), meta.clone());
                }
                results.push((name, result));
            }
            results
        };
        self.change(shards, validate_only, OpenFailures::TakeBack, edit)
            .await
    }

    fn check_new_topic(
        &self,
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
            self.config.default_partitions
        } else {
            spec.partitions
        };
        if !(1..=TOPIC_PARTITIONS_MAX).contains(&partitions) {
            return Err((
                ResponseError::InvalidPartitions,
                format!("partition count must be 1 to {TOPIC_PARTITIONS_MAX}"),
            ));
        }
        let replication_factor = if spec.replication_factor == -1 {
            DEFAULT_REPLICATION_FACTOR
        } else {
            spec.replication_factor
        };
        let id = random_uuid();
        let live = placement::live_candidates(metadata);
        let assignments = placement::new_topic(&live, partitions, replication_factor, id)?;
        let mut configs = spec.configs;
        for (key, value) in &configs {
            topic_config::validate_config(key, value)
                .map_err(|m| (ResponseError::InvalidConfig, m))?;
        }
        topic_config::drop_ignored(&spec.name, &mut configs);
        let partitions_total = metadata.partition_count() + partitions as u64;
        self.check_fd_budget(partitions_total, &spec.name)?;
        Ok(TopicMeta::new(spec.name, id, assignments, configs))
    }

    /// Refuses a change that would leave `partitions_total` partitions, more than the descriptor
    /// budget holds: each open partition holds a descriptor, and a partition that cannot open
    /// would be reported as created while every request for it fails.
    fn check_fd_budget(&self, partitions_total: u64, topic: &str) -> Result<(), Refusal> {
        (self.config.fd_budget)
            .check_partitions(partitions_total)
            .map_err(|m| {
                (
                    ResponseError::PolicyViolation,
                    format!("topic {topic}: {m}"),
                )
            })
    }

    /// Deletes topics by name; returns each deleted topic's id.
    pub async fn delete_topics(
        &self,
        shards: &impl MetadataPublisher,
        names: Vec<String>,
    ) -> Vec<Result<uuid::Uuid, Refusal>> {
        let edit = |next: &mut MetadataSnapshot| {
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
                        Some(meta) => Ok(meta.id),
                        None => Err((
                            ResponseError::UnknownTopicOrPartition,
                            format!("topic {name} does not exist"),
                        )),
                    };
                    (name, result)
                })
                .collect()
        };
        self.change(shards, false, OpenFailures::Keep, edit).await
    }

    /// Grows topics to new partition counts, given as (topic, new count). A topic whose new
    /// partitions do not all open keeps its old count and is reported as failed.
    pub async fn create_partitions(
        &self,
        shards: &impl MetadataPublisher,
        requests: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Vec<Result<(), Refusal>> {
        let edit = |next: &mut MetadataSnapshot| {
            (requests.into_iter())
                .map(|(name, count)| {
                    let result = self.grow_topic(next, &name, count);
                    (name, result)
                })
                .collect()
        };
        self.change(shards, validate_only, OpenFailures::TakeBack, edit)
            .await
    }

    fn grow_topic(
        &self,
        next: &mut MetadataSnapshot,
        name: &str,
        count: i32,
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
                self.check_fd_budget(total, name)?;
                let added = placement::grow(&live, meta.assignments(), count)?;
                meta.add_partitions(added);
                Ok(())
            }
        }
    }
}
