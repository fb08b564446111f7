use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use super::ReassignmentRequest;
use crate::cluster::controller::command::{apply, empty_snapshot, MetadataCommand};
use crate::cluster::metadata::{
    BrokerRegistration, MetadataSnapshot, PartitionAssignment, TopicMeta, NO_LEADER,
};

const TOPIC_ID: uuid::Uuid = uuid::Uuid::from_u128(7);

/// Brokers 1 to 5, 5 fenced; topic `t` with one partition on {1, 2, 3}, led by 1 at epoch 4,
/// all in sync.
fn snapshot() -> MetadataSnapshot {
    let mut snapshot = empty_snapshot();
    snapshot.version = 10;
    for id in 1..=5 {
        let registration = BrokerRegistration {
            id,
            incarnation: 1,
            host: format!("b{id}"),
            port: 9092,
            rack: None,
            fenced: id == 5,
            shutting_down: false,
        };
        snapshot.brokers.insert(id, registration);
    }
    let mut assignment = PartitionAssignment::new(vec![1, 2, 3]);
    assignment.leader_epoch = 4;
    let topic = TopicMeta::new("t".into(), TOPIC_ID, vec![assignment], BTreeMap::new());
    snapshot.topics.insert("t".into(), topic);
    snapshot
}

fn reassign(partition: i32, replicas: Option<&[i32]>) -> MetadataCommand {
    MetadataCommand::AlterReassignments {
        requests: vec![ReassignmentRequest {
            topic: "t".into(),
            partition,
            replicas: replicas.map(<[i32]>::to_vec),
        }],
    }
}

fn change_isr(snapshot: &MetadataSnapshot, isr: &[i32]) -> MetadataCommand {
    let assignment = snapshot.assignment("t", 0).unwrap();
    MetadataCommand::ChangeIsr {
        topic: "t".into(),
        topic_id: TOPIC_ID,
        partition: 0,
        leader: assignment.leader,
        leader_epoch: assignment.leader_epoch,
        isr: isr.to_vec(),
    }
}

/// Applies the leader's ISR change to `isr`; the refusal's code, if refused.
fn isr(snapshot: &mut MetadataSnapshot, isr: &[i32]) -> Option<ResponseError> {
    let command = change_isr(snapshot, isr);
    run(snapshot, command)
}

/// Applies `command` at the next index; the refusal's code, if refused.
fn run(snapshot: &mut MetadataSnapshot, command: MetadataCommand) -> Option<ResponseError> {
    let index = snapshot.version + 1;
    let (_, result) = apply(snapshot, index, command).pop().unwrap();
    result.err().map(|(code, _)| code)
}

fn partition(snapshot: &MetadataSnapshot) -> &PartitionAssignment {
    snapshot.assignment("t", 0).unwrap()
}

#[test]
fn a_reassignment_adds_then_completes_when_the_isr_holds_the_target() {
    let mut snapshot = snapshot();
    assert_eq!(run(&mut snapshot, reassign(0, Some(&[2, 3, 4]))), None);
    let p = partition(&snapshot);
    assert_eq!(p.replicas, vec![2, 3, 4, 1]);
    assert_eq!((p.adding.clone(), p.removing.clone()), (vec![4], vec![1]));
    assert_eq!(
        (p.leader, p.leader_epoch, p.isr.clone()),
        (1, 4, vec![1, 2, 3])
    );
    // An ISR change without the added replica completes nothing.
    assert_eq!(isr(&mut snapshot, &[1, 2]), None);
    assert!(partition(&snapshot).is_reassigning());
    assert_eq!(isr(&mut snapshot, &[1, 2, 4]), None);
    assert!(
        partition(&snapshot).is_reassigning(),
        "3 is a target out of the ISR"
    );
    // The change that brings the last target replica in completes it; the leader, removed,
    // hands over to the first target replica in the ISR, at the next epoch.
    assert_eq!(isr(&mut snapshot, &[1, 2, 3, 4]), None);
    let p = partition(&snapshot);
    assert!(!p.is_reassigning());
    assert_eq!(p.replicas, vec![2, 3, 4]);
    assert_eq!(p.isr, vec![2, 3, 4]);
    assert_eq!((p.leader, p.leader_epoch), (2, 5));
}

#[test]
fn a_leader_kept_by_the_target_keeps_its_epoch() {
    let mut snapshot = snapshot();
    assert_eq!(run(&mut snapshot, reassign(0, Some(&[4, 1]))), None);
    assert_eq!(partition(&snapshot).replicas, vec![4, 1, 2, 3]);
    assert_eq!(isr(&mut snapshot, &[1, 2, 3, 4]), None);
    let p = partition(&snapshot);
    assert_eq!(
        (p.replicas.clone(), p.isr.clone()),
        (vec![4, 1], vec![1, 4])
    );
    assert_eq!((p.leader, p.leader_epoch), (1, 4));
}

#[test]
fn a_target_already_in_sync_completes_at_once() {
    let mut snapshot = snapshot();
    assert_eq!(run(&mut snapshot, reassign(0, Some(&[3, 2]))), None);
    let p = partition(&snapshot);
    assert!(!p.is_reassigning());
    assert_eq!(
        (p.replicas.clone(), p.isr.clone()),
        (vec![3, 2], vec![2, 3])
    );
    assert_eq!((p.leader, p.leader_epoch), (3, 5));
}

#[test]
fn cancelling_reverts_to_the_original_replicas() {
    let mut snapshot = snapshot();
    assert_eq!(
        run(&mut snapshot, reassign(0, None)),
        Some(ResponseError::NoReassignmentInProgress)
    );
    assert_eq!(run(&mut snapshot, reassign(0, Some(&[4, 2, 3]))), None);
    // 4 joins the ISR and leads (an election), 2 is still a target out of it.
    assert_eq!(isr(&mut snapshot, &[1, 3, 4]), None);
    let assignment = snapshot
        .topics
        .get_mut("t")
        .unwrap()
        .assignment_mut(0)
        .unwrap();
    crate::cluster::membership::set_leader(assignment, 4);
    assert_eq!(run(&mut snapshot, reassign(0, None)), None);
    let p = partition(&snapshot);
    assert!(!p.is_reassigning());
    assert_eq!(
        (p.replicas.clone(), p.isr.clone()),
        (vec![2, 3, 1], vec![1, 3])
    );
    // The added leader left: the first original replica in the ISR leads.
    assert_eq!((p.leader, p.leader_epoch), (3, 6));
    assert_eq!(
        run(&mut snapshot, reassign(0, None)),
        Some(ResponseError::NoReassignmentInProgress)
    );
}

#[test]
fn a_new_target_replaces_one_in_progress() {
    let mut snapshot = snapshot();
    assert_eq!(run(&mut snapshot, reassign(0, Some(&[2, 3, 4]))), None);
    assert_eq!(run(&mut snapshot, reassign(0, Some(&[1, 2, 3]))), None);
    let p = partition(&snapshot);
    // 4 was added by the first, so the second removes it; the ISR holds the target: done.
    assert!(!p.is_reassigning());
    assert_eq!((p.replicas.clone(), p.leader), (vec![1, 2, 3], 1));
}

#[test]
fn bad_targets_and_partitions_are_refused() {
    let mut snapshot = snapshot();
    let before = snapshot.clone();
    for target in [&[][..], &[2, 2], &[2, 6], &[2, 5]] {
        assert_eq!(
            run(&mut snapshot, reassign(0, Some(target))),
            Some(ResponseError::InvalidReplicaAssignment),
            "{target:?}"
        );
    }
    assert_eq!(
        run(&mut snapshot, reassign(1, Some(&[1]))),
        Some(ResponseError::UnknownTopicOrPartition)
    );
    snapshot.version = before.version;
    assert_eq!(snapshot, before);
}

#[test]
fn a_cancel_that_would_leave_no_replica_in_sync_is_refused() {
    let mut snapshot = snapshot();
    assert_eq!(run(&mut snapshot, reassign(0, Some(&[4, 1]))), None);
    let assignment = snapshot
        .topics
        .get_mut("t")
        .unwrap()
        .assignment_mut(0)
        .unwrap();
    assignment.isr = vec![4];
    assignment.leader = NO_LEADER;
    assert_eq!(
        run(&mut snapshot, reassign(0, None)),
        Some(ResponseError::InvalidReplicaAssignment)
    );
}
