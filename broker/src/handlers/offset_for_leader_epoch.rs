//! OffsetForLeaderEpoch (API 23): for each partition and leader epoch asked, the largest epoch
//! at or below it in the leader's log and where that epoch ends (KIP-101, KIP-279). Followers
//! ask it before fetching to find where their log diverges from the leader's; consumers
//! (librdkafka, the Java client: KIP-320) ask it to detect a truncation after a leader change.
//!
//! Versions 2–4. Served by the partition's leader only (NOT_LEADER_OR_FOLLOWER elsewhere),
//! answered from its log's leader-epoch cache (`storage::PartitionLog::end_offset_for_epoch`);
//! a `current_leader_epoch` below the partition's epoch is FENCED_LEADER_EPOCH, above it
//! UNKNOWN_LEADER_EPOCH, checked first as Kafka does.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use storage::{UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};

use super::{partition_result, start_on_owners, RequestContext};
use crate::cluster::metadata::MetadataSnapshot;
use crate::shard::message::{Reply, Request};

pub const VERSION_MIN: i16 = 2;
pub const VERSION_MAX: i16 = 4;

pub async fn handle(
    ctx: &RequestContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let snapshot = ctx.shard.metadata();
    let mut pending = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.topic.0.to_string();
        let checks: Vec<(i32, Result<i32, ResponseError>)> = topic
            .partitions
            .iter()
            .map(|p| {
                let checked = check_current_leader_epoch(
                    &snapshot,
                    &name,
                    p.partition,
                    p.current_leader_epoch,
                );
                (p.partition, checked.map(|()| p.leader_epoch))
            })
            .collect();
        let asked = checks
            .iter()
            .filter_map(|(partition, checked)| Some((*partition, *checked.as_ref().ok()?)));
        let tasks = start_on_owners(
            ctx,
            &name,
            asked,
            |topic, partition, leader_epoch| Request::OffsetForLeaderEpoch {
                topic,
                partition,
                leader_epoch,
            },
            |reply| match reply {
                Reply::OffsetForLeaderEpoch(result) => result,
                other => other.mismatch("OffsetForLeaderEpoch"),
            },
        );
        pending.push((topic.topic, checks, tasks));
    }
    let mut topics = Vec::with_capacity(pending.len());
    for (name, checks, tasks) in pending {
        let mut tasks = tasks.into_iter();
        let mut partitions = Vec::with_capacity(checks.len());
        for (partition, checked) in checks {
            let result = match checked {
                Err(error) => Err(error),
                Ok(_) => {
                    let (index, task) = tasks.next().expect("a task per partition checked");
                    assert_eq!(index, partition);
                    partition_result(task).await
                }
            };
            partitions.push(epoch_end_offset(partition, result));
        }
        topics.push(
            OffsetForLeaderTopicResult::default()
                .with_topic(name)
                .with_partitions(partitions),
        );
    }
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}

fn epoch_end_offset(partition: i32, result: Result<(i32, i64), ResponseError>) -> EpochEndOffset {
    let response = EpochEndOffset::default().with_partition(partition);
    match result {
        Ok((leader_epoch, end_offset)) => response
            .with_leader_epoch(leader_epoch)
            .with_end_offset(end_offset),
        Err(error) => response
            .with_error_code(error.code())
            .with_leader_epoch(UNDEFINED_EPOCH)
            .with_end_offset(UNDEFINED_EPOCH_OFFSET),
    }
}

/// Kafka's check of a request's `current_leader_epoch` (-1: none) against the partition's
/// epoch in this broker's snapshot: older is FENCED_LEADER_EPOCH (the client must refresh its
/// metadata), newer UNKNOWN_LEADER_EPOCH (this broker has not caught up yet). A partition the
/// snapshot does not know passes, and routing answers it.
pub fn check_current_leader_epoch(
    snapshot: &MetadataSnapshot,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
) -> Result<(), ResponseError> {
    let Some(assignment) = snapshot.assignment(topic, partition) else {
        return Ok(());
    };
    match current_leader_epoch {
        current if current < 0 => Ok(()),
        current if current < assignment.leader_epoch => Err(ResponseError::FencedLeaderEpoch),
        current if current > assignment.leader_epoch => Err(ResponseError::UnknownLeaderEpoch),
        _ => Ok(()),
    }
}
