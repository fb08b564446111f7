//! Membership edits of the metadata snapshot: a broker registers, is fenced when the active
//! controller stops hearing from it, and is unfenced when it is heard again. Each is a pure,
//! deterministic edit, so every broker applying the same command to the same snapshot gets the
//! same result.
//!
//! **Invariant:** a fenced broker leads nothing: fencing moves every partition it leads to the
//! first live in-sync replica (in replica order), or leaves the partition without a leader (-1).
//! Only a topic with `unclean.leader.election.enable` may get a leader outside its ISR, when no
//! ISR member is live: its ISR then becomes that one replica, as in Kafka.
//! **Invariant:** the leader epoch grows by one exactly where the leader changes.
//! **Invariant:** an ISR is never emptied: a fenced broker leaves every ISR but one it is the last
//! member of, so the partition keeps a record of who holds its latest data.

use crate::cluster::metadata::{
    BrokerRegistration, MetadataSnapshot, PartitionAssignment, TopicMeta, NO_LEADER,
};

/// Why a membership edit changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("broker {0} is not registered")]
    UnknownBroker(i32),
    /// The broker registered again since the command was proposed: the command was about its
    /// earlier life.
    #[error("broker {id} is registered with another incarnation than {incarnation}")]
    StaleIncarnation { id: i32, incarnation: u64 },
}

/// Registers `registration`, replacing any earlier registration of its id, unfenced. Partitions
/// left without a leader whose ISR holds the broker get it back as their leader.
pub fn register(snapshot: &mut MetadataSnapshot, registration: BrokerRegistration) {
    let id = registration.id;
    snapshot.brokers.insert(
        id,
        BrokerRegistration {
            fenced: false,
            shutting_down: false,
            ..registration
        },
    );
    lead_offline_partitions(snapshot, id);
}

/// Fences broker `id` (its `incarnation`): it is no longer live. Every partition it leads moves
/// to the first live ISR replica, else is left without a leader; it leaves every ISR of which it
/// is not the last member. Fencing a fenced broker changes nothing.
pub fn fence(
    snapshot: &mut MetadataSnapshot,
    id: i32,
    incarnation: u64,
) -> Result<(), MembershipError> {
    let broker = registration_mut(snapshot, id, incarnation)?;
    if broker.fenced {
        return Ok(());
    }
    broker.fenced = true;
    let live: Vec<i32> = snapshot.live_brokers().map(|broker| broker.id).collect();
    for topic in snapshot.topics.values_mut() {
        let unclean = topic.config.unclean_leader_election;
        for_each_assignment(topic, |assignment| {
            fence_in_partition(assignment, id, &live, unclean)
        });
    }
    Ok(())
}

/// Broker `id` (its `incarnation`) stops (Kafka's controlled shutdown): it is fenced, as by
/// [`fence`], and marked shutting down, so the active controller does not unfence it while it
/// is still heard; every partition it leads moves to the first live in-sync replica in replica
/// order (the preferred replica first), and it leaves every ISR it is not the last member of.
/// No partition gets an unclean leader here: one whose only in-sync replica it is goes offline
/// and comes back when it registers again.
pub fn shut_down(
    snapshot: &mut MetadataSnapshot,
    id: i32,
    incarnation: u64,
) -> Result<(), MembershipError> {
    let broker = registration_mut(snapshot, id, incarnation)?;
    broker.shutting_down = true;
    if broker.fenced {
        return Ok(());
    }
    broker.fenced = true;
    let live: Vec<i32> = snapshot.live_brokers().map(|broker| broker.id).collect();
    for topic in snapshot.topics.values_mut() {
        for_each_assignment(topic, |assignment| {
            fence_in_partition(assignment, id, &live, false)
        });
    }
    Ok(())
}

/// Unfences broker `id` (its `incarnation`): partitions without a leader whose ISR holds it get
/// it as their leader. Unfencing a live broker, or one shutting down, changes nothing.
pub fn unfence(
    snapshot: &mut MetadataSnapshot,
    id: i32,
    incarnation: u64,
) -> Result<(), MembershipError> {
    let broker = registration_mut(snapshot, id, incarnation)?;
    if !broker.fenced || broker.shutting_down {
        return Ok(());
    }
    broker.fenced = false;
    lead_offline_partitions(snapshot, id);
    Ok(())
}

fn registration_mut(
    snapshot: &mut MetadataSnapshot,
    id: i32,
    incarnation: u64,
) -> Result<&mut BrokerRegistration, MembershipError> {
    let broker = snapshot
        .brokers
        .get_mut(&id)
        .ok_or(MembershipError::UnknownBroker(id))?;
    if broker.incarnation != incarnation {
        return Err(MembershipError::StaleIncarnation { id, incarnation });
    }
    Ok(broker)
}

/// One partition's part of fencing `fenced`; `live` are the brokers still live (`fenced` not
/// among them); `unclean`: the topic allows a leader outside the ISR.
fn fence_in_partition(
    assignment: &mut PartitionAssignment,
    fenced: i32,
    live: &[i32],
    unclean: bool,
) {
    debug_assert!(!live.contains(&fenced));
    if assignment.isr.len() > 1 {
        assignment.isr.retain(|replica| *replica != fenced);
    }
    if assignment.leader != fenced {
        return;
    }
    let clean = assignment
        .replicas
        .iter()
        .copied()
        .find(|replica| assignment.isr.contains(replica) && live.contains(replica));
    match clean {
        Some(next) => set_leader(assignment, next),
        None if unclean => {
            let next = (assignment.replicas.iter().copied()).find(|r| live.contains(r));
            set_leader_unclean(assignment, next.unwrap_or(NO_LEADER));
        }
        None => set_leader(assignment, NO_LEADER),
    }
}

/// Gives broker `id` the leadership of every partition without a leader whose ISR holds it, or,
/// for a topic with `unclean.leader.election.enable`, whose replicas do.
fn lead_offline_partitions(snapshot: &mut MetadataSnapshot, id: i32) {
    for topic in snapshot.topics.values_mut() {
        let unclean = topic.config.unclean_leader_election;
        for_each_assignment(topic, |assignment| {
            if assignment.leader != NO_LEADER {
                return;
            }
            if assignment.isr.contains(&id) {
                set_leader(assignment, id);
            } else if unclean && assignment.replicas.contains(&id) {
                set_leader_unclean(assignment, id);
            }
        });
    }
}

pub(crate) fn for_each_assignment(
    topic: &mut TopicMeta,
    mut edit: impl FnMut(&mut PartitionAssignment),
) {
    for partition in 0..topic.partitions {
        edit(
            topic
                .assignment_mut(partition)
                .expect("a topic has each of its partitions"),
        );
    }
}

/// Makes `leader` (a member of the ISR, or [`NO_LEADER`]) the leader; the epoch grows by one if
/// the leader changes.
pub(crate) fn set_leader(assignment: &mut PartitionAssignment, leader: i32) {
    if assignment.leader == leader {
        return;
    }
    assignment.leader = leader;
    assignment.leader_epoch += 1;
    assert!(
        leader == NO_LEADER || assignment.isr.contains(&leader),
        "a leader outside the ISR: {assignment:?}"
    );
}

/// An unclean election: `leader`, a replica that may be outside the ISR, leads, and the ISR
/// becomes it alone (records it lacks are lost, as Kafka's unclean election loses them).
pub(crate) fn set_leader_unclean(assignment: &mut PartitionAssignment, leader: i32) {
    if leader != NO_LEADER && !assignment.isr.contains(&leader) {
        assignment.isr = vec![leader];
    }
    set_leader(assignment, leader);
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
