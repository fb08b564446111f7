use std::collections::BTreeMap;

use super::*;
use crate::cluster::controller::command::empty_snapshot;
use crate::cluster::metadata::{PartitionAssignment, TopicMeta};

/// `PartitionAssignment` as it was before reassignments: its archive must not change.
#[derive(rkyv::Archive, rkyv::Serialize)]
struct OldAssignment {
    replicas: Vec<i32>,
    isr: Vec<i32>,
    leader: i32,
    leader_epoch: i32,
}

fn snapshot(reassigning: bool) -> MetadataSnapshot {
    let mut snapshot = empty_snapshot();
    snapshot.version = 3;
    snapshot.cluster_id = "c".into();
    snapshot.producer_ids_end = 1000;
    let mut moving = PartitionAssignment::new(vec![2, 3, 4, 1]);
    if reassigning {
        moving.adding = vec![4];
        moving.removing = vec![1];
    }
    let assignments = vec![PartitionAssignment::new(vec![1, 2]), moving];
    let id = uuid::Uuid::from_u128(9);
    let topic = TopicMeta::new("t".into(), id, assignments, BTreeMap::new());
    snapshot.topics.insert("t".into(), topic);
    snapshot
}

#[test]
fn an_assignment_archives_as_before_reassignments() {
    let mut new = PartitionAssignment::new(vec![2, 3, 4, 1]);
    new.adding = vec![4];
    new.removing = vec![1];
    let old = OldAssignment {
        replicas: vec![2, 3, 4, 1],
        isr: vec![2, 3, 4, 1],
        leader: 2,
        leader_epoch: 0,
    };
    assert_eq!(to_bytes(&new), to_bytes(&old));
}

#[test]
fn a_snapshot_without_reassignments_encodes_as_before_and_old_bytes_decode() {
    let plain = snapshot(false);
    let old_bytes = to_bytes(&plain);
    assert_eq!(encode_snapshot(&plain), old_bytes);
    assert_eq!(decode_snapshot(&old_bytes).unwrap(), plain);
}

#[test]
fn reassignments_travel_in_the_trailing_section() {
    let moving = snapshot(true);
    let bytes = encode_snapshot(&moving);
    assert!(bytes.ends_with(&TRAILER_MAGIC));
    let decoded = decode_snapshot(&bytes).unwrap();
    assert_eq!(decoded, moving);
    assert_eq!(decoded.assignment("t", 1).unwrap().adding, vec![4]);
    // A section that names no partition, or lists a non-replica, does not decode.
    let mut wrong = moving.clone();
    wrong
        .topics
        .get_mut("t")
        .unwrap()
        .assignment_mut(1)
        .unwrap()
        .adding = vec![9];
    assert!(decode_snapshot(&encode_snapshot(&wrong)).is_err());
    // Cut or damaged bytes are errors, never panics.
    for cut in [1, 8, 16, 17, bytes.len() / 2] {
        let _ = decode_snapshot(&bytes[..bytes.len() - cut]);
    }
    let mut long = bytes.clone();
    let at = long.len() - TRAILER_BYTES;
    long[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(decode_snapshot(&long).is_err());
}
