//! Metadata: brokers, controller and topics with their partitions.
//!
//! Versions 0–12 (topic ids from v10). There is one broker, so it leads every partition and is
//! the controller (clients such as KafkaJS send some requests to the controller). Authorised
//! operations (v8+) are reported when asked for: every operation, as there is no authoriser.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{authorized_operations, RequestContext};
use crate::cluster::metadata::{MetadataSnapshot, TopicMeta, SINGLE_NODE_LEADER_EPOCH};
use crate::shard::admin;
use crate::topic_name::validate_topic_name;

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 12;
/// Metadata v11 dropped the cluster's authorised operations (DescribeCluster reports them).
const CLUSTER_OPERATIONS_VERSION_MAX: i16 = 10;

pub async fn handle(ctx: &RequestContext, request: MetadataRequest) -> MetadataResponse {
    let node = BrokerId(ctx.shard.config.node_id);
    let mut snapshot = ctx.shard.metadata();
    // v0 asks for every topic with an empty list; later versions with null.
    let every_topic = request.topics.is_none()
        || (ctx.version == 0 && request.topics.as_ref().is_some_and(Vec::is_empty));
    let topics: Vec<MetadataResponseTopic> = if every_topic {
        snapshot
            .topics
            .values()
            .map(|meta| topic_entry(meta, node))
            .collect()
    } else {
        let requested: Vec<Requested> = request
            .topics
            .unwrap_or_default()
            .into_iter()
            .map(|t| resolve(&snapshot, t.name, t.topic_id))
            .collect();
        let allow_auto_create = ctx.version < 4 || request.allow_auto_topic_creation;
        let missing: Vec<String> = requested
            .iter()
            .filter_map(|r| match r {
                Requested::Name(name) if !snapshot.topics.contains_key(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        let mut refusals = admin::AutoCreateRefusals::new();
        if allow_auto_create && !missing.is_empty() {
            refusals = admin::auto_create(&ctx.shard, missing).await;
            snapshot = ctx.shard.metadata();
        }
        requested
            .iter()
            .map(|r| requested_entry(&snapshot, r, &refusals, node))
            .collect()
    };
    let cluster_operations = authorized_operations::if_requested(
        ctx.version <= CLUSTER_OPERATIONS_VERSION_MAX
            && request.include_cluster_authorized_operations,
        authorized_operations::CLUSTER,
    );
    let topic_operations = authorized_operations::if_requested(
        request.include_topic_authorized_operations,
        authorized_operations::TOPIC,
    );
    let topics = topics
        .into_iter()
        .map(|topic| with_topic_operations(topic, topic_operations))
        .collect();
    MetadataResponse::default()
        .with_cluster_authorized_operations(cluster_operations)
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node)
            .with_host(StrBytes::from_string(ctx.shard.config.advertised_host()))
            .with_port(i32::from(ctx.shard.config.listen.port()))])
        .with_cluster_id(Some(StrBytes::from_string(snapshot.cluster_id.clone())))
        .with_controller_id(node)
        .with_topics(topics)
}

/// A found topic's authorised operations; a topic with an error reports none (Kafka leaves them
/// out for topics it does not describe).
fn with_topic_operations(topic: MetadataResponseTopic, operations: i32) -> MetadataResponseTopic {
    if topic.error_code != 0 {
        return topic;
    }
    topic.with_topic_authorized_operations(operations)
}

enum Requested {
    Name(String),
    UnknownId(uuid::Uuid),
}

fn resolve(snapshot: &MetadataSnapshot, name: Option<TopicName>, id: uuid::Uuid) -> Requested {
    match name {
        Some(name) => Requested::Name(name.0.to_string()),
        None => match snapshot.topics.values().find(|meta| meta.id == id) {
            Some(meta) => Requested::Name(meta.name.clone()),
            None => Requested::UnknownId(id),
        },
    }
}

/// The entry of one requested topic; a topic that is still missing gets the error its
/// auto-creation was refused with, if it was.
fn requested_entry(
    snapshot: &MetadataSnapshot,
    requested: &Requested,
    refusals: &admin::AutoCreateRefusals,
    node: BrokerId,
) -> MetadataResponseTopic {
    match requested {
        Requested::Name(name) => match snapshot.topics.get(name) {
            Some(meta) => topic_entry(meta, node),
            None => {
                let error = if validate_topic_name(name).is_err() {
                    ResponseError::InvalidTopicException
                } else {
                    let refusal = refusals.get(name).cloned();
                    refusal.unwrap_or(ResponseError::UnknownTopicOrPartition)
                };
                MetadataResponseTopic::default()
                    .with_error_code(error.code())
                    .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
            }
        },
        Requested::UnknownId(id) => MetadataResponseTopic::default()
            .with_error_code(ResponseError::UnknownTopicId.code())
            .with_topic_id(*id),
    }
}

fn topic_entry(meta: &TopicMeta, node: BrokerId) -> MetadataResponseTopic {
    let partitions = (0..meta.partitions)
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(node)
                .with_leader_epoch(SINGLE_NODE_LEADER_EPOCH)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(meta.name.clone()))))
        .with_topic_id(meta.id)
        .with_is_internal(meta.name == crate::groups::store::OFFSETS_TOPIC)
        .with_partitions(partitions)
}
