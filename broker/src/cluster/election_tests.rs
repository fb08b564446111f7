use std::collections::BTreeMap;

use super::*;
use crate::cluster::membership::{fence, register, unfence};
use crate::cluster::metadata::{BrokerRegistration, TopicMeta};

fn registration(id: i32) -> BrokerRegistration {
    BrokerRegistration {
        id,
        incarnation: 1,
        host: format!("10.0.0.{id}"),
        port: 9092,
        rack: None,
        fenced: false,
        shutting_down: false,
    }
}

/// Brokers 1..=3 live; topic "t" with one partition per replica list, each led by its first
/// replica with every replica in sync; `configs` are the topic's explicit configs.
fn snapshot(partitions: &[&[i32]], configs: &[(&str, &str)]) -> MetadataSnapshot {
    let mut snapshot = crate::cluster::controller::command::empty_snapshot();
    for id in 1..=3 {
        register(&mut snapshot, registration(id));
    }
    let assignments = (partitions.iter())
        .map(|replicas| PartitionAssignment::new(replicas.to_vec()))
        .collect();
    let configs: BTreeMap<String, String> = (configs.iter())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let topic = TopicMeta::new("t".into(), uuid::Uuid::from_u128(7), assignments, configs);
    snapshot.topics.insert("t".to_string(), topic);
    snapshot
}

/// (leader, leader epoch, ISR) of partition `at` of "t".
fn state(snapshot: &MetadataSnapshot, at: usize) -> (i32, i32, Vec<i32>) {
    let assignment = &snapshot.topics["t"].assignments()[at];
    let isr = assignment.isr.clone();
    (assignment.leader, assignment.leader_epoch, isr)
}

#[test]
fn a_preferred_election_moves_leadership_back_once_the_preferred_replica_is_live_and_in_sync() {
    let mut snapshot = snapshot(&[&[1, 2, 3]], &[]);
    assert_eq!(
        elect(&mut snapshot, ElectionType::Preferred, "t", 0),
        Err(ElectionError::NotNeeded(1))
    );
    fence(&mut snapshot, 1, 1).unwrap();
    assert_eq!(state(&snapshot, 0), (2, 1, vec![2, 3]));
    assert_eq!(
        elect(&mut snapshot, ElectionType::Preferred, "t", 0),
        Err(ElectionError::PreferredNotAvailable(1))
    );
    unfence(&mut snapshot, 1, 1).unwrap();
    // Live again but not yet back in the ISR: still not available.
    assert_eq!(
        elect(&mut snapshot, ElectionType::Preferred, "t", 0),
        Err(ElectionError::PreferredNotAvailable(1))
    );
    let assignment = snapshot.topics.get_mut("t").unwrap();
    assignment.assignment_mut(0).unwrap().isr.push(1);
    assert_eq!(elect(&mut snapshot, ElectionType::Preferred, "t", 0), Ok(1));
    assert_eq!(state(&snapshot, 0), (1, 2, vec![2, 3, 1]));
}

#[test]
fn an_unclean_election_only_gives_a_partition_without_a_leader_a_live_replica() {
    let mut snapshot = snapshot(&[&[1, 2], &[3, 1]], &[]);
    assert_eq!(
        elect(&mut snapshot, ElectionType::Unclean, "t", 0),
        Err(ElectionError::NotNeeded(1))
    );
    // Broker 2 drops out of the ISR of partition 0, then its leader dies: offline.
    let topic = snapshot.topics.get_mut("t").unwrap();
    topic.assignment_mut(0).unwrap().isr = vec![1];
    fence(&mut snapshot, 1, 1).unwrap();
    assert_eq!(state(&snapshot, 0), (NO_LEADER, 1, vec![1]));
    assert_eq!(elect(&mut snapshot, ElectionType::Unclean, "t", 0), Ok(2));
    assert_eq!(state(&snapshot, 0), (2, 2, vec![2]));
    fence(&mut snapshot, 2, 1).unwrap();
    fence(&mut snapshot, 3, 1).unwrap();
    assert_eq!(
        elect(&mut snapshot, ElectionType::Unclean, "t", 1),
        Err(ElectionError::NoEligibleLeader)
    );
    assert_eq!(
        elect(&mut snapshot, ElectionType::Unclean, "t", 2),
        Err(ElectionError::UnknownPartition)
    );
    assert_eq!(
        elect(&mut snapshot, ElectionType::Preferred, "u", 0),
        Err(ElectionError::UnknownPartition)
    );
}

#[test]
fn fencing_elects_outside_the_isr_only_where_unclean_election_is_enabled() {
    for (enabled, expected) in [
        ("false", (NO_LEADER, 1, vec![1])),
        ("true", (2, 1, vec![2])),
    ] {
        let mut snapshot = snapshot(&[&[1, 2]], &[("unclean.leader.election.enable", enabled)]);
        let topic = snapshot.topics.get_mut("t").unwrap();
        topic.assignment_mut(0).unwrap().isr = vec![1];
        fence(&mut snapshot, 1, 1).unwrap();
        assert_eq!(state(&snapshot, 0), expected, "enabled={enabled}");
    }
    // With it enabled, a replica outside the ISR coming back leads an offline partition.
    let mut snapshot = snapshot(&[&[1, 2]], &[("unclean.leader.election.enable", "true")]);
    let topic = snapshot.topics.get_mut("t").unwrap();
    topic.assignment_mut(0).unwrap().isr = vec![1];
    fence(&mut snapshot, 2, 1).unwrap();
    fence(&mut snapshot, 1, 1).unwrap();
    assert_eq!(state(&snapshot, 0), (NO_LEADER, 1, vec![1]));
    unfence(&mut snapshot, 2, 1).unwrap();
    assert_eq!(state(&snapshot, 0), (2, 2, vec![2]));
}

#[test]
fn rebalancing_picks_the_movable_partitions_of_brokers_above_the_imbalance_threshold() {
    // Broker 1 prefers partitions 0..10; broker 2 prefers 10 and 11.
    let mut lists: Vec<&[i32]> = vec![&[1, 2, 3]; 10];
    lists.extend([&[2, 3, 1][..], &[2, 3, 1][..]]);
    let mut snapshot = snapshot(&lists, &[]);
    assert!(rebalance_candidates(&snapshot, 10).is_empty());
    let topic = snapshot.topics.get_mut("t").unwrap();
    // Broker 1 leads 9 of its 10: 10 % imbalance, not above the threshold.
    topic.assignment_mut(0).unwrap().leader = 2;
    assert!(rebalance_candidates(&snapshot, 10).is_empty());
    // 2 of 10 not led, one of them (partition 1) without broker 1 in its ISR.
    let topic = snapshot.topics.get_mut("t").unwrap();
    let second = topic.assignment_mut(1).unwrap();
    second.isr = vec![2, 3];
    second.leader = 2;
    // Broker 2 leads neither of its partitions, both in its ISR.
    topic.assignment_mut(10).unwrap().leader = 3;
    topic.assignment_mut(11).unwrap().leader = 3;
    let expected: Vec<(String, i32)> = [0, 10, 11].map(|p| ("t".to_string(), p)).to_vec();
    assert_eq!(rebalance_candidates(&snapshot, 10), expected);
    assert_eq!(rebalance_candidates(&snapshot, 20), expected[1..].to_vec());
    // A fenced broker is not rebalanced to.
    snapshot.brokers.get_mut(&2).unwrap().fenced = true;
    assert_eq!(rebalance_candidates(&snapshot, 10), expected[..1].to_vec());
}

#[test]
fn election_types_come_from_their_wire_numbers() {
    assert_eq!(ElectionType::from_wire(0), Some(ElectionType::Preferred));
    assert_eq!(ElectionType::from_wire(1), Some(ElectionType::Unclean));
    assert_eq!(ElectionType::from_wire(2), None);
    assert_eq!(ElectionType::from_wire(-1), None);
}

#[test]
fn an_elect_leaders_command_answers_each_partition_in_order_with_kafka_codes() {
    use crate::cluster::controller::command::{apply, MetadataCommand};
    use crate::cluster::controller::Applied;
    use kafka_protocol::error::ResponseError;
    let mut snapshot = snapshot(&[&[1, 2], &[2, 1]], &[]);
    fence(&mut snapshot, 1, 1).unwrap();
    unfence(&mut snapshot, 1, 1).unwrap();
    let topic = snapshot.topics.get_mut("t").unwrap();
    topic.assignment_mut(0).unwrap().isr.push(1);
    let command = MetadataCommand::ElectLeaders {
        election: ElectionType::Preferred,
        partitions: vec![("t".into(), 0), ("t".into(), 1), ("t".into(), 5)],
    };
    let index = snapshot.version + 1;
    let results = apply(&mut snapshot, index, command);
    let codes: Vec<Result<Applied, ResponseError>> = (results.into_iter())
        .map(|(_, result)| result.map_err(|(code, _)| code))
        .collect();
    assert_eq!(
        codes,
        vec![
            Ok(Applied::Leader(1)),
            Err(ResponseError::ElectionNotNeeded),
            Err(ResponseError::UnknownTopicOrPartition),
        ]
    );
    assert_eq!(snapshot.version, index);
    assert_eq!(state(&snapshot, 0), (1, 2, vec![2, 1]));
}

#[test]
fn turning_unclean_election_on_elects_a_live_replica_for_each_partition_without_a_leader() {
    // Partition 0: its ISR {1} dead, replica 2 live but out of sync. Partition 1: led.
    let mut snapshot = snapshot(&[&[1, 2], &[3, 2]], &[]);
    let topic = snapshot.topics.get_mut("t").unwrap();
    topic.assignment_mut(0).unwrap().isr = vec![1];
    fence(&mut snapshot, 1, 1).unwrap();
    let live: Vec<i32> = snapshot.live_brokers().map(|broker| broker.id).collect();
    let topic = snapshot.topics.get_mut("t").unwrap();
    assert_eq!(elect_unclean_where_enabled(topic, &live), 0, "not enabled");
    assert_eq!(state(&snapshot, 0), (NO_LEADER, 1, vec![1]));
    let topic = snapshot.topics.get_mut("t").unwrap();
    let enabled = [("unclean.leader.election.enable", "true")];
    topic.set_configs(
        enabled
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    assert_eq!(elect_unclean_where_enabled(topic, &live), 1);
    assert_eq!(state(&snapshot, 0), (2, 2, vec![2]));
    assert_eq!(
        state(&snapshot, 1),
        (3, 0, vec![3, 2]),
        "a led partition keeps its leader"
    );
}
