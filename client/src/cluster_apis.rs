//! DescribeCluster and DescribeQuorum: request builders, response parsers and the plain data
//! they return, pure functions like `apis`.

use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use kafka_protocol::messages::describe_quorum_response::ReplicaState;
use kafka_protocol::messages::{
    DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest, DescribeQuorumResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::error::{check_code, ClientError, Result};

/// The metadata log's name and partition, as KRaft names them in DescribeQuorum.
pub const METADATA_LOG_TOPIC: &str = "__cluster_metadata";
pub const METADATA_LOG_PARTITION: i32 = 0;

/// DescribeCluster's EndpointType.BROKER.
const ENDPOINT_TYPE_BROKERS: i8 = 1;

/// The cluster as DescribeCluster describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    pub cluster_id: String,
    /// -1 when the broker knows no controller.
    pub controller_id: i32,
    /// Sorted by id; fenced brokers only when the broker answers v2.
    pub brokers: Vec<ClusterBroker>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterBroker {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
    pub fenced: bool,
}

/// The metadata quorum as the answering broker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    /// -1 when the broker knows no leader.
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    /// Sorted by id.
    pub voters: Vec<VoterState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterState {
    pub id: i32,
    /// -1 when the answering broker does not know it.
    pub log_end_offset: i64,
    /// Milliseconds since the epoch; `None` when unknown.
    pub last_fetch_timestamp_ms: Option<i64>,
    pub last_caught_up_timestamp_ms: Option<i64>,
}

/// Asks for fenced brokers too where the version can (v2).
pub fn describe_cluster_request(version: i16) -> DescribeClusterRequest {
    DescribeClusterRequest::default()
        .with_endpoint_type(ENDPOINT_TYPE_BROKERS)
        .with_include_fenced_brokers(version >= 2)
}

pub fn parse_describe_cluster(response: DescribeClusterResponse) -> Result<ClusterDescription> {
    check_code(
        response.error_code,
        response.error_message.as_deref(),
        || "describe cluster".to_owned(),
    )?;
    let mut brokers: Vec<ClusterBroker> = response
        .brokers
        .into_iter()
        .map(|broker| ClusterBroker {
            id: broker.broker_id.0,
            host: broker.host.as_str().to_owned(),
            port: broker.port,
            rack: broker.rack.map(|rack| rack.as_str().to_owned()),
            fenced: broker.is_fenced,
        })
        .collect();
    brokers.sort_by_key(|broker| broker.id);
    Ok(ClusterDescription {
        cluster_id: response.cluster_id.as_str().to_owned(),
        controller_id: response.controller_id.0,
        brokers,
    })
}

pub fn describe_quorum_request() -> DescribeQuorumRequest {
    DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
        .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_LOG_TOPIC)))
        .with_partitions(vec![
            PartitionData::default().with_partition_index(METADATA_LOG_PARTITION)
        ])])
}

pub fn parse_describe_quorum(response: DescribeQuorumResponse) -> Result<QuorumDescription> {
    let context = || "describe quorum".to_owned();
    check_code(
        response.error_code,
        response.error_message.as_deref(),
        context,
    )?;
    let partition = response
        .topics
        .into_iter()
        .filter(|topic| topic.topic_name.as_str() == METADATA_LOG_TOPIC)
        .flat_map(|topic| topic.partitions)
        .find(|partition| partition.partition_index == METADATA_LOG_PARTITION)
        .ok_or_else(|| {
            ClientError::protocol(format!(
                "DescribeQuorum response has no entry for {METADATA_LOG_TOPIC}-{METADATA_LOG_PARTITION}"
            ))
        })?;
    check_code(
        partition.error_code,
        partition.error_message.as_deref(),
        context,
    )?;
    let mut voters: Vec<VoterState> = partition.current_voters.iter().map(voter_state).collect();
    voters.sort_by_key(|voter| voter.id);
    Ok(QuorumDescription {
        leader_id: partition.leader_id.0,
        leader_epoch: partition.leader_epoch,
        high_watermark: partition.high_watermark,
        voters,
    })
}

fn voter_state(replica: &ReplicaState) -> VoterState {
    let known = |timestamp: i64| Some(timestamp).filter(|timestamp| *timestamp >= 0);
    VoterState {
        id: replica.replica_id.0,
        log_end_offset: replica.log_end_offset,
        last_fetch_timestamp_ms: known(replica.last_fetch_timestamp),
        last_caught_up_timestamp_ms: known(replica.last_caught_up_timestamp),
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
    use kafka_protocol::messages::describe_quorum_response as response;
    use kafka_protocol::messages::BrokerId;

    use super::*;

    #[test]
    fn describe_cluster_sorts_brokers_and_keeps_racks_and_fencing() {
        let broker = |id: i32, rack: Option<&'static str>, fenced: bool| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(id))
                .with_host(StrBytes::from_static_str("h"))
                .with_port(9000 + id)
                .with_rack(rack.map(StrBytes::from_static_str))
                .with_is_fenced(fenced)
        };
        let answer = DescribeClusterResponse::default()
            .with_cluster_id(StrBytes::from_static_str("c"))
            .with_controller_id(BrokerId(2))
            .with_brokers(vec![broker(3, None, true), broker(1, Some("r1"), false)]);
        let description = parse_describe_cluster(answer).unwrap();
        assert_eq!(description.controller_id, 2);
        assert_eq!(description.cluster_id, "c");
        assert_eq!(
            description.brokers,
            vec![
                ClusterBroker {
                    id: 1,
                    host: "h".into(),
                    port: 9001,
                    rack: Some("r1".into()),
                    fenced: false
                },
                ClusterBroker {
                    id: 3,
                    host: "h".into(),
                    port: 9003,
                    rack: None,
                    fenced: true
                },
            ]
        );
        assert!(describe_cluster_request(2).include_fenced_brokers);
        assert!(!describe_cluster_request(1).include_fenced_brokers);
    }

    #[test]
    fn describe_quorum_reads_the_metadata_partition_and_its_errors() {
        let voter = |id: i32, end: i64, fetched: i64| {
            ReplicaState::default()
                .with_replica_id(BrokerId(id))
                .with_log_end_offset(end)
                .with_last_fetch_timestamp(fetched)
                .with_last_caught_up_timestamp(-1)
        };
        let partition = response::PartitionData::default()
            .with_leader_id(BrokerId(1))
            .with_leader_epoch(4)
            .with_high_watermark(17)
            .with_current_voters(vec![voter(2, 15, 1000), voter(1, 17, -1)]);
        let answer = |partition: response::PartitionData| {
            DescribeQuorumResponse::default().with_topics(vec![response::TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str(METADATA_LOG_TOPIC)))
                .with_partitions(vec![partition])])
        };
        let description = parse_describe_quorum(answer(partition.clone())).unwrap();
        assert_eq!(
            (
                description.leader_id,
                description.leader_epoch,
                description.high_watermark
            ),
            (1, 4, 17)
        );
        assert_eq!(description.voters[0].id, 1);
        assert_eq!(description.voters[0].last_fetch_timestamp_ms, None);
        assert_eq!(description.voters[1].last_fetch_timestamp_ms, Some(1000));
        assert_eq!(description.voters[1].log_end_offset, 15);

        let refused = partition.with_error_code(6); // NOT_LEADER_OR_FOLLOWER
        let error = parse_describe_quorum(answer(refused)).unwrap_err();
        assert!(
            error.to_string().contains("NOT_LEADER_OR_FOLLOWER"),
            "{error}"
        );
        let empty = parse_describe_quorum(DescribeQuorumResponse::default()).unwrap_err();
        assert!(empty.to_string().contains(METADATA_LOG_TOPIC), "{empty}");
    }
}
