//! ListOffsets: earliest (-2), latest (-1), the first record with the largest timestamp (-3,
//! KIP-734), or first offset at or after a timestamp.
//!
//! Versions 1–7. (v0's offset lists are not served.)

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{partition_result, start_on_owners, RequestContext};
use crate::shard::message::{Reply, Request};

pub const VERSION_MIN: i16 = 1;
pub const VERSION_MAX: i16 = 7;

pub async fn handle(ctx: &RequestContext, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut pending = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let requests = topic
            .partitions
            .iter()
            .map(|p| (p.partition_index, (p.timestamp, p.current_leader_epoch)));
        let tasks = start_on_owners(
            ctx,
            &name,
            requests,
            |topic, partition, (timestamp, current_leader_epoch)| Request::ListOffset {
                topic,
                partition,
                timestamp,
                current_leader_epoch,
            },
            |reply| match reply {
                Reply::ListOffset(result) => result,
                other => other.mismatch("ListOffset"),
            },
        );
        pending.push((topic.name, tasks));
    }
    let snapshot = ctx.shard.metadata();
    let mut topics = Vec::with_capacity(pending.len());
    for (name, tasks) in pending {
        let mut partitions = Vec::with_capacity(tasks.len());
        for (index, task) in tasks {
            let result = partition_result(task).await;
            let response = ListOffsetsPartitionResponse::default().with_partition_index(index);
            partitions.push(match result {
                Ok((offset, timestamp)) => response
                    .with_offset(offset)
                    .with_timestamp(timestamp)
                    // The field exists from v4 on.
                    .with_leader_epoch(match snapshot.assignment(&name.0, index) {
                        Some(assignment) if ctx.version >= 4 => assignment.leader_epoch,
                        _ => -1,
                    }),
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
