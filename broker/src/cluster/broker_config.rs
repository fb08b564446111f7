//! The broker-level configs: the dynamic ones Kafka 3.x/4.x lets AlterConfigs and
//! IncrementalAlterConfigs change (per broker, or cluster-wide with an empty resource name), and
//! the read-only ones this broker takes from its command line.
//!
//! Dynamic values are validated by type and range as Kafka's `ConfigDef` declares them, kept in
//! the metadata (`meta/topics.json`) and reported by DescribeConfigs with their source. Sluice
//! does not act on them (it has no cleaner, thread pools or SASL to tune); they exist so that
//! tools written for Kafka, which set and read them back, work unchanged.

use crate::cluster::topic_config::{
    int_at_least, long_at_least, validate_value, ConfigKind, INT_MAX, LONG_MAX, LONG_MAX_TEXT,
};

/// Who may change a broker config, as Kafka's `DynamicBrokerConfig` allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scope {
    /// Per broker or cluster-wide.
    Dynamic,
    /// Per broker only (Kafka's listener and SASL settings).
    PerBroker,
}

/// One dynamic broker config.
#[derive(Debug, Clone, Copy)]
pub struct BrokerConfig {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: ConfigKind,
    pub scope: Scope,
}

const INT_MAX_TEXT: &str = "2147483647";

/// Configs Kafka declares without a range.
const INT_ANY: ConfigKind = ConfigKind::Int {
    min: i32::MIN as i64,
    max: INT_MAX,
};
const LONG_ANY: ConfigKind = ConfigKind::Long {
    min: i64::MIN,
    max: LONG_MAX,
};
const DOUBLE_ANY: ConfigKind = ConfigKind::Double {
    min: f64::MIN,
    max: f64::MAX,
};

const fn dynamic(name: &'static str, default: &'static str, kind: ConfigKind) -> BrokerConfig {
    BrokerConfig {
        name,
        default,
        kind,
        scope: Scope::Dynamic,
    }
}

const fn per_broker(name: &'static str, default: &'static str, kind: ConfigKind) -> BrokerConfig {
    BrokerConfig {
        name,
        default,
        kind,
        scope: Scope::PerBroker,
    }
}

/// The dynamic broker configs Sluice accepts, with Kafka's defaults and ranges, sorted by name.
pub const BROKER_CONFIGS: &[BrokerConfig] = &[
    dynamic("background.threads", "10", int_at_least(1)),
    dynamic(
        "compression.type",
        "producer",
        ConfigKind::Choice(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
    ),
    dynamic("log.cleaner.backoff.ms", "15000", long_at_least(0)),
    dynamic("log.cleaner.dedupe.buffer.size", "134217728", LONG_ANY),
    dynamic(
        "log.cleaner.delete.retention.ms",
        "86400000",
        long_at_least(0),
    ),
    dynamic("log.cleaner.io.buffer.load.factor", "0.9", DOUBLE_ANY),
    dynamic("log.cleaner.io.buffer.size", "524288", int_at_least(0)),
    dynamic(
        "log.cleaner.io.max.bytes.per.second",
        "1.7976931348623157E308",
        DOUBLE_ANY,
    ),
    dynamic(
        "log.cleaner.max.compaction.lag.ms",
        LONG_MAX_TEXT,
        long_at_least(1),
    ),
    dynamic(
        "log.cleaner.min.cleanable.ratio",
        "0.5",
        ConfigKind::Double { min: 0.0, max: 1.0 },
    ),
    dynamic("log.cleaner.min.compaction.lag.ms", "0", long_at_least(0)),
    dynamic("log.cleaner.threads", "1", int_at_least(0)),
    dynamic(
        "log.cleanup.policy",
        "delete",
        ConfigKind::List(Some(&["compact", "delete"])),
    ),
    dynamic(
        "log.flush.interval.messages",
        LONG_MAX_TEXT,
        long_at_least(1),
    ),
    dynamic("log.index.interval.bytes", "4096", int_at_least(0)),
    dynamic(
        "log.message.timestamp.type",
        "CreateTime",
        ConfigKind::Choice(&["CreateTime", "LogAppendTime"]),
    ),
    dynamic("log.preallocate", "false", ConfigKind::Boolean),
    dynamic("log.retention.bytes", "-1", LONG_ANY),
    dynamic("log.retention.ms", "604800000", long_at_least(-1)),
    dynamic("log.segment.delete.delay.ms", "60000", long_at_least(0)),
    dynamic(
        "max.connection.creation.rate",
        INT_MAX_TEXT,
        int_at_least(0),
    ),
    dynamic("max.connections", INT_MAX_TEXT, int_at_least(0)),
    dynamic("max.connections.per.ip", INT_MAX_TEXT, int_at_least(0)),
    dynamic("message.max.bytes", "1048588", int_at_least(0)),
    dynamic("metric.reporters", "", ConfigKind::List(None)),
    dynamic("min.insync.replicas", "1", int_at_least(1)),
    dynamic("num.io.threads", "8", int_at_least(1)),
    dynamic("num.network.threads", "3", int_at_least(1)),
    dynamic("num.recovery.threads.per.data.dir", "2", int_at_least(1)),
    dynamic("num.replica.fetchers", "1", INT_ANY),
    dynamic("producer.id.expiration.ms", "86400000", int_at_least(1)),
    per_broker("sasl.enabled.mechanisms", "GSSAPI", ConfigKind::List(None)),
    per_broker("sasl.kerberos.min.time.before.relogin", "60000", LONG_ANY),
    per_broker("sasl.kerberos.ticket.renew.jitter", "0.05", DOUBLE_ANY),
    per_broker(
        "sasl.kerberos.ticket.renew.window.factor",
        "0.8",
        DOUBLE_ANY,
    ),
    dynamic(
        "unclean.leader.election.enable",
        "false",
        ConfigKind::Boolean,
    ),
];

/// The configs this broker takes from its command line (or fixes): reported, never changed at
/// run time, as Kafka refuses to change its read-only configs.
pub const READ_ONLY_CONFIGS: &[&str] = &[
    "auto.create.topics.enable",
    "broker.id",
    "broker.rack",
    "default.replication.factor",
    "log.dirs",
    "log.segment.bytes",
    "num.partitions",
    "replica.selector.class",
];

pub fn broker_config(name: &str) -> Option<&'static BrokerConfig> {
    BROKER_CONFIGS.iter().find(|c| c.name == name)
}

/// Checks that `name` may be set to `value` per broker (`per_broker`) or cluster-wide, with
/// Kafka's wording where Kafka has one.
pub fn validate_config(name: &str, value: &str, per_broker: bool) -> Result<(), String> {
    let Some(config) = broker_config(name) else {
        if READ_ONLY_CONFIGS.contains(&name) {
            return Err(format!(
                "Cannot update these configs dynamically: Set({name})"
            ));
        }
        return Err(format!("unknown broker config {name}"));
    };
    if !per_broker && config.scope == Scope::PerBroker {
        return Err(format!(
            "Cannot update these configs at default cluster level, broker id must be \
             specified: Set({name})"
        ));
    }
    validate_value(name, config.kind, value)
}

/// The default of a list config (APPEND and SUBTRACT start from it), `None` for other configs.
pub fn list_default(name: &str) -> Option<&'static str> {
    broker_config(name)
        .filter(|c| matches!(c.kind, ConfigKind::List(_)))
        .map(|c| c.default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_every_default_is_valid() {
        assert!(BROKER_CONFIGS.windows(2).all(|w| w[0].name < w[1].name));
        for config in BROKER_CONFIGS {
            assert_eq!(validate_config(config.name, config.default, true), Ok(()));
        }
    }

    #[test]
    fn unknown_read_only_and_out_of_scope_configs_are_refused() {
        assert!(validate_config("background.threads", "9", false).is_ok());
        assert!(validate_config("background.threads", "0", true).is_err());
        assert!(validate_config("background.threads", "many", true).is_err());
        assert!(validate_config("log.cleanup.policy", "compact,delete", false).is_ok());
        assert!(validate_config("log.cleanup.policy", "shred", false).is_err());
        assert!(validate_config("sasl.kerberos.min.time.before.relogin", "58000", true).is_ok());
        assert!(validate_config("sasl.kerberos.min.time.before.relogin", "58000", false).is_err());
        assert!(validate_config("broker.id", "7", true)
            .unwrap_err()
            .starts_with("Cannot update these configs dynamically"));
        assert!(validate_config("no.such.config", "1", true).is_err());
        assert_eq!(list_default("log.cleanup.policy"), Some("delete"));
        assert_eq!(list_default("background.threads"), None);
    }
}
