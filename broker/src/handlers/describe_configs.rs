//! DescribeConfigs for topics (resource type 2) and the broker (type 4). Versions 1–4.
//!
//! The broker named by its node id lists its read-only configs and every dynamic one with its
//! source; the broker resource with an empty name lists the cluster-wide dynamic configs set.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::create_topics::{CONFIG_SOURCE_DEFAULT, CONFIG_SOURCE_TOPIC};
use super::RequestContext;
use crate::cluster::broker_config::{BROKER_CONFIGS, READ_ONLY_CONFIGS};
use crate::cluster::metadata::MetadataSnapshot;
use crate::cluster::topic_config::{ConfigKind, TOPIC_CONFIGS};
use crate::config::ServeArgs;

pub const VERSION_MIN: i16 = 1;
pub const VERSION_MAX: i16 = 4;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Kafka's config sources for broker configs.
const CONFIG_SOURCE_DYNAMIC_BROKER: i8 = 1;
const CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 2;
const CONFIG_SOURCE_STATIC_BROKER: i8 = 4;
/// Kafka's ConfigType values for DescribeConfigs v3+.
const CONFIG_TYPE_BOOLEAN: i8 = 1;
const CONFIG_TYPE_STRING: i8 = 2;
const CONFIG_TYPE_INT: i8 = 3;
const CONFIG_TYPE_LONG: i8 = 5;
const CONFIG_TYPE_DOUBLE: i8 = 6;
const CONFIG_TYPE_LIST: i8 = 7;
const CONFIG_TYPE_CLASS: i8 = 8;
/// The source of a config left at its default (Kafka's DEFAULT_CONFIG).
const CONFIG_SOURCE_DEFAULT_CONFIG: i8 = 5;

/// The ConfigType DescribeConfigs reports for a topic config.
fn config_type(kind: ConfigKind) -> i8 {
    match kind {
        ConfigKind::Boolean => CONFIG_TYPE_BOOLEAN,
        ConfigKind::Int { .. } => CONFIG_TYPE_INT,
        ConfigKind::Long { .. } => CONFIG_TYPE_LONG,
        ConfigKind::Double { .. } => CONFIG_TYPE_DOUBLE,
        ConfigKind::Choice(_) => CONFIG_TYPE_STRING,
        ConfigKind::List(_) => CONFIG_TYPE_LIST,
    }
}

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let snapshot = ctx.shard.metadata();
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let entry = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let wanted = |name: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let configs = match resource.resource_type {
                RESOURCE_TOPIC => topic_configs(
                    &ctx.shard.config,
                    &snapshot,
                    resource.resource_name.as_str(),
                ),
                RESOURCE_BROKER if resource.resource_name.is_empty() => {
                    Ok(cluster_default_configs(&snapshot))
                }
                RESOURCE_BROKER
                    if resource.resource_name.as_str() == ctx.shard.config.node_id.to_string() =>
                {
                    Ok(broker_configs(&ctx.shard.config, &snapshot))
                }
                RESOURCE_BROKER => Err((ResponseError::InvalidRequest, "no such broker")),
                _ => Err((ResponseError::InvalidRequest, "unsupported resource type")),
            };
            match configs {
                Ok(configs) => entry.with_configs(
                    configs
                        .into_iter()
                        .filter(|c| wanted(c.name.as_str()))
                        .collect(),
                ),
                Err((error, message)) => entry
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_static_str(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn config_entry(
    name: &str,
    value: String,
    source: i8,
    config_type: i8,
) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value)))
        .with_config_source(source)
        .with_config_type(config_type)
}

/// Topic configs whose default is the broker config of the same name (Kafka's synonyms): a
/// topic that does not set one inherits the broker's value and its source.
const TOPIC_CONFIGS_FROM_BROKER: &[&str] = &["min.insync.replicas"];

fn topic_configs(
    config: &ServeArgs,
    snapshot: &MetadataSnapshot,
    topic: &str,
) -> Result<Vec<DescribeConfigsResourceResult>, (ResponseError, &'static str)> {
    let meta = snapshot
        .topics
        .get(topic)
        .ok_or((ResponseError::UnknownTopicOrPartition, "unknown topic"))?;
    let server = config;
    Ok(TOPIC_CONFIGS
        .iter()
        .map(|config| {
            let name = config.name;
            let (value, source) = match meta.configs().get(name) {
                Some(value) => (value.clone(), CONFIG_SOURCE_TOPIC),
                None if TOPIC_CONFIGS_FROM_BROKER.contains(&name) => {
                    broker_value(server, snapshot, name, config.default)
                }
                None => (config.default.to_string(), CONFIG_SOURCE_DEFAULT),
            };
            config_entry(name, value, source, config_type(config.kind))
        })
        .collect())
}

/// The cluster-wide dynamic configs that are set, as Kafka describes the default broker
/// resource.
fn cluster_default_configs(snapshot: &MetadataSnapshot) -> Vec<DescribeConfigsResourceResult> {
    BROKER_CONFIGS
        .iter()
        .filter_map(|config| {
            let value = snapshot.broker_default_configs.get(config.name)?;
            Some(config_entry(
                config.name,
                value.clone(),
                CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER,
                config_type(config.kind),
            ))
        })
        .collect()
}

/// This broker's configs: the read-only ones from its command line, then every dynamic one
/// with the value and source that apply (per broker, cluster-wide, or Kafka's default).
fn broker_configs(
    config: &ServeArgs,
    snapshot: &MetadataSnapshot,
) -> Vec<DescribeConfigsResourceResult> {
    let mut entries = read_only_broker_configs(config);
    entries.extend(BROKER_CONFIGS.iter().map(|c| {
        let (value, source) = broker_value(config, snapshot, c.name, c.default);
        config_entry(c.name, value, source, config_type(c.kind))
    }));
    entries
}

/// The value of dynamic broker config `name` on this broker and its source: set for this broker,
/// set cluster-wide, given on the command line (only when it differs from Kafka's default, so
/// that a broker started without the flag reports the default as Kafka does), else `default`.
fn broker_value(
    config: &ServeArgs,
    snapshot: &MetadataSnapshot,
    name: &str,
    default: &str,
) -> (String, i8) {
    let per_broker = (snapshot.broker_configs_of(config.node_id)).and_then(|c| c.get(name));
    match (per_broker, snapshot.broker_default_configs.get(name)) {
        (Some(value), _) => (value.clone(), CONFIG_SOURCE_DYNAMIC_BROKER),
        (None, Some(value)) => (value.clone(), CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER),
        (None, None) => match command_line_value(config, name) {
            Some(value) if value != default => (value, CONFIG_SOURCE_STATIC_BROKER),
            _ => (default.to_string(), CONFIG_SOURCE_DEFAULT),
        },
    }
}

/// The value a dynamic broker config takes from the command line, for those that have a flag.
fn command_line_value(config: &ServeArgs, name: &str) -> Option<String> {
    match name {
        "min.insync.replicas" => Some(config.min_insync_replicas.to_string()),
        _ => None,
    }
}

/// The configs of `broker_config::READ_ONLY_CONFIGS`, marked read-only as Kafka marks them.
fn read_only_broker_configs(config: &ServeArgs) -> Vec<DescribeConfigsResourceResult> {
    let source = CONFIG_SOURCE_STATIC_BROKER;
    let mut entries = vec![
        config_entry(
            "broker.id",
            config.node_id.to_string(),
            source,
            CONFIG_TYPE_INT,
        ),
        config_entry(
            "log.dirs",
            config.data_dir.display().to_string(),
            source,
            CONFIG_TYPE_STRING,
        ),
        config_entry(
            "num.partitions",
            config.default_partitions.to_string(),
            source,
            CONFIG_TYPE_INT,
        ),
        config_entry(
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
            source,
            CONFIG_TYPE_BOOLEAN,
        ),
        config_entry(
            "log.segment.bytes",
            config.segment_bytes.to_string(),
            source,
            CONFIG_TYPE_INT,
        ),
        config_entry(
            "default.replication.factor",
            config.default_replication_factor.to_string(),
            source,
            CONFIG_TYPE_INT,
        ),
    ];
    entries.extend(optional_read_only_configs(config));
    assert!(entries
        .iter()
        .all(|e| READ_ONLY_CONFIGS.contains(&e.name.as_str())));
    entries
        .into_iter()
        .map(|entry| entry.with_read_only(true))
        .collect()
}

/// The read-only configs that have no value unless the command line gives one (Kafka reports
/// them as null, from the default).
fn optional_read_only_configs(config: &ServeArgs) -> [DescribeConfigsResourceResult; 2] {
    let entry = |name: &str, value: Option<String>, config_type: i8| {
        let source = match value {
            Some(_) => CONFIG_SOURCE_STATIC_BROKER,
            None => CONFIG_SOURCE_DEFAULT_CONFIG,
        };
        config_entry(name, String::new(), source, config_type)
            .with_value(value.map(StrBytes::from_string))
    };
    let selector = config
        .replica_selector_class
        .map(|s| s.class_name().to_string());
    [
        entry("broker.rack", config.rack.clone(), CONFIG_TYPE_STRING),
        entry("replica.selector.class", selector, CONFIG_TYPE_CLASS),
    ]
}
