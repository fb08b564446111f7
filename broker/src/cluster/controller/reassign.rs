//! Partition reassignment (KIP-455): moving a partition's replicas from R to R'.
//!
//! Starting one makes the replicas R' followed by R \ R', with `adding` = R' \ R and
//! `removing` = R \ R'. The added replicas open the partition and fetch from the leader like
//! any follower; the leader adds each to the ISR once it catches up (`ChangeIsr`). The ISR
//! change that leaves every target replica in the ISR completes the reassignment in the same
//! apply (as Kafka's controller completes it on AlterPartition): replicas become R', the ISR
//! loses the removed replicas, and a removed leader hands over to the first of R' in the ISR
//! that is live. Cancelling (a null target) reverts to the replicas without the added ones.
//! Removed replicas close the partition and delete their copy when a snapshot no longer lists
//! them (`Shard::apply_metadata`).
//!
//! Everything here is a pure edit of the snapshot, applied by `command::apply`.

use kafka_protocol::error::ResponseError;

use super::{Applied, ItemResults, Refusal};
use crate::cluster::membership::set_leader;
use crate::cluster::metadata::{MetadataSnapshot, PartitionAssignment, NO_LEADER};

/// Replicas a target may list at most: as many as a partition could usefully have.
pub const TARGET_REPLICAS_MAX: usize = 64;

/// One item of a `MetadataCommand::AlterReassignments`: a partition and its target replicas,
/// or None to cancel its reassignment.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ReassignmentRequest {
    pub topic: String,
    pub partition: i32,
    pub replicas: Option<Vec<i32>>,
}

/// Applies each request in order; one result per request, named by its topic.
pub fn apply_alter(
    snapshot: &mut MetadataSnapshot,
    requests: Vec<ReassignmentRequest>,
) -> ItemResults {
    (requests.into_iter())
        .map(|request| {
            let result = alter_one(snapshot, &request).map(|()| Applied::Done);
            (request.topic, result)
        })
        .collect()
}

fn alter_one(
    snapshot: &mut MetadataSnapshot,
    request: &ReassignmentRequest,
) -> Result<(), Refusal> {
    let name = format!("{}-{}", request.topic, request.partition);
    if snapshot
        .assignment(&request.topic, request.partition)
        .is_none()
    {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("{name}: no such partition"),
        ));
    }
    if let Some(target) = &request.replicas {
        check_target(snapshot, target).map_err(|why| {
            (
                ResponseError::InvalidReplicaAssignment,
                format!("{name}: replicas {target:?}: {why}"),
            )
        })?;
    }
    let live = live_ids(snapshot);
    let assignment = (snapshot.topics.get_mut(&request.topic))
        .and_then(|topic| topic.assignment_mut(request.partition))
        .expect("checked above");
    match &request.replicas {
        Some(target) => {
            start(assignment, target);
            complete_if_done(assignment, &live);
            Ok(())
        }
        None => cancel(assignment, &live).map_err(|(code, why)| (code, format!("{name}: {why}"))),
    }
}

/// Why `target` cannot be a partition's replicas: empty, too long, repeated or not live ids.
fn check_target(snapshot: &MetadataSnapshot, target: &[i32]) -> Result<(), String> {
    if target.is_empty() || target.len() > TARGET_REPLICAS_MAX {
        return Err(format!("1 to {TARGET_REPLICAS_MAX} replicas are needed"));
    }
    if (target.iter().enumerate()).any(|(i, id)| target[..i].contains(id)) {
        return Err("a broker is listed twice".into());
    }
    match target.iter().find(|id| !snapshot.is_live(**id)) {
        Some(id) => Err(format!("broker {id} is not registered or is fenced")),
        None => Ok(()),
    }
}

fn live_ids(snapshot: &MetadataSnapshot) -> Vec<i32> {
    snapshot.live_brokers().map(|broker| broker.id).collect()
}

/// Starts moving `assignment` from its replicas now (which may include an earlier
/// reassignment's, as in Kafka) to `target`.
fn start(assignment: &mut PartitionAssignment, target: &[i32]) {
    let current = assignment.replicas.clone();
    let mut adding: Vec<i32> = (target.iter().copied())
        .filter(|id| !current.contains(id))
        .collect();
    let mut removing: Vec<i32> = (current.iter().copied())
        .filter(|id| !target.contains(id))
        .collect();
    adding.sort_unstable();
    removing.sort_unstable();
    assignment.replicas = target
        .iter()
        .copied()
        .chain(removing.iter().copied())
        .collect();
    assignment.adding = adding;
    assignment.removing = removing;
}

/// Completes the reassignment of `assignment` if every target replica is in its ISR (Kafka's
/// rule); `live` are the unfenced brokers. Returns whether it completed.
pub fn complete_if_done(assignment: &mut PartitionAssignment, live: &[i32]) -> bool {
    if !assignment.is_reassigning() {
        return false;
    }
    let target = assignment.target_replicas();
    let removing = std::mem::take(&mut assignment.removing);
    let target_isr: Vec<i32> = (assignment.isr.iter().copied())
        .filter(|id| !removing.contains(id))
        .collect();
    if target_isr.is_empty() || !target.iter().all(|id| target_isr.contains(id)) {
        assignment.removing = removing;
        return false;
    }
    assignment.replicas = target;
    assignment.isr = target_isr;
    assignment.adding.clear();
    if assignment.leader != NO_LEADER && !assignment.replicas.contains(&assignment.leader) {
        let next = first_live_in_isr(assignment, live);
        // The leader leaves the ISR here: the epoch grows with the new leader.
        set_leader(assignment, next.unwrap_or(NO_LEADER));
    }
    true
}

/// Reverts `assignment` to the replicas it had before its reassignment.
fn cancel(assignment: &mut PartitionAssignment, live: &[i32]) -> Result<(), Refusal> {
    if !assignment.is_reassigning() {
        return Err((
            ResponseError::NoReassignmentInProgress,
            "no reassignment is in progress".into(),
        ));
    }
    let adding = assignment.adding.clone();
    let reverted_isr: Vec<i32> = (assignment.isr.iter().copied())
        .filter(|id| !adding.contains(id))
        .collect();
    if reverted_isr.is_empty() {
        // Reverting would leave no replica in sync; Kafka refuses this too.
        return Err((
            ResponseError::InvalidReplicaAssignment,
            "none of the original replicas is in sync".into(),
        ));
    }
    assignment.replicas = assignment.original_replicas();
    assignment.isr = reverted_isr;
    assignment.adding.clear();
    assignment.removing.clear();
    if adding.contains(&assignment.leader) {
        let next = first_live_in_isr(assignment, live);
        set_leader(assignment, next.unwrap_or(NO_LEADER));
    }
    Ok(())
}

/// The first replica, in preference order, that is in the ISR and live.
fn first_live_in_isr(assignment: &PartitionAssignment, live: &[i32]) -> Option<i32> {
    (assignment.replicas.iter().copied())
        .find(|id| assignment.isr.contains(id) && live.contains(id))
}

/// Completes the reassignment of `topic`'s `partition` if an ISR change just made it done.
pub fn complete_after_isr_change(snapshot: &mut MetadataSnapshot, topic: &str, partition: i32) {
    let live = live_ids(snapshot);
    if let Some(assignment) =
        (snapshot.topics.get_mut(topic)).and_then(|t| t.assignment_mut(partition))
    {
        complete_if_done(assignment, &live);
    }
}

/// Every reassignment in progress, as (topic, partition, its assignment), in topic and
/// partition order.
pub fn in_progress(
    snapshot: &MetadataSnapshot,
) -> impl Iterator<Item = (&str, i32, &PartitionAssignment)> {
    (snapshot.topics.values()).flat_map(|topic| {
        ((0..topic.partitions).zip(topic.assignments()))
            .filter(|(_, assignment)| assignment.is_reassigning())
            .map(|(partition, assignment)| (topic.name.as_str(), partition, assignment))
    })
}

#[cfg(test)]
#[path = "reassign_tests.rs"]
mod tests;
