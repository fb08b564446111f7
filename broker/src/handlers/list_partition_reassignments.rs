//! ListPartitionReassignments (KIP-455): the reassignments in progress, from this broker's
//! metadata snapshot (every broker holds the replicated metadata). Version 0.

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::cluster::controller::reassign;

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 0;

pub async fn handle(
    ctx: &RequestContext,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let snapshot = ctx.shard.metadata();
    // Kafka lists only the asked partitions that are being reassigned; unknown ones are left out.
    let asked = |topic: &str, partition: i32| match &request.topics {
        None => true,
        Some(topics) => (topics.iter())
            .any(|t| t.name.0.as_str() == topic && t.partition_indexes.contains(&partition)),
    };
    let ids = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
    for (topic, partition, assignment) in reassign::in_progress(&snapshot) {
        if !asked(topic, partition) {
            continue;
        }
        let ongoing = OngoingPartitionReassignment::default()
            .with_partition_index(partition)
            .with_replicas(ids(&assignment.replicas))
            .with_adding_replicas(ids(&assignment.adding))
            .with_removing_replicas(ids(&assignment.removing));
        match topics.last_mut().filter(|t| t.name.0.as_str() == topic) {
            Some(last) => last.partitions.push(ongoing),
            None => topics.push(
                OngoingTopicReassignment::default()
                    .with_name(StrBytes::from_string(topic.to_string()).into())
                    .with_partitions(vec![ongoing]),
            ),
        }
    }
    ListPartitionReassignmentsResponse::default().with_topics(topics)
}
