//! AlterConfigs (versions 0–2) and IncrementalAlterConfigs (versions 0–1) for topics.
//!
//! Changes are persisted and published like every metadata change. Retention settings apply
//! from the next retention pass; `segment.bytes` and `index.interval.bytes` apply when a
//! partition is next opened. Broker resources are static (configured on the command line):
//! altering them is refused.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::controller::{self, ConfigChange, Refusal};

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 2;
pub const INCREMENTAL_VERSION_MIN: i16 = 0;
pub const INCREMENTAL_VERSION_MAX: i16 = 1;

const RESOURCE_TOPIC: i8 = 2;

/// Sends the topic changes to the controller; other resource types are refused in place.
async fn apply(
    ctx: &RequestContext,
    resources: Vec<(i8, String, ConfigChange)>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    let topic_changes: Vec<(String, ConfigChange)> = resources
        .iter()
        .filter(|(kind, _, _)| *kind == RESOURCE_TOPIC)
        .map(|(_, name, change)| (name.clone(), change.clone()))
        .collect();
    let mut done = controller::alter_topic_configs(&ctx.shard, topic_changes, validate_only)
        .await
        .into_iter();
    resources
        .iter()
        .map(|(kind, _, _)| match *kind {
            RESOURCE_TOPIC => done.next().expect("one result per topic"),
            _ => Err((
                ResponseError::InvalidRequest,
                "only topic configs can be changed".to_string(),
            )),
        })
        .collect()
}

fn outcome(result: &Result<(), Refusal>) -> (i16, Option<StrBytes>) {
    match result {
        Ok(()) => (0, None),
        Err((error, message)) => (error.code(), Some(StrBytes::from_string(message.clone()))),
    }
}

pub async fn handle(ctx: &RequestContext, request: AlterConfigsRequest) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let resources = request
        .resources
        .iter()
        .map(|r| {
            let all: BTreeMap<String, String> = r
                .configs
                .iter()
                .filter_map(|c| {
                    c.value
                        .as_ref()
                        .map(|v| (c.name.to_string(), v.to_string()))
                })
                .collect();
            (
                r.resource_type,
                r.resource_name.to_string(),
                ConfigChange::Replace(all),
            )
        })
        .collect();
    let results = apply(ctx, resources, request.validate_only).await;
    let responses = request
        .resources
        .into_iter()
        .zip(results)
        .map(|(r, result)| {
            let (code, message) = outcome(&result);
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(code)
                .with_error_message(message)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

pub async fn handle_incremental(
    ctx: &RequestContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let resources = request
        .resources
        .iter()
        .map(|r| {
            let ops = r
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        c.config_operation,
                        c.value.as_ref().map(|v| v.to_string()),
                    )
                })
                .collect();
            (
                r.resource_type,
                r.resource_name.to_string(),
                ConfigChange::Incremental(ops),
            )
        })
        .collect();
    let results = apply(ctx, resources, request.validate_only).await;
    let responses = request
        .resources
        .into_iter()
        .zip(results)
        .map(|(r, result)| {
            let (code, message) = outcome(&result);
            AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name)
                .with_error_code(code)
                .with_error_message(message)
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
