//! CreateTopics. Versions 2–7.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::cluster::controller::{Refusal, TopicSpec};
use crate::cluster::metadata::TopicMeta;
use crate::cluster::topic_config::TOPIC_CONFIGS;
use crate::shard::admin;

pub const VERSION_MIN: i16 = 2;
pub const VERSION_MAX: i16 = 7;

/// Kafka's DYNAMIC_TOPIC_CONFIG and DEFAULT_CONFIG config sources.
pub const CONFIG_SOURCE_TOPIC: i8 = 1;
pub const CONFIG_SOURCE_DEFAULT: i8 = 5;

pub async fn handle(ctx: &RequestContext, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicated: HashSet<String> = request
        .topics
        .iter()
        .map(|t| t.name.0.to_string())
        .filter(|name| !seen.insert(name.clone()))
        .collect();
    let mut results: Vec<Option<Result<TopicMeta, Refusal>>> =
        Vec::with_capacity(request.topics.len());
    let mut specs = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        if duplicated.contains(&name) {
            results.push(Some(Err((
                ResponseError::InvalidRequest,
                format!("topic {name} is listed twice"),
            ))));
            continue;
        }
        match spec(topic) {
            Ok(spec) => {
                specs.push(spec);
                results.push(None);
            }
            Err(refusal) => results.push(Some(Err(refusal))),
        }
    }
    let mut created = admin::create_topics(&ctx.shard, specs, request.validate_only)
        .await
        .into_iter();
    let topics = request
        .topics
        .iter()
        .zip(results)
        .map(|(topic, result)| {
            let result = result.unwrap_or_else(|| created.next().expect("one result per spec"));
            topic_result(topic, result)
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}

fn spec(topic: &CreatableTopic) -> Result<TopicSpec, Refusal> {
    let mut partitions = topic.num_partitions;
    let mut replication_factor = topic.replication_factor;
    let mut replica_assignments = Vec::new();
    if !topic.assignments.is_empty() {
        if partitions != -1 || replication_factor != -1 {
            return Err((
                ResponseError::InvalidRequest,
                "assignments exclude partition and replica counts".into(),
            ));
        }
        replica_assignments = replica_lists(topic)?;
        partitions = replica_assignments.len() as i32;
        replication_factor = i16::try_from(replica_assignments[0].len()).unwrap_or(i16::MAX);
    }
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        if let Some(value) = &config.value {
            configs.insert(config.name.to_string(), value.to_string());
        }
    }
    Ok(TopicSpec {
        name: topic.name.0.to_string(),
        partitions,
        replication_factor,
        configs,
        replica_assignments,
    })
}

/// The replica lists of a CreateTopics entry, in partition order; the partitions must be
/// 0..n, each once (the controller checks the brokers).
fn replica_lists(topic: &CreatableTopic) -> Result<Vec<Vec<i32>>, Refusal> {
    let mut lists: Vec<Option<Vec<i32>>> = vec![None; topic.assignments.len()];
    for assignment in &topic.assignments {
        let slot = usize::try_from(assignment.partition_index)
            .ok()
            .and_then(|index| lists.get_mut(index))
            .filter(|slot| slot.is_none());
        let Some(slot) = slot else {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                "assignments must name partitions 0 to n-1, each once".into(),
            ));
        };
        *slot = Some(assignment.broker_ids.iter().map(|id| id.0).collect());
    }
    Ok(lists
        .into_iter()
        .map(|list| list.expect("every slot filled"))
        .collect())
}

fn topic_result(
    topic: &CreatableTopic,
    result: Result<TopicMeta, Refusal>,
) -> CreatableTopicResult {
    let entry = CreatableTopicResult::default().with_name(topic.name.clone());
    match result {
        Ok(meta) => {
            let configs = TOPIC_CONFIGS
                .iter()
                .map(|config| {
                    let key = config.name;
                    let explicit = meta.configs().contains_key(key);
                    CreatableTopicConfigs::default()
                        .with_name(StrBytes::from_static_str(key))
                        .with_value(
                            meta.config_text(key)
                                .map(|v| StrBytes::from_string(v.to_string())),
                        )
                        .with_config_source(if explicit {
                            CONFIG_SOURCE_TOPIC
                        } else {
                            CONFIG_SOURCE_DEFAULT
                        })
                })
                .collect();
            let replication_factor =
                (meta.assignments().first()).map_or(0, |assignment| assignment.replicas.len());
            entry
                .with_topic_id(meta.id)
                .with_num_partitions(meta.partitions)
                .with_replication_factor(i16::try_from(replication_factor).unwrap_or(i16::MAX))
                .with_configs(Some(configs))
        }
        Err((error, message)) => entry
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)))
            .with_num_partitions(-1)
            .with_replication_factor(-1),
    }
}
