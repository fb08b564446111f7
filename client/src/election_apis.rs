//! ElectLeaders: the request builder, the response parser and the plain data it returns, pure
//! functions like `apis`.

use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::error::{check_code, Result};

/// ElectLeaders' election types.
const ELECTION_PREFERRED: i8 = 0;
const ELECTION_UNCLEAN: i8 = 1;

/// Time the broker may take for the elections.
const ELECTION_TIMEOUT_MS: i32 = 30_000;

/// One partition's election: `Ok` if its leader changed, else the broker's error
/// (ELECTION_NOT_NEEDED if it had the leader the election would give it).
#[derive(Debug)]
pub struct ElectionOutcome {
    pub topic: String,
    pub partition: i32,
    pub result: Result<()>,
}

pub fn elect_leaders_request(
    unclean: bool,
    partitions: Option<&[(String, i32)]>,
) -> ElectLeadersRequest {
    let topics = partitions.map(|partitions| {
        let mut topics: Vec<TopicPartitions> = Vec::new();
        for (topic, partition) in partitions {
            match topics.iter_mut().find(|t| t.topic.0.as_str() == topic) {
                Some(entry) => entry.partitions.push(*partition),
                None => topics.push(
                    TopicPartitions::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partitions(vec![*partition]),
                ),
            }
        }
        topics
    });
    ElectLeadersRequest::default()
        .with_election_type(if unclean {
            ELECTION_UNCLEAN
        } else {
            ELECTION_PREFERRED
        })
        .with_topic_partitions(topics)
        .with_timeout_ms(ELECTION_TIMEOUT_MS)
}

pub fn parse_elect_leaders(response: ElectLeadersResponse) -> Result<Vec<ElectionOutcome>> {
    check_code(response.error_code, None, || "elect leaders".to_owned())?;
    let mut outcomes = Vec::new();
    for topic in response.replica_election_results {
        let name = topic.topic.0.as_str().to_owned();
        for partition in topic.partition_result {
            let id = partition.partition_id;
            let message = partition.error_message.as_deref();
            let result = check_code(partition.error_code, message, || {
                format!("elect the leader of {name}-{id}")
            });
            outcomes.push(ElectionOutcome {
                topic: name.clone(),
                partition: id,
                result,
            });
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::error::ResponseError;
    use kafka_protocol::messages::elect_leaders_response::{
        PartitionResult, ReplicaElectionResult,
    };

    use super::*;

    #[test]
    fn a_request_groups_partitions_by_topic_and_null_asks_for_all() {
        let asked = [
            ("a".to_string(), 0),
            ("b".to_string(), 1),
            ("a".to_string(), 2),
        ];
        let request = elect_leaders_request(true, Some(&asked));
        assert_eq!(request.election_type, ELECTION_UNCLEAN);
        let topics = request.topic_partitions.unwrap();
        let shape: Vec<(&str, Vec<i32>)> = (topics.iter())
            .map(|t| (t.topic.0.as_str(), t.partitions.clone()))
            .collect();
        assert_eq!(shape, vec![("a", vec![0, 2]), ("b", vec![1])]);
        let all = elect_leaders_request(false, None);
        assert_eq!(all.election_type, ELECTION_PREFERRED);
        assert!(all.topic_partitions.is_none());
    }

    #[test]
    fn each_partition_keeps_its_own_outcome() {
        let response = ElectLeadersResponse::default().with_replica_election_results(vec![
            ReplicaElectionResult::default()
                .with_topic(TopicName(StrBytes::from_static_str("a")))
                .with_partition_result(vec![
                    PartitionResult::default().with_partition_id(0),
                    PartitionResult::default()
                        .with_partition_id(1)
                        .with_error_code(ResponseError::ElectionNotNeeded.code()),
                ]),
        ]);
        let outcomes = parse_elect_leaders(response).unwrap();
        assert_eq!(outcomes.len(), 2);
        assert!(outcomes[0].result.is_ok());
        let error = outcomes[1].result.as_ref().unwrap_err();
        assert_eq!(error.kafka_error(), Some(ResponseError::ElectionNotNeeded));
        let refused =
            ElectLeadersResponse::default().with_error_code(ResponseError::InvalidRequest.code());
        assert!(parse_elect_leaders(refused).is_err());
    }
}
