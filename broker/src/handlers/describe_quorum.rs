//! DescribeQuorum (KIP-595, KIP-836): the metadata quorum's leader, epoch (the Raft term), high
//! watermark (the commit index) and each voter's log end and last contact. Versions 0–2.
//!
//! Kafka answers only on the quorum's leader; here any broker answers with its own view (taken
//! on the controller shard, where the quorum runs): the leader knows every voter's matched index
//! and last contact, a follower knows its own log end and when it last heard each voter. The one
//! partition is KRaft's `__cluster_metadata`-0; any other gets UNKNOWN_TOPIC_OR_PARTITION.
//! Observers are always empty: every broker is a voter.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::cluster::quorum_view::QuorumView;

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 2;

pub const METADATA_LOG_TOPIC: &str = "__cluster_metadata";
pub const METADATA_LOG_PARTITION: i32 = 0;
/// The listener name v2 reports for each voter's controller endpoint.
const CONTROLLER_LISTENER: &str = "CONTROLLER";

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let view = crate::shard::admin::describe_quorum(&ctx.shard).await;
    response(&request, &view)
}

/// The answer to `request` from `view`: the metadata partition's state where asked, every other
/// partition refused.
pub fn response(request: &DescribeQuorumRequest, view: &QuorumView) -> DescribeQuorumResponse {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    if topic.topic_name.as_str() == METADATA_LOG_TOPIC
                        && partition.partition_index == METADATA_LOG_PARTITION
                    {
                        metadata_partition(view)
                    } else {
                        PartitionData::default()
                            .with_partition_index(partition.partition_index)
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                    }
                })
                .collect();
            TopicData::default()
                .with_topic_name(topic.topic_name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DescribeQuorumResponse::default()
        .with_topics(topics)
        .with_nodes(nodes(view))
}

fn metadata_partition(view: &QuorumView) -> PartitionData {
    let known = |value: Option<i64>| value.unwrap_or(-1);
    let voters = view
        .voters
        .iter()
        .map(|voter| {
            let log_end = voter.log_end.map(offset);
            // Caught up: holding every committed entry when last heard.
            let caught_up = log_end.is_some_and(|end| end >= offset(view.commit_index));
            ReplicaState::default()
                .with_replica_id(BrokerId(voter.node_id))
                .with_log_end_offset(known(log_end))
                .with_last_fetch_timestamp(known(voter.last_heard_ms))
                .with_last_caught_up_timestamp(known(voter.last_heard_ms.filter(|_| caught_up)))
        })
        .collect();
    PartitionData::default()
        .with_partition_index(METADATA_LOG_PARTITION)
        .with_leader_id(BrokerId(view.leader_id))
        .with_leader_epoch(i32::try_from(view.term).unwrap_or(i32::MAX))
        .with_high_watermark(offset(view.commit_index))
        .with_current_voters(voters)
}

/// A Raft index as an offset: the log's first entry is index 1, so index n ends at offset n.
fn offset(index: u64) -> i64 {
    i64::try_from(index).unwrap_or(i64::MAX)
}

/// v2's voter endpoints: each voter's controller listener.
fn nodes(view: &QuorumView) -> Vec<Node> {
    view.voters
        .iter()
        .map(|voter| {
            Node::default()
                .with_node_id(BrokerId(voter.node_id))
                .with_listeners(vec![Listener::default()
                    .with_name(StrBytes::from_static_str(CONTROLLER_LISTENER))
                    .with_host(StrBytes::from_string(voter.host.clone()))
                    .with_port(voter.port)])
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_quorum_request;
    use kafka_protocol::messages::TopicName;

    use super::*;
    use crate::cluster::quorum_view::VoterView;

    fn ask(topic: &'static str, partition: i32) -> DescribeQuorumRequest {
        DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str(topic)))
                .with_partitions(vec![describe_quorum_request::PartitionData::default()
                    .with_partition_index(partition)]),
        ])
    }

    fn view() -> QuorumView {
        let voter = |node_id: i32, log_end: Option<u64>, last_heard_ms: Option<i64>| VoterView {
            node_id,
            host: format!("10.0.0.{node_id}"),
            port: 9093,
            log_end,
            last_heard_ms,
        };
        QuorumView {
            leader_id: 1,
            term: 3,
            commit_index: 20,
            voters: vec![
                voter(1, Some(21), Some(5_000)),
                voter(2, Some(19), Some(4_900)),
                voter(3, None, None),
            ],
        }
    }

    #[test]
    fn reports_the_metadata_partition_from_the_view() {
        let answer = response(&ask(METADATA_LOG_TOPIC, 0), &view());
        let partition = &answer.topics[0].partitions[0];
        assert_eq!(partition.error_code, 0);
        assert_eq!(
            (
                partition.leader_id.0,
                partition.leader_epoch,
                partition.high_watermark
            ),
            (1, 3, 20)
        );
        let states: Vec<(i32, i64, i64, i64)> = (partition.current_voters.iter())
            .map(|voter| {
                (
                    voter.replica_id.0,
                    voter.log_end_offset,
                    voter.last_fetch_timestamp,
                    voter.last_caught_up_timestamp,
                )
            })
            .collect();
        assert_eq!(
            states,
            vec![(1, 21, 5_000, 5_000), (2, 19, 4_900, -1), (3, -1, -1, -1)]
        );
        assert!(partition.observers.is_empty());
        assert_eq!(answer.nodes.len(), 3);
        assert_eq!(answer.nodes[1].listeners[0].host.as_str(), "10.0.0.2");
    }

    #[test]
    fn other_partitions_are_unknown() {
        for (topic, partition) in [("orders", 0), (METADATA_LOG_TOPIC, 1)] {
            let answer = response(&ask(topic, partition), &view());
            let refused = &answer.topics[0].partitions[0];
            assert_eq!(refused.partition_index, partition);
            assert_eq!(
                refused.error_code,
                ResponseError::UnknownTopicOrPartition.code()
            );
        }
    }
}
