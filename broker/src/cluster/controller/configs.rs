//! The edits of config commands: AlterConfigs and IncrementalAlterConfigs for topics and for
//! brokers; each deterministic (see `command.rs`).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use super::{Applied, ItemResults, Refusal};
use crate::cluster::metadata::MetadataSnapshot;
use crate::cluster::{broker_config, election, topic_config};

/// A change to one topic's explicit configs.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum ConfigChange {
    /// AlterConfigs: these become the topic's explicit configs, replacing all others.
    Replace(BTreeMap<String, String>),
    /// IncrementalAlterConfigs: (key, operation, value) with Kafka's operations 0 SET,
    /// 1 DELETE, 2 APPEND, 3 SUBTRACT (the last two for list configs).
    Incremental(Vec<(String, i8, Option<String>)>),
}

/// Which broker configs a BROKER resource names.
#[derive(Debug, Clone, Copy, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum BrokerTarget {
    /// One broker's own (the resource named by its node id).
    Broker(i32),
    /// The cluster-wide defaults (the resource with an empty name).
    ClusterDefault,
}

pub(super) fn apply_topic_configs(
    next: &mut MetadataSnapshot,
    changes: Vec<(String, ConfigChange)>,
) -> ItemResults {
    let live: Vec<i32> = next.live_brokers().map(|broker| broker.id).collect();
    (changes.into_iter())
        .map(|(topic, change)| {
            let meta = next.topics.get_mut(&topic).ok_or_else(|| {
                (
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {topic} does not exist"),
                )
            });
            let result = meta.and_then(|meta| {
                let mut configs = changed_configs(meta.configs(), change, &TopicRules)?;
                topic_config::drop_ignored(&topic, &mut configs);
                meta.set_configs(configs);
                election::elect_unclean_where_enabled(meta, &live);
                Ok(Applied::Done)
            });
            (topic, result)
        })
        .collect()
}

pub(super) fn apply_broker_configs(
    next: &mut MetadataSnapshot,
    changes: Vec<(BrokerTarget, ConfigChange)>,
) -> ItemResults {
    (changes.into_iter())
        .map(|(target, change)| {
            let (configs, per_broker) = match target {
                BrokerTarget::Broker(id) => (next.broker_configs.entry(id).or_default(), true),
                BrokerTarget::ClusterDefault => (&mut next.broker_default_configs, false),
            };
            let result = changed_configs(configs, change, &BrokerRules { per_broker })
                .map(|changed| *configs = changed);
            if let BrokerTarget::Broker(id) = target {
                // No empty entries: the snapshot is the same whether a broker's configs were
                // never set or all deleted.
                next.broker_configs
                    .retain(|broker, configs| *broker != id || !configs.is_empty());
            }
            (String::new(), result.map(|()| Applied::Done))
        })
        .collect()
}

/// How the entries of one kind of resource are checked.
trait ConfigRules {
    /// Checks one entry; the refusal carries the error code Kafka gives.
    fn validate(&self, key: &str, value: &str) -> Result<(), Refusal>;
    /// The default of a list config (APPEND and SUBTRACT apply), `None` for other configs.
    fn list_default(&self, key: &str) -> Option<&'static str>;
}

struct TopicRules;

impl ConfigRules for TopicRules {
    fn validate(&self, key: &str, value: &str) -> Result<(), Refusal> {
        topic_config::validate_config(key, value).map_err(|m| (ResponseError::InvalidConfig, m))
    }

    fn list_default(&self, key: &str) -> Option<&'static str> {
        topic_config::is_list(key).then(|| topic_config::config_default(key).unwrap_or(""))
    }
}

/// Broker configs, per broker or cluster-wide. Kafka refuses a broker config it cannot apply
/// with INVALID_REQUEST (KAFKA-13609), not INVALID_CONFIG.
struct BrokerRules {
    per_broker: bool,
}

impl ConfigRules for BrokerRules {
    fn validate(&self, key: &str, value: &str) -> Result<(), Refusal> {
        broker_config::validate_config(key, value, self.per_broker)
            .map_err(|m| (ResponseError::InvalidRequest, m))
    }

    fn list_default(&self, key: &str) -> Option<&'static str> {
        broker_config::list_default(key)
    }
}

/// The explicit configs after `change`, every entry validated.
fn changed_configs(
    current: &BTreeMap<String, String>,
    change: ConfigChange,
    rules: &dyn ConfigRules,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut configs = match &change {
        ConfigChange::Replace(_) => BTreeMap::new(),
        ConfigChange::Incremental(_) => current.clone(),
    };
    match change {
        ConfigChange::Replace(all) => configs = all,
        ConfigChange::Incremental(ops) => {
            for (key, op, value) in ops {
                apply_config_op(&mut configs, key, op, value, rules)?;
            }
        }
    }
    for (key, value) in &configs {
        rules.validate(key, value)?;
    }
    Ok(configs)
}

fn apply_config_op(
    configs: &mut BTreeMap<String, String>,
    key: String,
    op: i8,
    value: Option<String>,
    rules: &dyn ConfigRules,
) -> Result<(), Refusal> {
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    const APPEND: i8 = 2;
    const SUBTRACT: i8 = 3;
    let invalid = |m: String| (ResponseError::InvalidConfig, m);
    match op {
        SET => {
            let value = value.ok_or_else(|| invalid(format!("SET of {key} needs a value")))?;
            configs.insert(key, value);
        }
        DELETE => {
            configs.remove(&key);
        }
        APPEND | SUBTRACT if rules.list_default(&key).is_some() => {
            let value = value.ok_or_else(|| invalid(format!("{key} needs a value")))?;
            let default = rules.list_default(&key).unwrap_or_default();
            let current = configs
                .get(&key)
                .map_or(default, String::as_str)
                .to_string();
            let mut items: Vec<String> = topic_config::list_items(&current)
                .map(str::to_string)
                .collect();
            for item in topic_config::list_items(&value) {
                if op == APPEND && !items.iter().any(|i| i == item) {
                    items.push(item.to_string());
                } else if op == SUBTRACT {
                    items.retain(|i| i != item);
                }
            }
            configs.insert(key, items.join(","));
        }
        APPEND | SUBTRACT => return Err(invalid(format!("{key} is not a list config"))),
        _ => {
            return Err((
                ResponseError::InvalidRequest,
                format!("unknown config operation {op}"),
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn incremental_config_operations() {
        let current = configs(&[("retention.ms", "1000"), ("segment.bytes", "4096")]);
        let change = ConfigChange::Incremental(vec![
            ("retention.ms".into(), 0, Some("5000".into())),
            ("segment.bytes".into(), 1, None),
            ("cleanup.policy".into(), 2, Some("compact".into())),
        ]);
        assert_eq!(
            changed_configs(&current, change, &TopicRules).unwrap(),
            configs(&[
                ("cleanup.policy", "delete,compact"),
                ("retention.ms", "5000")
            ])
        );
        let bad = ConfigChange::Incremental(vec![("retention.ms".into(), 0, Some("soon".into()))]);
        assert_eq!(
            changed_configs(&current, bad, &TopicRules).unwrap_err().0,
            ResponseError::InvalidConfig
        );
        let not_a_list =
            ConfigChange::Incremental(vec![("retention.ms".into(), 2, Some("1".into()))]);
        assert_eq!(
            changed_configs(&current, not_a_list, &TopicRules)
                .unwrap_err()
                .0,
            ResponseError::InvalidConfig
        );
    }

    #[test]
    fn replace_drops_configs_not_named() {
        let current = configs(&[("retention.ms", "1000")]);
        let change = ConfigChange::Replace(configs(&[("segment.bytes", "2097152")]));
        assert_eq!(
            changed_configs(&current, change, &TopicRules).unwrap(),
            configs(&[("segment.bytes", "2097152")])
        );
    }
}
