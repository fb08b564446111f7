//! Leader elections asked for by ElectLeaders (API 43) and by the automatic preferred-leader
//! rebalancing of the active controller (`tasks/rebalance.rs`). Each is a pure edit of one
//! partition's assignment, applied by `command::apply` like every metadata change.
//!
//! **Invariant:** a preferred election moves the leadership only to the first replica, and only
//! while it is live and in the ISR; an unclean election only gives a partition without a leader
//! one, an ISR member if one is live, else any live replica (whose ISR then becomes it alone).

use crate::cluster::membership::{for_each_assignment, set_leader, set_leader_unclean};
use crate::cluster::metadata::{MetadataSnapshot, PartitionAssignment, TopicMeta, NO_LEADER};

/// Kafka's election types, as ElectLeaders numbers them (0 and 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ElectionType {
    /// The first replica leads if it is live and in the ISR.
    Preferred,
    /// A partition without a leader gets any live replica, the ISR's first.
    Unclean,
}

impl ElectionType {
    /// The type of a request's `election_type` field; None for an unknown one.
    pub fn from_wire(value: i8) -> Option<ElectionType> {
        match value {
            0 => Some(ElectionType::Preferred),
            1 => Some(ElectionType::Unclean),
            _ => None,
        }
    }
}

/// Why an election changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ElectionError {
    #[error("the partition does not exist")]
    UnknownPartition,
    #[error("broker {0} leads the partition already")]
    NotNeeded(i32),
    #[error("the preferred replica {0} is not live or not in the ISR")]
    PreferredNotAvailable(i32),
    #[error("no replica of the partition is live")]
    NoEligibleLeader,
}

/// Runs `election` on `topic`'s `partition`; returns the new leader.
pub fn elect(
    snapshot: &mut MetadataSnapshot,
    election: ElectionType,
    topic: &str,
    partition: i32,
) -> Result<i32, ElectionError> {
    let live: Vec<i32> = snapshot.live_brokers().map(|broker| broker.id).collect();
    let assignment = (snapshot.topics.get_mut(topic))
        .and_then(|topic| topic.assignment_mut(partition))
        .ok_or(ElectionError::UnknownPartition)?;
    match election {
        ElectionType::Preferred => elect_preferred(assignment, &live),
        ElectionType::Unclean => elect_unclean(assignment, &live),
    }
}

fn elect_preferred(
    assignment: &mut PartitionAssignment,
    live: &[i32],
) -> Result<i32, ElectionError> {
    let preferred = assignment.replicas[0];
    if assignment.leader == preferred {
        return Err(ElectionError::NotNeeded(preferred));
    }
    if !live.contains(&preferred) || !assignment.isr.contains(&preferred) {
        return Err(ElectionError::PreferredNotAvailable(preferred));
    }
    set_leader(assignment, preferred);
    Ok(preferred)
}

fn elect_unclean(assignment: &mut PartitionAssignment, live: &[i32]) -> Result<i32, ElectionError> {
    if assignment.leader != NO_LEADER {
        return Err(ElectionError::NotNeeded(assignment.leader));
    }
    let replicas = || assignment.replicas.iter().copied();
    let next = (replicas().find(|r| assignment.isr.contains(r) && live.contains(r)))
        .or_else(|| replicas().find(|r| live.contains(r)))
        .ok_or(ElectionError::NoEligibleLeader)?;
    set_leader_unclean(assignment, next);
    Ok(next)
}

/// Gives every partition of `topic` without a leader one, as an UNCLEAN election does, if the
/// topic allows unclean elections (`unclean.leader.election.enable`); `live`: the live brokers.
/// Called when a topic's configs change: turning the config on elects at once, as Kafka does,
/// instead of waiting for a replica to register or be unfenced. Returns how many got a leader.
pub fn elect_unclean_where_enabled(topic: &mut TopicMeta, live: &[i32]) -> usize {
    if !topic.config.unclean_leader_election {
        return 0;
    }
    let mut elected = 0;
    for_each_assignment(topic, |assignment| {
        if assignment.leader == NO_LEADER && elect_unclean(assignment, live).is_ok() {
            elected += 1;
        }
    });
    elected
}

/// Partitions one rebalancing round elects at most, so that its command stays small; the next
/// round elects the rest.
pub const REBALANCE_PARTITIONS_MAX: usize = 1024;

/// The partitions whose preferred replica should lead again (Kafka's
/// `auto.leader.rebalance.enable`): for each live broker whose imbalance (the share of the
/// partitions it is the preferred replica of that it does not lead) is above
/// `imbalance_percentage_max`, those of them it can lead now (it is in their ISR). At most
/// [`REBALANCE_PARTITIONS_MAX`], in topic and partition order.
pub fn rebalance_candidates(
    snapshot: &MetadataSnapshot,
    imbalance_percentage_max: u32,
) -> Vec<(String, i32)> {
    let mut candidates = Vec::new();
    for broker in snapshot.live_brokers() {
        let mut preferred_count: u64 = 0;
        let mut movable: Vec<(String, i32)> = Vec::new();
        let mut not_led: u64 = 0;
        for (name, topic) in &snapshot.topics {
            for (partition, assignment) in topic.assignments().iter().enumerate() {
                if assignment.replicas[0] != broker.id {
                    continue;
                }
                preferred_count += 1;
                if assignment.leader == broker.id {
                    continue;
                }
                not_led += 1;
                if assignment.isr.contains(&broker.id) {
                    movable.push((name.clone(), partition as i32));
                }
            }
        }
        if not_led * 100 > u64::from(imbalance_percentage_max) * preferred_count {
            candidates.extend(movable);
        }
    }
    candidates.sort();
    candidates.truncate(REBALANCE_PARTITIONS_MAX);
    candidates
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
