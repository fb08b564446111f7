//! OffsetFetch: a group's committed offsets (v1–7 one group; v8 several). Versions 1–8.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{group_shard, RequestContext};
use crate::groups::store::CommittedOffset;
use crate::shard::message::{Reply, Request};

pub const VERSION_MIN: i16 = 1;
pub const VERSION_MAX: i16 = 8;

/// The first OffsetFetch version with a top-level error code.
const TOP_LEVEL_ERROR_VERSION_MIN: i16 = 2;

type Found = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

async fn fetch(
    ctx: &RequestContext,
    group_id: String,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Found, ResponseError> {
    let owner = group_shard(ctx, &group_id)?;
    let found = ctx
        .shard
        .call(owner, Request::FetchOffsets { group_id, wanted })
        .await;
    let Reply::FetchOffsets(found) = found else {
        found.mismatch("FetchOffsets")
    };
    found
}

fn fields(offset: &Option<CommittedOffset>) -> (i64, i32, Option<StrBytes>) {
    match offset {
        Some(o) => (
            o.offset,
            o.leader_epoch,
            Some(StrBytes::from_string(
                o.metadata.clone().unwrap_or_default(),
            )),
        ),
        None => (-1, -1, Some(StrBytes::from_static_str(""))),
    }
}

pub async fn handle(ctx: &RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse {
    if ctx.version >= 8 {
        return handle_groups(ctx, request).await;
    }
    let wanted = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    // v1 has no top-level error: a refusal names each asked partition (as in Kafka), so only v1
    // keeps a copy of what was asked.
    let asked_v1 = (ctx.version < TOP_LEVEL_ERROR_VERSION_MIN).then(|| wanted.clone());
    let found = match fetch(ctx, request.group_id.0.to_string(), wanted).await {
        Ok(found) => found,
        Err(error) => {
            return match asked_v1 {
                Some(asked) => OffsetFetchResponse::default().with_topics(refused_v1(asked, error)),
                None => OffsetFetchResponse::default().with_error_code(error.code()),
            };
        }
    };
    let topics = found
        .into_iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .iter()
                .map(|(p, o)| {
                    let (offset, epoch, metadata) = fields(o);
                    let entry = OffsetFetchResponsePartition::default()
                        .with_partition_index(*p)
                        .with_committed_offset(offset)
                        .with_metadata(metadata);
                    if ctx.version >= 5 {
                        entry.with_committed_leader_epoch(epoch)
                    } else {
                        entry
                    }
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(partitions)
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}

/// The topics of a refused v1 request, each asked partition with `error`.
fn refused_v1(
    wanted: Option<Vec<(String, Vec<i32>)>>,
    error: ResponseError,
) -> Vec<OffsetFetchResponseTopic> {
    (wanted.unwrap_or_default().into_iter())
        .map(|(topic, partitions)| {
            let partitions = (partitions.into_iter())
                .map(|p| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(-1)
                        .with_error_code(error.code())
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic)))
                .with_partitions(partitions)
        })
        .collect()
}

/// v8: several groups, each with its own error.
async fn handle_groups(ctx: &RequestContext, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let mut results = Vec::with_capacity(request.groups.len());
    for group in request.groups {
        let wanted = group.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        let found = fetch(ctx, group.group_id.0.to_string(), wanted).await;
        let found = match found {
            Ok(found) => found,
            Err(error) => {
                results.push(
                    OffsetFetchResponseGroup::default()
                        .with_group_id(GroupId(group.group_id.0))
                        .with_error_code(error.code()),
                );
                continue;
            }
        };
        let topics = found
            .into_iter()
            .map(|(topic, partitions)| {
                let partitions = partitions
                    .iter()
                    .map(|(p, o)| {
                        let (offset, epoch, metadata) = fields(o);
                        OffsetFetchResponsePartitions::default()
                            .with_partition_index(*p)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(epoch)
                            .with_metadata(metadata)
                    })
                    .collect();
                OffsetFetchResponseTopics::default()
                    .with_name(TopicName(StrBytes::from_string(topic)))
                    .with_partitions(partitions)
            })
            .collect();
        results.push(
            OffsetFetchResponseGroup::default()
                .with_group_id(GroupId(group.group_id.0))
                .with_topics(topics),
        );
    }
    OffsetFetchResponse::default().with_groups(results)
}
