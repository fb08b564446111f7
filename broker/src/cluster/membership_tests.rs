use std::collections::BTreeMap;

use super::*;
use crate::cluster::metadata::{TopicMeta, NO_LEADER};

fn registration(id: i32, incarnation: u64, rack: Option<&str>) -> BrokerRegistration {
    BrokerRegistration {
        id,
        incarnation,
        host: format!("10.0.0.{id}"),
        port: 9092,
        rack: rack.map(str::to_string),
        fenced: false,
        shutting_down: false,
    }
}

/// Every partition starts with its whole replica list in sync, led by its first replica.
fn assignment(replicas: &[i32]) -> PartitionAssignment {
    PartitionAssignment::new(replicas.to_vec())
}

fn snapshot(brokers: &[(i32, Option<&str>)], partitions: &[&[i32]]) -> MetadataSnapshot {
    let mut snapshot = crate::cluster::controller::command::empty_snapshot();
    for (id, rack) in brokers {
        register(&mut snapshot, registration(*id, 1, *rack));
    }
    let assignments = partitions
        .iter()
        .map(|replicas| assignment(replicas))
        .collect();
    let topic = TopicMeta::new(
        "t".to_string(),
        uuid::Uuid::from_u128(7),
        assignments,
        BTreeMap::new(),
    );
    snapshot.topics.insert("t".to_string(), topic);
    snapshot
}

fn partition(snapshot: &MetadataSnapshot, partition: usize) -> &PartitionAssignment {
    &snapshot.topics["t"].assignments()[partition]
}

/// (leader, leader epoch, ISR) of a partition.
fn state(snapshot: &MetadataSnapshot, at: usize) -> (i32, i32, Vec<i32>) {
    let assignment = partition(snapshot, at);
    (
        assignment.leader,
        assignment.leader_epoch,
        assignment.isr.clone(),
    )
}

#[test]
fn register_replaces_an_earlier_registration_and_leaves_it_unfenced() {
    let mut snapshot = snapshot(&[(1, None), (2, None)], &[&[1, 2]]);
    fence(&mut snapshot, 1, 1).unwrap();
    assert!(snapshot.brokers[&1].fenced);
    let mut again = registration(1, 2, Some("rack-b"));
    again.host = "other-host".to_string();
    again.fenced = true;
    register(&mut snapshot, again);
    assert_eq!(snapshot.brokers.len(), 2);
    let broker = &snapshot.brokers[&1];
    assert_eq!(
        (
            broker.incarnation,
            broker.host.as_str(),
            broker.rack.as_deref()
        ),
        (2, "other-host", Some("rack-b"))
    );
    assert!(!broker.fenced, "a registration is always unfenced");
    // Broker 2 took over and broker 1 left the ISR: registering gives it nothing back.
    assert_eq!(state(&snapshot, 0), (2, 1, vec![2]));
}

#[test]
fn fencing_one_of_three_brokers_moves_only_its_leaderships() {
    let mut snapshot = snapshot(
        &[(1, None), (2, None), (3, None)],
        &[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]],
    );
    fence(&mut snapshot, 1, 1).unwrap();
    assert!(snapshot.brokers[&1].fenced);
    assert_eq!(state(&snapshot, 0), (2, 1, vec![2, 3]));
    assert_eq!(
        state(&snapshot, 1),
        (2, 0, vec![2, 3]),
        "not led by 1: epoch kept"
    );
    assert_eq!(state(&snapshot, 2), (3, 0, vec![3, 2]));
    assert_eq!(
        snapshot.live_brokers().map(|b| b.id).collect::<Vec<_>>(),
        vec![2, 3]
    );

    fence(&mut snapshot, 2, 1).unwrap();
    assert_eq!(state(&snapshot, 0), (3, 2, vec![3]));
    assert_eq!(state(&snapshot, 1), (3, 1, vec![3]));
    assert_eq!(state(&snapshot, 2), (3, 0, vec![3]));

    // The last live broker: every partition goes offline, and it stays the ISR's last member.
    fence(&mut snapshot, 3, 1).unwrap();
    assert_eq!(state(&snapshot, 0), (NO_LEADER, 3, vec![3]));
    assert_eq!(state(&snapshot, 1), (NO_LEADER, 2, vec![3]));
    assert_eq!(state(&snapshot, 2), (NO_LEADER, 1, vec![3]));

    // Broker 1 is no longer in any ISR: unfencing it leads nothing; broker 3 leads all again.
    unfence(&mut snapshot, 1, 1).unwrap();
    assert_eq!(state(&snapshot, 0), (NO_LEADER, 3, vec![3]));
    unfence(&mut snapshot, 3, 1).unwrap();
    assert_eq!(state(&snapshot, 0), (3, 4, vec![3]));
    assert_eq!(state(&snapshot, 1), (3, 3, vec![3]));
    assert_eq!(state(&snapshot, 2), (3, 2, vec![3]));
    assert_eq!(partition(&snapshot, 0).replicas, vec![1, 2, 3]);
}

#[test]
fn with_one_replica_a_fenced_leader_takes_its_partition_offline_until_unfenced() {
    let mut snapshot = snapshot(&[(1, None), (2, None)], &[&[1], &[2]]);
    fence(&mut snapshot, 1, 1).unwrap();
    assert_eq!(state(&snapshot, 0), (NO_LEADER, 1, vec![1]));
    assert_eq!(state(&snapshot, 1), (2, 0, vec![2]));
    unfence(&mut snapshot, 1, 1).unwrap();
    assert!(!snapshot.brokers[&1].fenced);
    assert_eq!(state(&snapshot, 0), (1, 2, vec![1]));
    assert_eq!(state(&snapshot, 1), (2, 0, vec![2]));
}

#[test]
fn a_restarted_broker_registering_anew_leads_its_offline_partitions_again() {
    let mut snapshot = snapshot(&[(1, None)], &[&[1], &[1]]);
    fence(&mut snapshot, 1, 1).unwrap();
    assert_eq!(state(&snapshot, 1), (NO_LEADER, 1, vec![1]));
    register(&mut snapshot, registration(1, 2, None));
    assert_eq!(state(&snapshot, 0), (1, 2, vec![1]));
    assert_eq!(state(&snapshot, 1), (1, 2, vec![1]));
}

#[test]
fn the_new_leader_is_the_first_live_isr_replica_in_replica_order_whatever_the_racks() {
    // Racks alternate along the replica list, as rack-aware placement lays them out.
    let brokers = [
        (1, Some("a")),
        (2, Some("b")),
        (3, Some("a")),
        (4, Some("b")),
    ];
    let mut snapshot = snapshot(&brokers, &[&[1, 4, 3], &[1, 2, 3]]);
    // Broker 2 is fenced first: it leaves the ISR of partition 1.
    fence(&mut snapshot, 2, 1).unwrap();
    assert_eq!(state(&snapshot, 1), (1, 0, vec![1, 3]));
    fence(&mut snapshot, 1, 1).unwrap();
    assert_eq!(
        state(&snapshot, 0),
        (4, 1, vec![4, 3]),
        "replica order, not id order"
    );
    assert_eq!(
        state(&snapshot, 1),
        (3, 1, vec![3]),
        "skips the fenced replica"
    );
    assert_eq!(snapshot.brokers[&4].rack.as_deref(), Some("b"));
}

#[test]
fn an_isr_replica_that_never_registered_is_not_live() {
    let mut snapshot = snapshot(&[(1, None)], &[&[1, 2]]);
    fence(&mut snapshot, 1, 1).unwrap();
    assert_eq!(state(&snapshot, 0), (NO_LEADER, 1, vec![2]));
    register(&mut snapshot, registration(2, 1, None));
    assert_eq!(state(&snapshot, 0), (2, 2, vec![2]));
}

#[test]
fn edits_about_an_unknown_broker_or_an_earlier_incarnation_change_nothing() {
    let mut snapshot = snapshot(&[(1, None), (2, None)], &[&[1, 2]]);
    register(&mut snapshot, registration(1, 5, None));
    let before = snapshot.clone();
    assert_eq!(
        fence(&mut snapshot, 1, 1),
        Err(MembershipError::StaleIncarnation {
            id: 1,
            incarnation: 1
        })
    );
    assert_eq!(
        unfence(&mut snapshot, 3, 1),
        Err(MembershipError::UnknownBroker(3))
    );
    assert_eq!(snapshot, before);
    // Fencing twice, or unfencing a live broker, is a no-op.
    fence(&mut snapshot, 2, 1).unwrap();
    let fenced = snapshot.clone();
    fence(&mut snapshot, 2, 1).unwrap();
    assert_eq!(snapshot, fenced);
    unfence(&mut snapshot, 1, 5).unwrap();
    assert_eq!(snapshot, fenced);
}

#[test]
fn a_controlled_shutdown_moves_leaderships_preferred_first_and_leaves_the_isrs() {
    let mut snapshot = snapshot(
        &[(1, None), (2, None), (3, None)],
        &[&[2, 1, 3], &[1, 3, 2], &[3, 2, 1], &[1]],
    );
    // Partition 0 is led by 1 after an earlier failover: its preferred replica 2 takes it back.
    let moved = snapshot
        .topics
        .get_mut("t")
        .unwrap()
        .assignment_mut(0)
        .unwrap();
    set_leader(moved, 1);
    shut_down(&mut snapshot, 1, 1).unwrap();
    let broker = &snapshot.brokers[&1];
    assert!(broker.fenced && broker.shutting_down);
    assert_eq!(state(&snapshot, 0), (2, 2, vec![2, 3]));
    assert_eq!(state(&snapshot, 1), (3, 1, vec![3, 2]));
    assert_eq!(
        state(&snapshot, 2),
        (3, 0, vec![3, 2]),
        "not led by 1: epoch kept"
    );
    // Its only in-sync replica stops: offline, never an unclean leader.
    assert_eq!(state(&snapshot, 3), (NO_LEADER, 1, vec![1]));
    // Heard or not, a broker shutting down is not unfenced; it comes back by registering.
    unfence(&mut snapshot, 1, 1).unwrap();
    assert!(snapshot.brokers[&1].fenced);
    register(&mut snapshot, registration(1, 2, None));
    assert!(!snapshot.brokers[&1].fenced && !snapshot.brokers[&1].shutting_down);
    assert_eq!(state(&snapshot, 3), (1, 2, vec![1]));
}

#[test]
fn a_controlled_shutdown_of_an_earlier_incarnation_or_a_fenced_broker() {
    let mut snapshot = snapshot(&[(1, None), (2, None)], &[&[1, 2]]);
    assert_eq!(
        shut_down(&mut snapshot, 1, 9),
        Err(MembershipError::StaleIncarnation {
            id: 1,
            incarnation: 9
        })
    );
    assert!(!snapshot.brokers[&1].shutting_down);
    fence(&mut snapshot, 1, 1).unwrap();
    let fenced = state(&snapshot, 0);
    shut_down(&mut snapshot, 1, 1).unwrap();
    assert!(snapshot.brokers[&1].shutting_down);
    assert_eq!(
        state(&snapshot, 0),
        fenced,
        "a fenced broker leads nothing already"
    );
}
