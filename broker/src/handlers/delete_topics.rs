//! DeleteTopics. Versions 1–6 (v6 names topics by name or id).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::shard::admin;

pub const VERSION_MIN: i16 = 1;
pub const VERSION_MAX: i16 = 6;

pub async fn handle(ctx: &RequestContext, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let snapshot = ctx.shard.metadata();
    // Each entry: the name to delete, or the id that matched no topic.
    let targets: Vec<Result<String, uuid::Uuid>> = if ctx.version >= 6 {
        request
            .topics
            .iter()
            .map(|t| match &t.name {
                Some(name) => Ok(name.0.to_string()),
                None => snapshot
                    .topics
                    .values()
                    .find(|m| m.id == t.topic_id)
                    .map(|m| m.name.clone())
                    .ok_or(t.topic_id),
            })
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|n| Ok(n.0.to_string()))
            .collect()
    };
    let names: Vec<String> = targets
        .iter()
        .filter_map(|t| t.as_ref().ok().cloned())
        .collect();
    let mut deleted = admin::delete_topics(&ctx.shard, names).await.into_iter();
    let responses = targets
        .into_iter()
        .map(|target| match target {
            Err(id) => DeletableTopicResult::default()
                .with_topic_id(id)
                .with_error_code(ResponseError::UnknownTopicId.code()),
            Ok(name) => {
                let entry = DeletableTopicResult::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name))));
                match deleted.next().expect("one result per name") {
                    Ok(id) => entry.with_topic_id(id),
                    Err((error, message)) => entry
                        .with_error_code(error.code())
                        .with_error_message(Some(StrBytes::from_string(message))),
                }
            }
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
