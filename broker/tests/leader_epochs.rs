//! OffsetForLeaderEpoch (API 23) on the real broker: the end offset of each epoch from the
//! partition's leader-epoch cache, at every served version, across shards and across a kill -9;
//! UNKNOWN_LEADER_EPOCH for a current epoch above the partition's, UNDEFINED for an epoch above
//! the latest, UNKNOWN_TOPIC_OR_PARTITION for what does not exist. FENCED_LEADER_EPOCH and
//! NOT_LEADER_OR_FOLLOWER need several brokers: `tests/cluster/test_truncation.py`.

mod common;

use common::{batch, Broker};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::EpochEndOffset;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const PARTITIONS: i32 = 4;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const UNKNOWN_LEADER_EPOCH: i16 = 75;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn create_topic(wire: &mut common::Wire, name: &str) {
    let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(PARTITIONS)
        .with_replication_factor(1)]);
    let response: CreateTopicsResponse = wire.request(ApiKey::CreateTopics, 7, &request);
    assert_eq!(response.topics[0].error_code, 0);
}

fn produce(wire: &mut common::Wire, topic: &str, partition: i32, records: usize) {
    let values: Vec<String> = (0..records).map(|i| format!("v{i}")).collect();
    let values: Vec<&str> = values.iter().map(String::as_str).collect();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch(&values, 1_000)))])]);
    let response: ProduceResponse = wire.request(ApiKey::Produce, 9, &request);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
}

/// (partition, current leader epoch, leader epoch) asked of `topic`.
fn offsets_for_epochs(
    wire: &mut common::Wire,
    version: i16,
    topic: &str,
    asked: &[(i32, i32, i32)],
) -> Vec<EpochEndOffset> {
    let partitions = asked
        .iter()
        .map(|(partition, current, epoch)| {
            OffsetForLeaderPartition::default()
                .with_partition(*partition)
                .with_current_leader_epoch(*current)
                .with_leader_epoch(*epoch)
        })
        .collect();
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(partitions)]);
    let response: OffsetForLeaderEpochResponse =
        wire.request(ApiKey::OffsetForLeaderEpoch, version, &request);
    assert_eq!(response.topics.len(), 1);
    assert_eq!(response.topics[0].topic.0.as_str(), topic);
    response.topics[0].partitions.clone()
}

fn answer(result: &EpochEndOffset) -> (i32, i16, i32, i64) {
    (
        result.partition,
        result.error_code,
        result.leader_epoch,
        result.end_offset,
    )
}

#[test]
fn offset_for_leader_epoch_answers_from_the_epoch_cache_across_a_restart() {
    let mut broker = Broker::start("offset-for-leader-epoch", 2);
    let mut wire = broker.connect();
    let topic = "epochs";
    create_topic(&mut wire, topic);
    // Partition p holds 3 * p records, all written at epoch 0 (one broker's first epoch).
    for partition in 1..PARTITIONS {
        for _ in 0..3 {
            produce(&mut wire, topic, partition, partition as usize);
        }
    }
    let expected = |partition: i32| (partition, 0, 0, i64::from(3 * partition));
    for round in 0..2 {
        for version in 2..=4 {
            let asked: Vec<_> = (0..PARTITIONS).map(|p| (p, -1, 0)).collect();
            let results = offsets_for_epochs(&mut wire, version, topic, &asked);
            let got: Vec<_> = results.iter().map(answer).collect();
            // The empty partition 0 has no epoch yet but was assigned epoch 0 at its log end.
            let want: Vec<_> = (0..PARTITIONS).map(expected).collect();
            assert_eq!(got, want, "round {round}, version {version}");
            // The current epoch checked: the partition's (0) passes, a later one is unknown
            // here; an epoch above the latest is UNDEFINED; partition 9 does not exist.
            let asked = [(1, 0, 0), (2, 1, 0), (3, -1, 5), (9, -1, 0)];
            let results = offsets_for_epochs(&mut wire, version, topic, &asked);
            let got: Vec<_> = results.iter().map(answer).collect();
            let want = vec![
                expected(1),
                (2, UNKNOWN_LEADER_EPOCH, -1, -1),
                (3, 0, -1, -1),
                (9, UNKNOWN_TOPIC_OR_PARTITION, -1, -1),
            ];
            assert_eq!(got, want, "round {round}, version {version}");
            let results = offsets_for_epochs(&mut wire, version, "no-such-topic", &[(0, -1, 0)]);
            assert_eq!(answer(&results[0]), (0, UNKNOWN_TOPIC_OR_PARTITION, -1, -1));
        }
        // The checkpoint and the batches survive a crash: the same answers after a kill -9.
        broker.kill_and_restart();
        wire = broker.connect();
    }
}
