use std::collections::BTreeMap;

use super::*;
use crate::cluster::controller::command::{apply, empty_snapshot, MetadataCommand};
use crate::cluster::metadata::{BrokerRegistration, PartitionAssignment, TopicMeta};

const TOPIC_ID: uuid::Uuid = uuid::Uuid::from_u128(7);

/// Brokers 1, 2 and 3, 3 fenced; topic `t` on {1, 2, 3} led by 1 at epoch 4 with the ISR {1}.
fn snapshot() -> MetadataSnapshot {
    let mut snapshot = empty_snapshot();
    snapshot.version = 10;
    for id in 1..=3 {
        let registration = BrokerRegistration {
            id,
            incarnation: 1,
            host: format!("b{id}"),
            port: 9092,
            rack: None,
            fenced: id == 3,
            shutting_down: false,
        };
        snapshot.brokers.insert(id, registration);
    }
    let mut assignment = PartitionAssignment::new(vec![1, 2, 3]);
    assignment.isr = vec![1];
    assignment.leader_epoch = 4;
    let topic = TopicMeta::new("t".into(), TOPIC_ID, vec![assignment], BTreeMap::new());
    snapshot.topics.insert("t".into(), topic);
    snapshot
}

fn change(topic_id: uuid::Uuid, leader: i32, leader_epoch: i32, isr: &[i32]) -> MetadataCommand {
    MetadataCommand::ChangeIsr {
        topic: "t".into(),
        topic_id,
        partition: 0,
        leader,
        leader_epoch,
        isr: isr.to_vec(),
    }
}

/// Applies `command` to [`snapshot`]: its error code, if refused, and the ISR afterwards.
fn run(command: MetadataCommand) -> (Option<ResponseError>, Vec<i32>) {
    let mut snapshot = snapshot();
    let (_, result) = apply(&mut snapshot, 11, command).pop().unwrap();
    let isr = snapshot.assignment("t", 0).unwrap().isr.clone();
    (result.err().map(|(code, _)| code), isr)
}

#[test]
fn the_leader_at_its_epoch_changes_the_isr() {
    assert_eq!(run(change(TOPIC_ID, 1, 4, &[1, 2])), (None, vec![1, 2]));
    // Shrinking may drop a fenced broker; the leader stays.
    let mut snapshot = snapshot();
    apply(&mut snapshot, 11, change(TOPIC_ID, 1, 4, &[1, 2]));
    let (_, result) = apply(&mut snapshot, 12, change(TOPIC_ID, 1, 4, &[1]))
        .pop()
        .unwrap();
    assert!(result.is_ok());
    assert_eq!(snapshot.assignment("t", 0).unwrap().isr, vec![1]);
    assert_eq!(snapshot.version, 12);
}

#[test]
fn a_stale_or_foreign_proposal_is_refused() {
    let other_id = uuid::Uuid::from_u128(8);
    let refused = |command, code| assert_eq!(run(command), (Some(code), vec![1]));
    refused(
        change(other_id, 1, 4, &[1, 2]),
        ResponseError::UnknownTopicOrPartition,
    );
    refused(
        change(TOPIC_ID, 2, 4, &[1, 2]),
        ResponseError::NotLeaderOrFollower,
    );
    refused(
        change(TOPIC_ID, 1, 3, &[1, 2]),
        ResponseError::FencedLeaderEpoch,
    );
    refused(
        change(TOPIC_ID, 1, 5, &[1, 2]),
        ResponseError::FencedLeaderEpoch,
    );
    let mut missing = change(TOPIC_ID, 1, 4, &[1, 2]);
    if let MetadataCommand::ChangeIsr { partition, .. } = &mut missing {
        *partition = 1;
    }
    refused(missing, ResponseError::UnknownTopicOrPartition);
}

#[test]
fn the_isr_stays_a_set_of_replicas_with_the_leader_and_live_additions() {
    let refused =
        |isr: &[i32], code| assert_eq!(run(change(TOPIC_ID, 1, 4, isr)), (Some(code), vec![1]));
    refused(&[2], ResponseError::InvalidRequest);
    refused(&[], ResponseError::InvalidRequest);
    refused(&[1, 2, 2], ResponseError::InvalidRequest);
    refused(&[1, 4], ResponseError::InvalidRequest);
    refused(&[1, 3], ResponseError::IneligibleReplica);
}
