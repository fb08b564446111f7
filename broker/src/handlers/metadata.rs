//! Metadata: brokers, controller and topics with their partitions.
//!
//! Versions 0–12 (topic ids from v10). Lists every live broker (id, advertised host and port,
//! rack) and, per partition, its leader (-1 with LEADER_NOT_AVAILABLE when it has none), leader
//! epoch, replicas, ISR and offline (fenced or unregistered) replicas, all from the snapshot.
//! Clients such as KafkaJS send some requests to the controller. Authorised operations (v8+)
//! are reported when asked for: every operation, as there is no authoriser.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{authorized_operations, RequestContext};
use crate::cluster::metadata::{MetadataSnapshot, PartitionAssignment, TopicMeta, NO_LEADER};
use crate::shard::admin;
use crate::topic_name::validate_topic_name;

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 12;
/// Metadata v11 dropped the cluster's authorised operations (DescribeCluster reports them).
const CLUSTER_OPERATIONS_VERSION_MAX: i16 = 10;

pub async fn handle(ctx: &RequestContext, request: MetadataRequest) -> MetadataResponse {
    let served = || served_snapshot(&ctx.shard);
    let mut snapshot = served();
    // v0 asks for every topic with an empty list; later versions with null.
    let every_topic = request.topics.is_none()
        || (ctx.version == 0 && request.topics.as_ref().is_some_and(Vec::is_empty));
    let topics: Vec<MetadataResponseTopic> = if every_topic {
        snapshot
            .topics
            .values()
            .map(|meta| topic_entry(&snapshot, meta))
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
            snapshot = served();
        }
        requested
            .iter()
            .map(|r| requested_entry(&snapshot, r, &refusals))
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
        .with_brokers(brokers(&snapshot))
        .with_cluster_id(Some(StrBytes::from_string(snapshot.cluster_id.clone())))
        .with_controller_id(BrokerId(ctx.shard.controller_id()))
        .with_topics(topics)
}

/// The snapshot Metadata answers from. A broker cut off from its metadata quorum (see
/// `tasks/cut_off.rs`) has been or will be fenced and another broker elected: its answer names
/// it neither leader (-1, LEADER_NOT_AVAILABLE) nor broker, so that librdkafka (which drops the
/// brokers a Metadata answer leaves out, closing their connections) and kafka-python (which
/// keeps the listed brokers) ask another broker where the leaders are.
/// FindCoordinator answers from it too, so a cut-off broker never names itself coordinator.
pub(super) fn served_snapshot(shard: &crate::shard::Shard) -> Arc<MetadataSnapshot> {
    let snapshot = shard.metadata();
    if !shard.cut_off.get() {
        return snapshot;
    }
    Arc::new(as_cut_off(&snapshot, shard.config.node_id))
}

/// `snapshot` as a cut-off broker `node_id` presents it: fenced, leading nothing.
fn as_cut_off(snapshot: &MetadataSnapshot, node_id: i32) -> MetadataSnapshot {
    let mut view = snapshot.clone();
    if let Some(broker) = view.brokers.get_mut(&node_id) {
        broker.fenced = true;
    }
    for meta in view.topics.values_mut() {
        for index in 0..meta.partitions {
            let assignment = meta.assignment_mut(index).expect("partitions < count");
            if assignment.leader == node_id {
                assignment.leader = NO_LEADER;
            }
        }
    }
    view
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
) -> MetadataResponseTopic {
    match requested {
        Requested::Name(name) => match snapshot.topics.get(name) {
            Some(meta) => topic_entry(snapshot, meta),
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

/// Every live broker, by id.
fn brokers(snapshot: &MetadataSnapshot) -> Vec<MetadataResponseBroker> {
    (snapshot.live_brokers())
        .map(|broker| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(broker.id))
                .with_host(StrBytes::from_string(broker.host.clone()))
                .with_port(i32::from(broker.port))
                .with_rack(broker.rack.clone().map(StrBytes::from_string))
        })
        .collect()
}

fn topic_entry(snapshot: &MetadataSnapshot, meta: &TopicMeta) -> MetadataResponseTopic {
    let partitions = (0..meta.partitions)
        .zip(meta.assignments())
        .map(|(index, assignment)| partition_entry(snapshot, index, assignment))
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(meta.name.clone()))))
        .with_topic_id(meta.id)
        .with_is_internal(meta.name == crate::groups::store::OFFSETS_TOPIC)
        .with_partitions(partitions)
}

fn partition_entry(
    snapshot: &MetadataSnapshot,
    index: i32,
    assignment: &PartitionAssignment,
) -> MetadataResponsePartition {
    let ids = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let offline: Vec<i32> = (assignment.replicas.iter().copied())
        .filter(|id| !snapshot.is_live(*id))
        .collect();
    let error_code = match assignment.leader() {
        Some(_) => 0,
        None => ResponseError::LeaderNotAvailable.code(),
    };
    MetadataResponsePartition::default()
        .with_error_code(error_code)
        .with_partition_index(index)
        .with_leader_id(BrokerId(assignment.leader))
        .with_leader_epoch(assignment.leader_epoch)
        .with_replica_nodes(ids(&assignment.replicas))
        .with_isr_nodes(ids(&assignment.isr))
        .with_offline_replicas(ids(&offline))
}
