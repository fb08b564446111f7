//! ISR changes: a partition's leader proposes the ISR it should have (a follower that fell
//! behind leaves it, one that caught up joins it), and every node applies the change, or refuses
//! it, against the snapshot at the command's position.
//!
//! Invariant: an applied ISR is a subset of the replicas without repeats, holds the leader, and
//! adds only registered, unfenced brokers; it was proposed by the leader at the partition's
//! current leader epoch, so a deposed leader's proposal changes nothing.

use kafka_protocol::error::ResponseError;

use super::{Applied, ItemResults, Refusal};
use crate::cluster::metadata::MetadataSnapshot;

/// The fields of a `MetadataCommand::ChangeIsr`.
pub struct ProposedIsr {
    pub topic: String,
    pub topic_id: uuid::Uuid,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// Applies an ISR change (see the module documentation for when it is refused).
pub fn apply_change_isr(snapshot: &mut MetadataSnapshot, proposed: ProposedIsr) -> ItemResults {
    let result = check(snapshot, &proposed).map(|()| {
        let topic = (snapshot.topics.get_mut(&proposed.topic)).expect("checked");
        let assignment = (topic.assignment_mut(proposed.partition)).expect("checked");
        assignment.isr = proposed.isr;
        Applied::Done
    });
    vec![(proposed.topic, result)]
}

fn check(snapshot: &MetadataSnapshot, proposed: &ProposedIsr) -> Result<(), Refusal> {
    let name = format!("{}-{}", proposed.topic, proposed.partition);
    let refused = |code, why: &str| Err((code, format!("ISR {:?} of {name}: {why}", proposed.isr)));
    let topic = snapshot.topics.get(&proposed.topic);
    let Some(assignment) = (topic)
        .filter(|topic| topic.id == proposed.topic_id)
        .and_then(|topic| topic.assignment(proposed.partition))
    else {
        return refused(ResponseError::UnknownTopicOrPartition, "no such partition");
    };
    if assignment.leader != proposed.leader {
        return refused(
            ResponseError::NotLeaderOrFollower,
            "not proposed by its leader",
        );
    }
    if assignment.leader_epoch != proposed.leader_epoch {
        return refused(ResponseError::FencedLeaderEpoch, "another leader epoch");
    }
    let isr = &proposed.isr;
    let repeated = (isr.iter().enumerate()).any(|(i, id)| isr[..i].contains(id));
    if !isr.contains(&proposed.leader)
        || repeated
        || isr.iter().any(|id| !assignment.replicas.contains(id))
    {
        return refused(
            ResponseError::InvalidRequest,
            "not a set of the replicas holding the leader",
        );
    }
    let added = (isr.iter()).filter(|id| !assignment.isr.contains(id));
    if added.into_iter().any(|id| !snapshot.is_live(*id)) {
        return refused(ResponseError::IneligibleReplica, "adds a fenced broker");
    }
    Ok(())
}

#[cfg(test)]
#[path = "isr_tests.rs"]
mod tests;
