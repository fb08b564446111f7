//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455): the request builders,
//! the response parsers and the plain data they return, pure functions like `apis`.

use kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::error::{check_code, Result};

/// Time the broker may take to commit the change.
const REASSIGNMENT_TIMEOUT_MS: i32 = 30_000;

/// A reassignment in progress, as ListPartitionReassignments reports it: `replicas` are the
/// target replicas followed by those being removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OngoingReassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<i32>,
    pub adding: Vec<i32>,
    pub removing: Vec<i32>,
}

/// Moves `topic`'s `partition` to `replicas`, or with None cancels its reassignment.
pub fn alter_request(
    topic: &str,
    partition: i32,
    replicas: Option<&[i32]>,
) -> AlterPartitionReassignmentsRequest {
    let replicas = replicas.map(|ids| ids.iter().copied().map(BrokerId).collect());
    let partition = ReassignablePartition::default()
        .with_partition_index(partition)
        .with_replicas(replicas);
    let topic = ReassignableTopic::default()
        .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
        .with_partitions(vec![partition]);
    AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(REASSIGNMENT_TIMEOUT_MS)
        .with_topics(vec![topic])
}

/// The result of the one partition `alter_request` named.
pub fn parse_alter(
    response: AlterPartitionReassignmentsResponse,
    topic: &str,
    partition: i32,
) -> Result<()> {
    let context = || format!("reassign {topic}-{partition}");
    check_code(
        response.error_code,
        response.error_message.as_deref(),
        context,
    )?;
    let answer = (response.responses.iter())
        .filter(|t| t.name.0.as_str() == topic)
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == partition)
        .ok_or_else(|| {
            super::ClientError::protocol(format!("no answer for {topic}-{partition}"))
        })?;
    check_code(answer.error_code, answer.error_message.as_deref(), context)
}

/// The reassignments in progress of `topic`'s `partitions` (None: of every partition).
pub fn list_request(topic: Option<(&str, Vec<i32>)>) -> ListPartitionReassignmentsRequest {
    let topics = topic.map(|(name, partitions)| {
        vec![ListPartitionReassignmentsTopics::default()
            .with_name(TopicName(StrBytes::from_string(name.to_owned())))
            .with_partition_indexes(partitions)]
    });
    ListPartitionReassignmentsRequest::default()
        .with_timeout_ms(REASSIGNMENT_TIMEOUT_MS)
        .with_topics(topics)
}

pub fn parse_list(
    response: ListPartitionReassignmentsResponse,
) -> Result<Vec<OngoingReassignment>> {
    check_code(
        response.error_code,
        response.error_message.as_deref(),
        || "list partition reassignments".to_owned(),
    )?;
    let ids = |ids: &[BrokerId]| ids.iter().map(|id| id.0).collect::<Vec<i32>>();
    let mut ongoing = Vec::new();
    for topic in response.topics {
        for partition in topic.partitions {
            ongoing.push(OngoingReassignment {
                topic: topic.name.0.as_str().to_owned(),
                partition: partition.partition_index,
                replicas: ids(&partition.replicas),
                adding: ids(&partition.adding_replicas),
                removing: ids(&partition.removing_replicas),
            });
        }
    }
    Ok(ongoing)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::alter_partition_reassignments_response::{
        ReassignablePartitionResponse, ReassignableTopicResponse,
    };
    use kafka_protocol::messages::list_partition_reassignments_response::{
        OngoingPartitionReassignment, OngoingTopicReassignment,
    };

    use super::*;

    #[test]
    fn a_request_names_one_partition_and_null_replicas_cancel() {
        let start = alter_request("t", 2, Some(&[2, 3, 4]));
        let partition = &start.topics[0].partitions[0];
        assert_eq!(start.topics[0].name.0.as_str(), "t");
        assert_eq!(partition.partition_index, 2);
        assert_eq!(
            partition.replicas,
            Some(vec![BrokerId(2), BrokerId(3), BrokerId(4)])
        );
        let cancel = alter_request("t", 2, None);
        assert_eq!(cancel.topics[0].partitions[0].replicas, None);
        let all = list_request(None);
        assert!(all.topics.is_none());
        let one = list_request(Some(("t", vec![2]))).topics.unwrap();
        assert_eq!(one[0].partition_indexes, vec![2]);
    }

    #[test]
    fn the_partition_error_is_the_result() {
        let answer = |code: i16| {
            AlterPartitionReassignmentsResponse::default().with_responses(vec![
                ReassignableTopicResponse::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(vec![ReassignablePartitionResponse::default()
                        .with_partition_index(0)
                        .with_error_code(code)
                        .with_error_message(Some(StrBytes::from_static_str("why")))]),
            ])
        };
        assert!(parse_alter(answer(0), "t", 0).is_ok());
        let refused = parse_alter(
            answer(ResponseError::NoReassignmentInProgress.code()),
            "t",
            0,
        );
        let error = refused.unwrap_err();
        assert_eq!(
            error.kafka_error(),
            Some(ResponseError::NoReassignmentInProgress)
        );
        assert!(error.to_string().contains("why"), "{error}");
        // An answer that leaves the partition out is an error, not a success.
        assert!(parse_alter(answer(0), "t", 1).is_err());
    }

    #[test]
    fn listed_reassignments_are_flattened() {
        let ids = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
        let response = ListPartitionReassignmentsResponse::default().with_topics(vec![
            OngoingTopicReassignment::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![OngoingPartitionReassignment::default()
                    .with_partition_index(1)
                    .with_replicas(ids(&[2, 3, 4, 1]))
                    .with_adding_replicas(ids(&[4]))
                    .with_removing_replicas(ids(&[1]))]),
        ]);
        assert_eq!(
            parse_list(response).unwrap(),
            vec![OngoingReassignment {
                topic: "t".into(),
                partition: 1,
                replicas: vec![2, 3, 4, 1],
                adding: vec![4],
                removing: vec![1],
            }]
        );
    }
}
