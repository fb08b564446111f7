//! ListOffsets: earliest (-2), latest (-1), or first offset at or after a timestamp.
//!
//! Versions 1–6. (v7's max-timestamp query and v0's offset lists are not served.)

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::RequestContext;

pub const VERSION_MIN: i16 = 1;
pub const VERSION_MAX: i16 = 6;

pub async fn handle(ctx: &RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut pending = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let known = ctx
            .shard
            .metadata()
            .topics
            .get(&name)
            .map(|meta| meta.partitions);
        let tasks: Vec<_> = topic
            .partitions
            .iter()
            .map(|p| {
                let (shard, name, index, timestamp) = (
                    ctx.shard.clone(),
                    name.clone(),
                    p.partition_index,
                    p.timestamp,
                );
                let task = match known {
                    Some(count) if index >= 0 && index < count => {
                        Some(glommio::spawn_local(async move {
                            let owner = shard.owner(&name, index);
                            shard
                                .call(owner, move |s| s.list_offset_local(name, index, timestamp))
                                .await
                        }))
                    }
                    _ => None,
                };
                (index, task)
            })
            .collect();
        pending.push((topic.name, tasks));
    }
    let mut topics = Vec::with_capacity(pending.len());
    for (name, tasks) in pending {
        let mut partitions = Vec::with_capacity(tasks.len());
        for (index, task) in tasks {
            let result = match task {
                Some(task) => task.await,
                None => Err(ResponseError::UnknownTopicOrPartition),
            };
            let response = ListOffsetsPartitionResponse::default().with_partition_index(index);
            partitions.push(match result {
                Ok((offset, timestamp)) => response
                    .with_offset(offset)
                    .with_timestamp(timestamp)
                    // The field exists from v4 on.
                    .with_leader_epoch(if ctx.version >= 4 { 0 } else { -1 }),
                Err(error) => response
                    .with_error_code(error.code())
                    .with_offset(-1)
                    .with_timestamp(-1),
            });
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(name)
                .with_partitions(partitions),
        );
    }
    ListOffsetsResponse::default().with_topics(topics)
}
