//! OffsetDelete: drop committed offsets of partitions a group does not consume. Version 0.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition as OffsetDeletePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::{group_shard, RequestContext};
use crate::errors::code;
use crate::shard::message::{Reply, Request};

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 0;

pub async fn handle(ctx: &RequestContext, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = request.group_id.0.to_string();
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), p.partition_index))
        })
        .collect();
    let owner = match group_shard(ctx, &group_id) {
        Ok(owner) => owner,
        Err(error) => return OffsetDeleteResponse::default().with_error_code(error.code()),
    };
    let result = ctx
        .shard
        .call(
            owner,
            Request::DeleteOffsets {
                group_id,
                partitions,
            },
        )
        .await;
    let Reply::DeleteOffsets(result) = result else {
        result.mismatch("DeleteOffsets")
    };
    let outcomes = match result {
        Ok(outcomes) => outcomes,
        Err(error) => return OffsetDeleteResponse::default().with_error_code(error.code()),
    };
    let mut outcomes = outcomes.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let outcome = outcomes.next().expect("one outcome per partition");
                    OffsetDeletePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(code(outcome))
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
