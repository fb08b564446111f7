//! Where each partition lives: on which brokers (replica placement, Kafka's rack-alternating
//! round robin) and, inside a broker, on which shard (`shard_for`).
//!
//! Invariant: both are pure functions of their arguments, so every node that applies the same
//! metadata command computes the same assignment.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use crate::cluster::metadata::{BrokerRegistration, MetadataSnapshot, PartitionAssignment};

/// A broker placement may use: its id and rack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
}

impl Candidate {
    pub fn of(broker: &BrokerRegistration) -> Candidate {
        Candidate {
            id: broker.id,
            rack: broker.rack.clone(),
        }
    }
}

/// What placement refuses, with the Kafka error it is reported as.
pub type PlacementError = (ResponseError, String);

/// Replica lists for partitions `first_partition..first_partition + count` (preferred leader
/// first), placed on `brokers` with Kafka's algorithm (`AdminUtils.assignReplicasToBrokers`):
/// the first replica of consecutive partitions walks the broker list from `start`, the others
/// follow at a shift that grows by one each time the walk wraps, so replicas and leaders are
/// spread evenly. When every broker has a rack, the list alternates racks and each partition's
/// replicas sit on distinct racks as far as there are racks. `start` is any number (reduced
/// modulo the broker count); the caller derives it from the command so that every node agrees.
pub fn assign_replicas(
    brokers: &[Candidate],
    first_partition: i32,
    count: i32,
    replication_factor: i16,
    start: u64,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    assert!(first_partition >= 0 && count >= 0);
    let rf = usize::try_from(replication_factor).unwrap_or(0);
    if rf == 0 || rf > brokers.len() {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {replication_factor} must be 1 to the {} live broker{}",
                brokers.len(),
                if brokers.len() == 1 { "" } else { "s" }
            ),
        ));
    }
    let arranged = rack_alternated(brokers);
    let racks = rack_count(&arranged);
    let n = arranged.len();
    let start = (start % n as u64) as usize;
    let mut shift = start;
    let mut assignments = Vec::with_capacity(count as usize);
    for partition in first_partition..first_partition + count {
        let partition = partition as usize;
        if partition > 0 && partition.is_multiple_of(n) {
            shift += 1;
        }
        let first = (partition + start) % n;
        let replicas = match racks {
            Some(racks) => rack_aware_replicas(&arranged, first, shift, rf, racks),
            None => (0..rf)
                .map(|j| {
                    let index = if j == 0 {
                        first
                    } else {
                        replica_index(first, shift, j - 1, n)
                    };
                    arranged[index].id
                })
                .collect(),
        };
        assignments.push(replicas);
    }
    Ok(assignments)
}

/// Replicas of one partition placed rack-aware: walking from the first replica at the partition's
/// shift, a broker is taken if its rack holds no replica yet (or every rack does) and it holds
/// none itself (or every broker does).
fn rack_aware_replicas(
    arranged: &[Candidate],
    first: usize,
    shift: usize,
    rf: usize,
    racks: usize,
) -> Vec<i32> {
    let n = arranged.len();
    let mut replicas = vec![arranged[first].id];
    let mut racks_used = vec![arranged[first].rack.as_deref()];
    let mut k = 0;
    while replicas.len() < rf {
        let broker = &arranged[replica_index(first, shift * racks, k, n)];
        k += 1;
        let rack_free = !racks_used.contains(&broker.rack.as_deref()) || racks_used.len() == racks;
        let broker_free = !replicas.contains(&broker.id) || replicas.len() == n;
        if rack_free && broker_free {
            replicas.push(broker.id);
            if !racks_used.contains(&broker.rack.as_deref()) {
                racks_used.push(broker.rack.as_deref());
            }
        }
        // Every broker is reached within n steps of a shift, so the walk ends: `rf <= n`.
        assert!(k <= n * n + n, "rack-aware placement did not converge");
    }
    replicas
}

/// Kafka's `replicaIndex`: the broker of replica `j + 1`, `1 + (shift + j) % (n - 1)` after the
/// first, never the first itself.
fn replica_index(first: usize, shift: usize, j: usize, n: usize) -> usize {
    assert!(n > 1);
    let step = 1 + (shift + j) % (n - 1);
    (first + step) % n
}

/// The brokers sorted by id, or, when every broker has a rack, alternating racks (racks in
/// name order, brokers of a rack in id order): rack 1's first, rack 2's first, ..., rack 1's
/// second, and so on.
fn rack_alternated(brokers: &[Candidate]) -> Vec<Candidate> {
    let mut sorted = brokers.to_vec();
    sorted.sort_by_key(|b| b.id);
    sorted.dedup_by_key(|b| b.id);
    if sorted.iter().any(|b| b.rack.is_none()) {
        return sorted;
    }
    let mut by_rack: BTreeMap<&str, std::collections::VecDeque<&Candidate>> = BTreeMap::new();
    for broker in &sorted {
        let rack = broker.rack.as_deref().expect("every broker has a rack");
        by_rack.entry(rack).or_default().push_back(broker);
    }
    let mut arranged = Vec::with_capacity(sorted.len());
    while arranged.len() < sorted.len() {
        for queue in by_rack.values_mut() {
            if let Some(broker) = queue.pop_front() {
                arranged.push(broker.clone());
            }
        }
    }
    arranged
}

/// The number of racks if every broker has one (placement is then rack-aware), else None.
fn rack_count(brokers: &[Candidate]) -> Option<usize> {
    let mut racks = Vec::new();
    for broker in brokers {
        let rack = broker.rack.as_deref()?;
        if !racks.contains(&rack) {
            racks.push(rack);
        }
    }
    Some(racks.len())
}

/// Assignments for new partitions of a topic that has `existing` ones: Kafka's rule for
/// CreatePartitions, the replication factor of partition 0 and a walk that continues from the
/// partitions already placed (starting at partition 0's first replica).
pub fn grow(
    brokers: &[Candidate],
    existing: &[PartitionAssignment],
    new_count: i32,
) -> Result<Vec<PartitionAssignment>, PlacementError> {
    let old = i32::try_from(existing.len()).unwrap_or(i32::MAX);
    let (Some(first), true) = (existing.first(), new_count > old) else {
        return Err((
            ResponseError::InvalidPartitions,
            format!(
                "a topic of {old} partitions cannot grow to {new_count}: it needs at least one \
                 partition, and more after"
            ),
        ));
    };
    let Some(&first_replica) = first.replicas.first() else {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            "partition 0 has no replicas".to_string(),
        ));
    };
    let rf = i16::try_from(first.replicas.len()).unwrap_or(i16::MAX);
    let arranged = rack_alternated(brokers);
    let start = (arranged.iter())
        .position(|b| b.id == first_replica)
        .unwrap_or(0) as u64;
    let lists = assign_replicas(brokers, old, new_count - old, rf, start)?;
    Ok(lists.into_iter().map(PartitionAssignment::new).collect())
}

/// Replication factor of `__consumer_offsets` when enough brokers are live (Kafka's
/// `offsets.topic.replication.factor`); fewer live brokers give it one replica each.
pub const OFFSETS_TOPIC_REPLICATION_FACTOR_MAX: i16 = 3;

/// The live brokers of `snapshot`, as placement candidates.
pub fn live_candidates(snapshot: &MetadataSnapshot) -> Vec<Candidate> {
    snapshot.live_brokers().map(Candidate::of).collect()
}

/// Assignments of a new topic of `partitions` partitions, placed from a start derived from its
/// id.
pub fn new_topic(
    brokers: &[Candidate],
    partitions: i32,
    replication_factor: i16,
    topic_id: uuid::Uuid,
) -> Result<Vec<PartitionAssignment>, PlacementError> {
    let lists = assign_replicas(
        brokers,
        0,
        partitions,
        replication_factor,
        start_for(topic_id),
    )?;
    Ok(lists.into_iter().map(PartitionAssignment::new).collect())
}

/// The replication factor of `__consumer_offsets` with `live` brokers: min(3, live).
pub fn offsets_replication_factor(live: usize) -> i16 {
    i16::try_from(live)
        .unwrap_or(i16::MAX)
        .min(OFFSETS_TOPIC_REPLICATION_FACTOR_MAX)
}

/// A start position for a new topic's placement derived from its id, which the proposer chose,
/// so that topics do not all put their first leader on the same broker.
pub fn start_for(topic_id: uuid::Uuid) -> u64 {
    let (high, low) = topic_id.as_u64_pair();
    high ^ low
}

/// The shard that owns a partition. A pure function of the topic name, the partition and the
/// shard count, so every shard agrees without asking; consecutive partitions of one topic go to
/// consecutive shards.
pub fn shard_for(topic: &str, partition: i32, shard_count: usize) -> usize {
    assert!(shard_count > 0);
    assert!(partition >= 0);
    // FNV-1a: stable across builds and platforms, unlike std's randomly seeded hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash.wrapping_add(partition as u64) % shard_count as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(racks: &[(i32, Option<&str>)]) -> Vec<Candidate> {
        (racks.iter())
            .map(|(id, rack)| Candidate {
                id: *id,
                rack: rack.map(str::to_string),
            })
            .collect()
    }

    fn unracked(ids: std::ops::Range<i32>) -> Vec<Candidate> {
        ids.map(|id| Candidate { id, rack: None }).collect()
    }

    /// How often each broker appears as leader and as replica.
    fn counts(lists: &[Vec<i32>]) -> (BTreeMap<i32, usize>, BTreeMap<i32, usize>) {
        let (mut leaders, mut replicas) = (BTreeMap::new(), BTreeMap::new());
        for list in lists {
            *leaders.entry(list[0]).or_default() += 1;
            for id in list {
                *replicas.entry(*id).or_default() += 1;
            }
        }
        (leaders, replicas)
    }

    /// Kafka's own expectation (AdminUtilsTest.testReplicaAssignment): five brokers, ten
    /// partitions, three replicas, start 0.
    #[test]
    fn matches_kafkas_round_robin() {
        let lists = assign_replicas(&unracked(0..5), 0, 10, 3, 0).unwrap();
        let expected = [
            [0, 1, 2],
            [1, 2, 3],
            [2, 3, 4],
            [3, 4, 0],
            [4, 0, 1],
            [0, 2, 3],
            [1, 3, 4],
            [2, 4, 0],
            [3, 0, 1],
            [4, 1, 2],
        ];
        assert_eq!(lists, expected.map(|l| l.to_vec()).to_vec());
    }

    /// Kafka's own expectation (AdminRackAwareTest.testGetRackAlternatedBrokerListAndAssignReplicasToBrokers).
    #[test]
    fn matches_kafkas_rack_alternation() {
        let racked = brokers(&[
            (0, Some("rack1")),
            (1, Some("rack3")),
            (2, Some("rack3")),
            (3, Some("rack2")),
            (4, Some("rack2")),
            (5, Some("rack1")),
        ]);
        let order: Vec<i32> = rack_alternated(&racked).iter().map(|b| b.id).collect();
        assert_eq!(order, [0, 3, 1, 5, 4, 2]);
        let lists = assign_replicas(&racked, 0, 7, 3, 0).unwrap();
        let expected = [
            [0, 3, 1],
            [3, 1, 5],
            [1, 5, 4],
            [5, 4, 2],
            [4, 2, 0],
            [2, 0, 3],
            [0, 4, 2],
        ];
        assert_eq!(lists, expected.map(|l| l.to_vec()).to_vec());
    }

    #[test]
    fn replicas_and_leaders_spread_evenly() {
        for n in 1..=7 {
            for rf in 1..=n.min(4) {
                for start in [0, 3, 11] {
                    let partitions = n * 6;
                    let lists =
                        assign_replicas(&unracked(0..n), 0, partitions, rf as i16, start).unwrap();
                    assert_eq!(lists.len(), partitions as usize);
                    for list in &lists {
                        let mut distinct = list.clone();
                        distinct.sort_unstable();
                        distinct.dedup();
                        assert_eq!(distinct.len(), rf as usize, "distinct replicas: {list:?}");
                    }
                    let (leaders, replicas) = counts(&lists);
                    assert!(
                        leaders.values().all(|c| *c == 6),
                        "n={n} rf={rf}: {leaders:?}"
                    );
                    assert!(replicas.values().all(|c| *c == 6 * rf as usize));
                }
            }
        }
    }

    #[test]
    fn every_partition_spans_racks() {
        let racked = brokers(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
            (6, Some("c")),
        ]);
        let rack_of = |id: i32| racked.iter().find(|b| b.id == id).unwrap().rack.clone();
        for start in 0..6 {
            let lists = assign_replicas(&racked, 0, 12, 3, start).unwrap();
            for list in &lists {
                let mut racks: Vec<_> = list.iter().map(|id| rack_of(*id)).collect();
                racks.sort();
                racks.dedup();
                assert_eq!(racks.len(), 3, "{list:?}");
            }
            let (leaders, replicas) = counts(&lists);
            assert!(leaders.values().all(|c| *c == 2), "{leaders:?}");
            assert!(replicas.values().all(|c| *c == 6), "{replicas:?}");
        }
        // Two racks, three replicas: both racks used, the third replica anywhere else.
        let two = brokers(&[
            (1, Some("a")),
            (2, Some("b")),
            (3, Some("a")),
            (4, Some("b")),
        ]);
        for list in assign_replicas(&two, 0, 8, 3, 1).unwrap() {
            assert!(list.iter().any(|id| id % 2 == 0) && list.iter().any(|id| id % 2 == 1));
        }
    }

    #[test]
    fn replication_factor_beyond_live_brokers_is_refused() {
        for rf in [0, -1, 4, i16::MAX] {
            let (error, _) = assign_replicas(&unracked(0..3), 0, 2, rf, 0).unwrap_err();
            assert_eq!(error, ResponseError::InvalidReplicationFactor);
        }
        let (error, message) = assign_replicas(&[], 0, 1, 1, 0).unwrap_err();
        assert_eq!(error, ResponseError::InvalidReplicationFactor);
        assert!(message.contains("0 live brokers"), "{message}");
    }

    #[test]
    fn placement_is_deterministic_and_ignores_input_order() {
        let forward = unracked(0..4);
        let mut backward = forward.clone();
        backward.reverse();
        let id = uuid::Uuid::from_u128(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        assert_eq!(
            new_topic(&forward, 9, 2, id).unwrap(),
            new_topic(&backward, 9, 2, id).unwrap()
        );
    }

    /// CreatePartitions continues the walk: the grown topic is placed as if created whole.
    #[test]
    fn growing_continues_the_placement() {
        let live = unracked(0..5);
        let whole = assign_replicas(&live, 0, 10, 3, 2).unwrap();
        let first: Vec<PartitionAssignment> = (whole[..4].iter().cloned())
            .map(PartitionAssignment::new)
            .collect();
        let added = grow(&live, &first, 10).unwrap();
        let added: Vec<Vec<i32>> = added.into_iter().map(|a| a.replicas).collect();
        assert_eq!(added, whole[4..].to_vec());
        // Its replication factor is partition 0's; fewer live brokers than that is refused.
        let (error, _) = grow(&unracked(0..2), &first, 6).unwrap_err();
        assert_eq!(error, ResponseError::InvalidReplicationFactor);
    }

    #[test]
    fn offsets_topic_replication_factor() {
        assert_eq!(offsets_replication_factor(1), 1);
        assert_eq!(offsets_replication_factor(2), 2);
        assert_eq!(offsets_replication_factor(3), 3);
        assert_eq!(offsets_replication_factor(9), 3);
    }

    #[test]
    fn shard_for_spreads_partitions_of_a_topic() {
        for shards in 1..6 {
            let owners: Vec<usize> = (0..shards as i32)
                .map(|p| shard_for("orders", p, shards))
                .collect();
            let mut sorted = owners.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                shards,
                "every shard owns one of {shards} partitions"
            );
        }
        assert_eq!(shard_for("orders", 7, 4), shard_for("orders", 7, 4));
    }
}
