//! CreatePartitions: grow a topic's partition count. Versions 0–3.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::shard::admin;

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 3;

pub async fn handle(
    ctx: &RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let asks = request
        .topics
        .iter()
        .map(|t| (t.name.0.to_string(), t.count))
        .collect();
    let outcomes = admin::create_partitions(&ctx.shard, asks, request.validate_only).await;
    let results = request
        .topics
        .iter()
        .zip(outcomes)
        .map(|(topic, outcome)| {
            let entry = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
            match outcome {
                Ok(()) => entry,
                Err((error, message)) => entry
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
