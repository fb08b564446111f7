//! DeleteRecords: moves partitions' log start offsets forward (Kafka's `deleteRecords` admin
//! call). Versions 0–2. Each partition's owner shard checkpoints the new start durably before it
//! answers; the response's low watermark is the log start offset afterwards.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{partition_result, start_on_owners, RequestContext};
use crate::shard::message::{Reply, Request};

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 2;

pub async fn handle(ctx: &RequestContext, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    // Every partition's work starts before any is awaited, so partitions on different shards
    // are handled in parallel.
    let mut pending = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let requests = topic
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.offset));
        let tasks = start_on_owners(
            ctx,
            &name,
            requests,
            |topic, partition, offset| Request::DeleteRecords {
                topic,
                partition,
                offset,
            },
            |reply| match reply {
                Reply::DeleteRecords(result) => result,
                other => other.mismatch("DeleteRecords"),
            },
        );
        pending.push((topic.name, tasks));
    }
    let mut topics = Vec::with_capacity(pending.len());
    for (name, tasks) in pending {
        let mut partitions = Vec::with_capacity(tasks.len());
        for (index, task) in tasks {
            let result = partition_result(task).await;
            let response = DeleteRecordsPartitionResult::default().with_partition_index(index);
            partitions.push(match result {
                Ok(low_watermark) => response.with_low_watermark(low_watermark),
                Err(error) => response
                    .with_error_code(error.code())
                    .with_low_watermark(-1),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
