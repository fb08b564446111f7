//! AlterConfigs (versions 0–2) and IncrementalAlterConfigs (versions 0–1) for topics and the
//! broker.
//!
//! Changes are persisted and published like every metadata change. Retention settings apply
//! from the next retention pass; `segment.bytes` and `index.interval.bytes` apply when a
//! partition is next opened. A BROKER resource named by this broker's node id changes its own
//! dynamic configs, one with an empty name the cluster-wide defaults (`broker_config`); any
//! other broker id is refused, as Kafka refuses a request meant for another broker.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::RequestContext;
use crate::cluster::controller::{BrokerTarget, ConfigChange, Refusal};
use crate::shard::admin;

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 2;
pub const INCREMENTAL_VERSION_MIN: i16 = 0;
pub const INCREMENTAL_VERSION_MAX: i16 = 1;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Where one resource's change goes.
enum Route {
    Topic(String),
    Broker(BrokerTarget),
    Refused(Refusal),
}

fn route(ctx: &RequestContext, kind: i8, name: &str) -> Route {
    let node_id = ctx.shard.config.node_id.to_string();
    match kind {
        RESOURCE_TOPIC => Route::Topic(name.to_string()),
        RESOURCE_BROKER if name.is_empty() => Route::Broker(BrokerTarget::ClusterDefault),
        RESOURCE_BROKER if name == node_id => {
            Route::Broker(BrokerTarget::Broker(ctx.shard.config.node_id))
        }
        RESOURCE_BROKER => Route::Refused((
            ResponseError::InvalidRequest,
            format!("Unexpected broker id, expected {node_id}, but received {name}"),
        )),
        _ => Route::Refused((
            ResponseError::InvalidRequest,
            format!("unsupported resource type {kind}"),
        )),
    }
}

/// Sends the topic and broker changes to the controller; other resources are refused in place.
async fn apply(
    ctx: &RequestContext,
    resources: Vec<(i8, String, ConfigChange)>,
    validate_only: bool,
) -> Vec<Result<(), Refusal>> {
    let routes: Vec<(Route, ConfigChange)> = resources
        .into_iter()
        .map(|(kind, name, change)| (route(ctx, kind, &name), change))
        .collect();
    let topic_changes = routes
        .iter()
        .filter_map(|(r, change)| match r {
            Route::Topic(name) => Some((name.clone(), change.clone())),
            _ => None,
        })
        .collect();
    let broker_changes = routes
        .iter()
        .filter_map(|(r, change)| match r {
            Route::Broker(target) => Some((*target, change.clone())),
            _ => None,
        })
        .collect();
    let mut topics_done = admin::alter_topic_configs(&ctx.shard, topic_changes, validate_only)
        .await
        .into_iter();
    let mut brokers_done = admin::alter_broker_configs(&ctx.shard, broker_changes, validate_only)
        .await
        .into_iter();
    routes
        .into_iter()
        .map(|(r, _)| match r {
            Route::Topic(_) => topics_done.next().expect("one result per topic"),
            Route::Broker(_) => brokers_done.next().expect("one result per broker resource"),
            Route::Refused(refusal) => Err(refusal),
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
