//! OffsetCommit: store consumed positions, durably, in `__consumer_offsets`. Versions 2–8.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use super::{group_shard, RequestContext};
use crate::groups::store::CommittedOffset;
use crate::groups::CommitEntry;
use crate::shard::message::{Reply, Request};

pub const VERSION_MIN: i16 = 2;
pub const VERSION_MAX: i16 = 8;

pub async fn handle(ctx: &RequestContext, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = request.group_id.0.to_string();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let entries: Vec<CommitEntry> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| CommitEntry {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    commit_time_ms: now_ms,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                },
            })
        })
        .collect();
    let member_id = request.member_id.to_string();
    let instance_id = request.group_instance_id.map(|i| i.to_string());
    let generation = request.generation_id_or_member_epoch;
    let errors = match group_shard(ctx, &group_id) {
        // Every partition carries the error: OffsetCommit has no other place for it.
        Err(error) => vec![Some(error); entries.len()],
        Ok(owner) => {
            let errors = ctx
                .shard
                .call(
                    owner,
                    Request::CommitOffsets {
                        group_id,
                        member_id,
                        instance_id,
                        generation,
                        entries,
                    },
                )
                .await;
            let Reply::CommitOffsets(errors) = errors else {
                errors.mismatch("CommitOffsets")
            };
            errors
        }
    };
    let mut errors = errors.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let error = errors.next().expect("one result per partition");
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
