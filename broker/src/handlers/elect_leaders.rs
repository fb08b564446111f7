//! ElectLeaders: preferred or unclean leader elections, run by the controller as one metadata
//! change (`cluster::election`). Versions 0–2 (v0 elects only preferred leaders).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::cluster::controller::elections::ElectionOutcome;
use crate::cluster::election::ElectionType;
use crate::shard::admin;

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 2;

pub async fn handle(ctx: &RequestContext, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let Some(election) = ElectionType::from_wire(request.election_type) else {
        return ElectLeadersResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    };
    let partitions = (request.topic_partitions.as_ref()).map(|topics| {
        (topics.iter())
            .flat_map(|t| (t.partitions.iter()).map(|p| (t.topic.0.to_string(), *p)))
            .collect()
    });
    let outcomes = admin::elect_leaders(&ctx.shard, election, partitions).await;
    ElectLeadersResponse::default().with_replica_election_results(by_topic(outcomes))
}

/// The outcomes grouped by topic, topics and partitions in the order they came.
fn by_topic(outcomes: Vec<ElectionOutcome>) -> Vec<ReplicaElectionResult> {
    let mut results: Vec<ReplicaElectionResult> = Vec::new();
    for (topic, partition, outcome) in outcomes {
        let mut entry = PartitionResult::default().with_partition_id(partition);
        if let Err((error, message)) = outcome {
            entry = entry
                .with_error_code(error.code())
                .with_error_message(Some(StrBytes::from_string(message)));
        }
        match results.iter_mut().find(|r| r.topic.0.as_str() == topic) {
            Some(result) => result.partition_result.push(entry),
            None => results.push(
                ReplicaElectionResult::default()
                    .with_topic(TopicName(StrBytes::from_string(topic)))
                    .with_partition_result(vec![entry]),
            ),
        }
    }
    results
}
