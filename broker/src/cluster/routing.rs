//! Which broker serves a request: the leader of a partition for the data path, the leader of a
//! group's `__consumer_offsets` partition for group coordination. Pure functions of the snapshot,
//! so that a handler decides before it sends anything to a shard, and tests need no broker.
//!
//! Invariant: a broker serves Produce, consumer Fetch, ListOffsets and DeleteRecords only for
//! partitions whose leader it is in the snapshot it holds (a consumer's Fetch v11+ also for the
//! partitions it is a follower of, KIP-392), and group requests only for groups it
//! coordinates; everything else is refused with the error that sends the client to Metadata or
//! FindCoordinator again.

use kafka_protocol::error::ResponseError;

use crate::cluster::metadata::{MetadataSnapshot, NO_LEADER, OFFSETS_TOPIC};

/// Why a partition request is not served here, with the leader hint that Fetch v12+ (and
/// Produce v10+) carry: the current leader (-1 if none) and its epoch (-1 if unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotHere {
    pub error: ResponseError,
    pub leader_id: i32,
    pub leader_epoch: i32,
}

/// Whether broker `node` serves partition `partition` of `topic` as its leader: Ok if it does;
/// UNKNOWN_TOPIC_OR_PARTITION for a partition the snapshot does not list; else
/// NOT_LEADER_OR_FOLLOWER with the current leader and epoch (leader -1 when it has none).
pub fn leader_route(
    snapshot: &MetadataSnapshot,
    topic: &str,
    partition: i32,
    node: i32,
) -> Result<(), NotHere> {
    let Some(assignment) = snapshot.assignment(topic, partition) else {
        return Err(NotHere {
            error: ResponseError::UnknownTopicOrPartition,
            leader_id: NO_LEADER,
            leader_epoch: -1,
        });
    };
    if assignment.leader() == Some(node) {
        return Ok(());
    }
    Err(NotHere {
        error: ResponseError::NotLeaderOrFollower,
        leader_id: assignment.leader,
        leader_epoch: assignment.leader_epoch,
    })
}

/// Whether broker `node` serves a consumer's fetch of `partition` that any replica may answer
/// (Fetch v11+, KIP-392; a follower reads up to its own high watermark): Ok if `node` is one of
/// the partition's replicas, leader or not; else as [`leader_route`].
pub fn replica_route(
    snapshot: &MetadataSnapshot,
    topic: &str,
    partition: i32,
    node: i32,
) -> Result<(), NotHere> {
    let routed = leader_route(snapshot, topic, partition, node);
    let is_replica = (snapshot.assignment(topic, partition))
        .is_some_and(|assignment| assignment.replicas.contains(&node));
    match routed {
        Err(not_here) if not_here.error == ResponseError::NotLeaderOrFollower && is_replica => {
            Ok(())
        }
        routed => routed,
    }
}

/// The broker coordinating the groups stored in partition `offsets_partition` of
/// `__consumer_offsets`: that partition's leader. COORDINATOR_NOT_AVAILABLE while the topic
/// does not exist, the partition has no leader, or the leader is not live.
pub fn coordinator_of(
    snapshot: &MetadataSnapshot,
    offsets_partition: i32,
) -> Result<i32, ResponseError> {
    (snapshot.leader_of(OFFSETS_TOPIC, offsets_partition))
        .filter(|leader| snapshot.is_live(*leader))
        .ok_or(ResponseError::CoordinatorNotAvailable)
}

/// Whether broker `node` coordinates the groups of `offsets_partition`: Ok if it does,
/// NOT_COORDINATOR if another broker does, COORDINATOR_NOT_AVAILABLE if none does.
pub fn coordinator_route(
    snapshot: &MetadataSnapshot,
    offsets_partition: i32,
    node: i32,
) -> Result<(), ResponseError> {
    match coordinator_of(snapshot, offsets_partition)? {
        coordinator if coordinator == node => Ok(()),
        _ => Err(ResponseError::NotCoordinator),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::metadata::{BrokerRegistration, PartitionAssignment, TopicMeta};

    fn broker(id: i32, fenced: bool) -> BrokerRegistration {
        BrokerRegistration {
            id,
            incarnation: 1,
            host: format!("b{id}"),
            port: 9092,
            rack: None,
            fenced,
            shutting_down: false,
        }
    }

    /// Brokers 1 and 2 live, 3 fenced; topic `t` with partition 0 led by 1, partition 1 led by 2
    /// at epoch 4, partition 2 leaderless; `__consumer_offsets` with partition 0 led by 1,
    /// partition 1 led by fenced 3, partition 2 leaderless.
    fn snapshot() -> MetadataSnapshot {
        let mut moved = PartitionAssignment::new(vec![1, 2]);
        moved.leader = 2;
        moved.leader_epoch = 4;
        let mut offline = PartitionAssignment::new(vec![3]);
        offline.leader = NO_LEADER;
        offline.leader_epoch = 1;
        let topic = TopicMeta::new(
            "t".into(),
            uuid::Uuid::from_u128(1),
            vec![PartitionAssignment::new(vec![1, 2]), moved, offline.clone()],
            BTreeMap::new(),
        );
        let offsets = TopicMeta::new(
            OFFSETS_TOPIC.into(),
            uuid::Uuid::from_u128(2),
            vec![
                PartitionAssignment::new(vec![1]),
                PartitionAssignment::new(vec![3]),
                offline,
            ],
            BTreeMap::new(),
        );
        MetadataSnapshot {
            version: 1,
            cluster_id: "c".into(),
            topics: BTreeMap::from([("t".into(), topic), (OFFSETS_TOPIC.into(), offsets)]),
            brokers: BTreeMap::from([
                (1, broker(1, false)),
                (2, broker(2, false)),
                (3, broker(3, true)),
            ]),
            broker_configs: BTreeMap::new(),
            broker_default_configs: BTreeMap::new(),
            producer_ids_end: 0,
        }
    }

    #[test]
    fn only_the_leader_serves_a_partition() {
        let snapshot = snapshot();
        assert_eq!(leader_route(&snapshot, "t", 0, 1), Ok(()));
        let not_leader = |leader_id, leader_epoch| NotHere {
            error: ResponseError::NotLeaderOrFollower,
            leader_id,
            leader_epoch,
        };
        assert_eq!(leader_route(&snapshot, "t", 0, 2), Err(not_leader(1, 0)));
        assert_eq!(leader_route(&snapshot, "t", 1, 1), Err(not_leader(2, 4)));
        assert_eq!(leader_route(&snapshot, "t", 1, 2), Ok(()));
        // A partition without a leader is served by nobody, its former replicas included.
        assert_eq!(
            leader_route(&snapshot, "t", 2, 3),
            Err(not_leader(NO_LEADER, 1))
        );
        assert_eq!(
            leader_route(&snapshot, "t", 2, NO_LEADER),
            Err(not_leader(NO_LEADER, 1))
        );
        for (topic, partition) in [("t", 3), ("t", -1), ("u", 0)] {
            let refused = leader_route(&snapshot, topic, partition, 1).unwrap_err();
            assert_eq!(refused.error, ResponseError::UnknownTopicOrPartition);
        }
    }

    #[test]
    fn any_replica_serves_a_consumer_that_may_read_from_followers() {
        let snapshot = snapshot();
        for (partition, node) in [(0, 1), (0, 2), (1, 1), (1, 2), (2, 3)] {
            assert_eq!(replica_route(&snapshot, "t", partition, node), Ok(()));
        }
        // Not a replica: sent to the leader, as without KIP-392.
        assert_eq!(
            replica_route(&snapshot, "t", 0, 3),
            leader_route(&snapshot, "t", 0, 3)
        );
        let unknown = replica_route(&snapshot, "t", 3, 1).unwrap_err();
        assert_eq!(unknown.error, ResponseError::UnknownTopicOrPartition);
    }

    #[test]
    fn the_offsets_partition_leader_coordinates() {
        let snapshot = snapshot();
        assert_eq!(coordinator_of(&snapshot, 0), Ok(1));
        assert_eq!(coordinator_route(&snapshot, 0, 1), Ok(()));
        assert_eq!(
            coordinator_route(&snapshot, 0, 2),
            Err(ResponseError::NotCoordinator)
        );
        // Led by a fenced broker, leaderless, or beyond the topic: nobody coordinates.
        for partition in [1, 2, 50] {
            assert_eq!(
                coordinator_route(&snapshot, partition, 1),
                Err(ResponseError::CoordinatorNotAvailable)
            );
        }
        let mut without = snapshot.clone();
        without.topics.remove(OFFSETS_TOPIC);
        assert_eq!(
            coordinator_of(&without, 0),
            Err(ResponseError::CoordinatorNotAvailable)
        );
    }
}
