//! AlterPartitionReassignments (KIP-455): starts, or with a null replica list cancels, the
//! reassignment of partitions, run by the controller as one metadata change
//! (`cluster::controller::reassign`). Version 0 (v1 only adds
//! `allow_replication_factor_change`, which Sluice would have to refuse to honour).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::cluster::controller::reassign::ReassignmentRequest;
use crate::shard::admin;

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 0;

/// Partitions one request may name at most: the command stays small.
pub const PARTITIONS_MAX: usize = 10_000;

pub async fn handle(
    ctx: &RequestContext,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let requests: Vec<ReassignmentRequest> = (request.topics.iter())
        .flat_map(|topic| {
            (topic.partitions.iter()).map(|partition| ReassignmentRequest {
                topic: topic.name.0.to_string(),
                partition: partition.partition_index,
                replicas: (partition.replicas.as_ref())
                    .map(|replicas| replicas.iter().map(|id| id.0).collect()),
            })
        })
        .collect();
    if requests.len() > PARTITIONS_MAX {
        return AlterPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code())
            .with_error_message(Some(StrBytes::from_string(format!(
                "at most {PARTITIONS_MAX} partitions per request"
            ))));
    }
    let named: Vec<(String, i32)> = (requests.iter())
        .map(|r| (r.topic.clone(), r.partition))
        .collect();
    let results = if requests.is_empty() {
        Vec::new()
    } else {
        admin::alter_reassignments(&ctx.shard, requests).await
    };
    assert_eq!(results.len(), named.len());
    let mut responses: Vec<ReassignableTopicResponse> = Vec::new();
    for ((topic, partition), result) in named.into_iter().zip(results) {
        let mut entry = ReassignablePartitionResponse::default().with_partition_index(partition);
        if let Err((error, message)) = result {
            entry = entry
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message)));
        }
        match responses.iter_mut().find(|r| r.name.0.as_str() == topic) {
            Some(response) => response.partitions.push(entry),
            None => responses.push(
                ReassignableTopicResponse::default()
                    .with_name(StrBytes::from_string(topic).into())
                    .with_partitions(vec![entry]),
            ),
        }
    }
    AlterPartitionReassignmentsResponse::default().with_responses(responses)
}
