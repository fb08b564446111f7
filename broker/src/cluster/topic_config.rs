//! The topic-level configs Kafka 3.x and 4.x define: name, type, default and legal range.
//!
//! Every one is accepted and reported by DescribeConfigs, so that clients and tools written for
//! Kafka (which read back every config and write them all again, as `kafka-configs` and
//! librdkafka's tests do) work unchanged. Sluice acts on some of them (retention, segments,
//! flushing, `max.message.bytes`); the others are stored and reported only. Configs Kafka 4.0
//! removed are accepted and dropped with a warning, as Redpanda does.

use std::collections::BTreeMap;

/// Smallest `segment.bytes` (and `--segment-bytes`) accepted, as in Kafka 4.0: every segment
/// holds a file descriptor while it is active, so tiny segments turn a stream of small batches
/// into a stream of new files. Tests that want tiny segments use `internal.segment.bytes`.
pub const SEGMENT_BYTES_MIN: i64 = 1 << 20;

/// Smallest `internal.segment.bytes`: one batch header (Kafka's old `segment.bytes` minimum).
pub const INTERNAL_SEGMENT_BYTES_MIN: i64 = 14;

/// Kafka's internal topic config for tests: when set it replaces `segment.bytes` with a value
/// that may lie below [`SEGMENT_BYTES_MIN`]. It is not listed by DescribeConfigs.
pub const INTERNAL_SEGMENT_BYTES: &str = "internal.segment.bytes";

/// The topic configs Sluice acts on, parsed once from a topic's explicit configs and the
/// defaults when its metadata is built; the string map stays the source for DescribeConfigs.
/// Values were validated when set, so a value that does not parse (only a hand-edited metadata
/// file holds one) falls back as the field says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    /// `retention.ms`; negative keeps data forever.
    pub retention_ms: i64,
    /// `retention.bytes`; negative keeps data forever.
    pub retention_bytes: i64,
    /// `segment.ms`.
    pub segment_ms: i64,
    /// `internal.segment.bytes`, else `segment.bytes`, when set explicitly; otherwise the
    /// broker's `--segment-bytes` applies.
    pub segment_bytes: Option<u64>,
    /// `index.interval.bytes`, at least 1.
    pub index_interval_bytes: u64,
    /// `flush.messages`, at least 1; `i64::MAX` never flushes.
    pub flush_messages: i64,
    /// `flush.ms`, at least 0; `i64::MAX` never flushes.
    pub flush_ms: i64,
    /// `max.message.bytes`; `i64::MAX` if unreadable.
    pub max_message_bytes: i64,
    /// `message.timestamp.type` is `LogAppendTime`.
    pub log_append_time: bool,
    /// `message.timestamp.before.max.ms`.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy` includes `delete`: retention trims old segments.
    pub cleanup_delete: bool,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub cleanup_compact: bool,
    /// `unclean.leader.election.enable`: a replica outside the ISR may lead when no ISR member
    /// is live (see `cluster::membership`).
    pub unclean_leader_election: bool,
    /// `min.insync.replicas` when the topic sets it; otherwise the broker's default applies
    /// (its dynamic config, else `--min-insync-replicas`). Read only by acks=all produce.
    pub min_insync_replicas: Option<i32>,
}

impl TopicConfig {
    /// Parses the configs Sluice acts on from a topic's explicit configs.
    pub fn parse(explicit: &BTreeMap<String, String>) -> TopicConfig {
        let text = |key: &str| {
            explicit
                .get(key)
                .map(String::as_str)
                .or(config_default(key))
        };
        let long = |key: &str, fallback: i64| {
            text(key)
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(fallback)
        };
        let policy = text("cleanup.policy").unwrap_or("delete");
        let has_policy = |wanted: &str| policy.split(',').any(|p| p.trim() == wanted);
        TopicConfig {
            retention_ms: long("retention.ms", -1),
            retention_bytes: long("retention.bytes", -1),
            segment_ms: long("segment.ms", storage::SEGMENT_MS_DEFAULT),
            segment_bytes: [INTERNAL_SEGMENT_BYTES, "segment.bytes"]
                .iter()
                .find_map(|key| explicit.get(*key)?.parse::<u64>().ok()),
            index_interval_bytes: long("index.interval.bytes", 4096).max(1) as u64,
            flush_messages: long("flush.messages", i64::MAX).max(1),
            flush_ms: long("flush.ms", i64::MAX).max(0),
            max_message_bytes: long("max.message.bytes", i64::MAX),
            log_append_time: text("message.timestamp.type") == Some("LogAppendTime"),
            timestamp_before_max_ms: long("message.timestamp.before.max.ms", i64::MAX),
            timestamp_after_max_ms: long("message.timestamp.after.max.ms", i64::MAX),
            cleanup_delete: has_policy("delete"),
            cleanup_compact: has_policy("compact"),
            unclean_leader_election: text("unclean.leader.election.enable")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")),
            min_insync_replicas: (explicit.get("min.insync.replicas"))
                .map(|v| v.parse::<i32>().unwrap_or(1)),
        }
    }
}

/// The value type of a config, with its legal values, as Kafka's `ConfigDef` declares it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConfigKind {
    Boolean,
    /// A 32-bit integer in `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// A 64-bit integer in `min..=max`.
    Long {
        min: i64,
        max: i64,
    },
    /// A floating-point number in `min..=max`.
    Double {
        min: f64,
        max: f64,
    },
    /// One of the listed strings.
    Choice(&'static [&'static str]),
    /// A comma-separated list; its items are one of the listed strings, or anything if `None`.
    List(Option<&'static [&'static str]>),
}

/// The definition of one topic config.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: ConfigKind,
}

pub const INT_MAX: i64 = i32::MAX as i64;
const LONG_MIN: i64 = i64::MIN;
pub const LONG_MAX: i64 = i64::MAX;
pub const LONG_MAX_TEXT: &str = "9223372036854775807";

pub const fn long_at_least(min: i64) -> ConfigKind {
    ConfigKind::Long { min, max: LONG_MAX }
}

pub const fn int_at_least(min: i64) -> ConfigKind {
    ConfigKind::Int { min, max: INT_MAX }
}

const fn config(name: &'static str, default: &'static str, kind: ConfigKind) -> ConfigDef {
    ConfigDef {
        name,
        default,
        kind,
    }
}

/// Every topic config Sluice accepts, with Kafka's defaults and ranges, sorted by name.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    config(
        "cleanup.policy",
        "delete",
        ConfigKind::List(Some(&["compact", "delete"])),
    ),
    config(
        "compression.gzip.level",
        "-1",
        ConfigKind::Int { min: -1, max: 9 },
    ),
    config(
        "compression.lz4.level",
        "9",
        ConfigKind::Int { min: 1, max: 17 },
    ),
    config(
        "compression.type",
        "producer",
        ConfigKind::Choice(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
    ),
    config(
        "compression.zstd.level",
        "3",
        ConfigKind::Int {
            min: -131_072,
            max: 22,
        },
    ),
    config("delete.retention.ms", "86400000", long_at_least(0)),
    config("file.delete.delay.ms", "60000", long_at_least(0)),
    config("flush.messages", LONG_MAX_TEXT, long_at_least(1)),
    config("flush.ms", LONG_MAX_TEXT, long_at_least(0)),
    config(
        "follower.replication.throttled.replicas",
        "",
        ConfigKind::List(None),
    ),
    config("index.interval.bytes", "4096", int_at_least(0)),
    config(
        "leader.replication.throttled.replicas",
        "",
        ConfigKind::List(None),
    ),
    config("local.retention.bytes", "-2", long_at_least(-2)),
    config("local.retention.ms", "-2", long_at_least(-2)),
    config("max.compaction.lag.ms", LONG_MAX_TEXT, long_at_least(1)),
    config("max.message.bytes", "1048588", int_at_least(0)),
    config(
        "message.timestamp.after.max.ms",
        LONG_MAX_TEXT,
        long_at_least(0),
    ),
    config(
        "message.timestamp.before.max.ms",
        LONG_MAX_TEXT,
        long_at_least(0),
    ),
    config(
        "message.timestamp.type",
        "CreateTime",
        ConfigKind::Choice(&["CreateTime", "LogAppendTime"]),
    ),
    config(
        "min.cleanable.dirty.ratio",
        "0.5",
        ConfigKind::Double { min: 0.0, max: 1.0 },
    ),
    config("min.compaction.lag.ms", "0", long_at_least(0)),
    config("min.insync.replicas", "1", int_at_least(1)),
    config("preallocate", "false", ConfigKind::Boolean),
    config("remote.log.copy.disable", "false", ConfigKind::Boolean),
    config("remote.log.delete.on.disable", "false", ConfigKind::Boolean),
    config("remote.storage.enable", "false", ConfigKind::Boolean),
    config("retention.bytes", "-1", long_at_least(LONG_MIN)),
    config("retention.ms", "604800000", long_at_least(-1)),
    config(
        "segment.bytes",
        "1073741824",
        int_at_least(SEGMENT_BYTES_MIN),
    ),
    config("segment.index.bytes", "10485760", int_at_least(4)),
    config("segment.jitter.ms", "0", long_at_least(0)),
    config("segment.ms", "604800000", long_at_least(1)),
    config(
        "unclean.leader.election.enable",
        "false",
        ConfigKind::Boolean,
    ),
];

/// Configs Kafka 3.x defines and 4.0 removed (message format v0/v1 and down-conversion are
/// gone): accepted so that older clients keep working, then dropped with a warning, except
/// [`TIMESTAMP_DIFFERENCE_MAX_MS`], which [`drop_ignored`] turns into its successors.
pub const TOPIC_CONFIGS_IGNORED: &[&str] = &[
    "message.downconversion.enable",
    "message.format.version",
    "message.timestamp.difference.max.ms",
];

/// Kafka 3.x's bound on how far a CreateTime record's timestamp may lie from the broker's
/// clock, either way. Kafka 3.6 to 3.9 use it for `message.timestamp.before.max.ms` and
/// `message.timestamp.after.max.ms` (KIP-937) when those are not set; 4.0 removed it.
pub const TIMESTAMP_DIFFERENCE_MAX_MS: &str = "message.timestamp.difference.max.ms";

/// The configs that replaced [`TIMESTAMP_DIFFERENCE_MAX_MS`].
const TIMESTAMP_WINDOW_CONFIGS: [&str; 2] = [
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
];

pub fn config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|c| c.name == name)
}

pub fn config_default(name: &str) -> Option<&'static str> {
    config_def(name).map(|c| c.default)
}

/// Checks a topic config entry as Kafka would: a known (or ignored) name, a value of the
/// config's type within its range.
pub fn validate_config(name: &str, value: &str) -> Result<(), String> {
    if name == TIMESTAMP_DIFFERENCE_MAX_MS {
        return validate_value(name, long_at_least(0), value);
    }
    if TOPIC_CONFIGS_IGNORED.contains(&name) {
        return Ok(());
    }
    if name == INTERNAL_SEGMENT_BYTES {
        return validate_value(name, int_at_least(INTERNAL_SEGMENT_BYTES_MIN), value);
    }
    let Some(config) = config_def(name) else {
        return Err(format!("unknown topic config {name}"));
    };
    if name == "remote.storage.enable" && value == "true" {
        return Err("tiered storage is not supported: remote.storage.enable must be false".into());
    }
    validate_value(name, config.kind, value)
}

pub fn validate_value(name: &str, kind: ConfigKind, value: &str) -> Result<(), String> {
    match kind {
        ConfigKind::Boolean if matches!(value, "true" | "false") => Ok(()),
        ConfigKind::Boolean => Err(format!("config {name} needs true or false, got {value:?}")),
        ConfigKind::Int { min, max } | ConfigKind::Long { min, max } => {
            let parsed: i64 = value
                .trim()
                .parse()
                .map_err(|_| format!("config {name} needs an integer, got {value:?}"))?;
            out_of_range(name, value, parsed < min, parsed > max, min, max)
        }
        ConfigKind::Double { min, max } => {
            let parsed: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("config {name} needs a number, got {value:?}"))?;
            out_of_range(name, value, parsed < min, parsed > max, min, max)
        }
        ConfigKind::Choice(legal) if legal.contains(&value) => Ok(()),
        ConfigKind::Choice(legal) => Err(format!(
            "invalid {name} {value:?}: must be one of {}",
            legal.join(", ")
        )),
        ConfigKind::List(None) => Ok(()),
        ConfigKind::List(Some(legal)) => match list_items(value).find(|i| !legal.contains(i)) {
            Some(item) => Err(format!(
                "invalid {name} item {item:?}: must be among {}",
                legal.join(", ")
            )),
            None => Ok(()),
        },
    }
}

/// Kafka's wording for a number outside its config's range.
fn out_of_range(
    name: &str,
    value: &str,
    below: bool,
    above: bool,
    min: impl std::fmt::Display,
    max: impl std::fmt::Display,
) -> Result<(), String> {
    let bound = match (below, above) {
        (false, false) => return Ok(()),
        (true, _) => format!("at least {min}"),
        (false, true) => format!("no more than {max}"),
    };
    Err(format!(
        "Invalid value {value} for configuration {name}: Value must be {bound}"
    ))
}

/// The items of a list config's value.
pub fn list_items(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Whether APPEND and SUBTRACT (IncrementalAlterConfigs) apply to this config.
pub fn is_list(name: &str) -> bool {
    config_def(name).is_some_and(|c| matches!(c.kind, ConfigKind::List(_)))
}

/// Drops the configs Sluice accepts but ignores, logging a warning for each. A
/// [`TIMESTAMP_DIFFERENCE_MAX_MS`] becomes the value of each of its successors not set
/// explicitly, as Kafka 3.6 to 3.9 apply it, so that a 3.x client's bound is enforced.
pub fn drop_ignored(topic: &str, configs: &mut BTreeMap<String, String>) {
    if let Some(value) = configs.remove(TIMESTAMP_DIFFERENCE_MAX_MS) {
        for successor in TIMESTAMP_WINDOW_CONFIGS {
            configs
                .entry(successor.to_string())
                .or_insert_with(|| value.clone());
        }
        log::info!(
            "topic {topic}: {TIMESTAMP_DIFFERENCE_MAX_MS}={value}, which Kafka 4.0 removed, \
             applies as {} where not set",
            TIMESTAMP_WINDOW_CONFIGS.join(" and ")
        );
    }
    configs.retain(|name, value| {
        let ignored = TOPIC_CONFIGS_IGNORED.contains(&name.as_str());
        if ignored {
            log::warn!("topic {topic}: ignoring {name}={value}, which Kafka 4.0 removed");
        }
        !ignored
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_every_default_is_valid() {
        assert!(TOPIC_CONFIGS.windows(2).all(|w| w[0].name < w[1].name));
        for config in TOPIC_CONFIGS {
            assert_eq!(validate_config(config.name, config.default), Ok(()));
        }
    }

    #[test]
    fn values_are_checked_by_type_and_range() {
        assert!(validate_config("retention.ms", "1000").is_ok());
        assert!(validate_config("retention.ms", "soon").is_err());
        assert!(validate_config("retention.ms", "-2").is_err());
        assert!(validate_config("retention.ms", "-1").is_ok());
        assert!(validate_config("segment.ms", "0").is_err());
        assert!(validate_config("segment.ms", "1").is_ok());
        assert!(validate_config("flush.messages", "0").is_err());
        assert!(validate_config("flush.messages", "1").is_ok());
        assert!(validate_config("flush.ms", "-1").is_err());
        assert!(validate_config("flush.ms", "0").is_ok());
        assert!(validate_config("max.message.bytes", "2147483648").is_err());
        assert!(validate_config("delete.retention.ms", "0").is_ok());
        assert!(validate_config("delete.retention.ms", "-1").is_err());
        assert!(validate_config("min.cleanable.dirty.ratio", "0.9").is_ok());
        assert!(validate_config("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate_config("preallocate", "true").is_ok());
        assert!(validate_config("preallocate", "yes").is_err());
        assert!(validate_config("compression.type", "zstd").is_ok());
        assert!(validate_config("compression.type", "brotli").is_err());
        assert!(validate_config("cleanup.policy", "compact").is_ok());
        assert!(validate_config("cleanup.policy", "delete,compact").is_ok());
        assert!(validate_config("cleanup.policy", "shred").is_err());
        assert!(validate_config("leader.replication.throttled.replicas", "").is_ok());
        assert!(validate_config("remote.storage.enable", "true").is_err());
        assert!(validate_config("no.such.config", "1").is_err());
        assert!(validate_config("segment.bytes", "14").is_err());
        assert!(validate_config("segment.bytes", "1048575").is_err());
        assert!(validate_config("segment.bytes", "1048576").is_ok());
        assert!(validate_config(INTERNAL_SEGMENT_BYTES, "14").is_ok());
        assert!(validate_config(INTERNAL_SEGMENT_BYTES, "13").is_err());
    }

    #[test]
    fn typed_configs_take_explicit_values_then_defaults() {
        let owned = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let defaults = TopicConfig::parse(&BTreeMap::new());
        assert_eq!(defaults.retention_ms, 604_800_000);
        assert_eq!(defaults.retention_bytes, -1);
        assert_eq!(defaults.segment_bytes, None);
        assert_eq!(defaults.index_interval_bytes, 4096);
        assert_eq!(
            (defaults.flush_messages, defaults.flush_ms),
            (i64::MAX, i64::MAX)
        );
        assert_eq!(defaults.max_message_bytes, 1_048_588);
        assert!(defaults.cleanup_delete && !defaults.cleanup_compact);
        assert!(!defaults.log_append_time);
        assert_eq!(
            defaults.min_insync_replicas, None,
            "the broker's default applies"
        );
        let set = TopicConfig::parse(&owned(&[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "2097152"),
            (INTERNAL_SEGMENT_BYTES, "100"),
            ("index.interval.bytes", "0"),
            ("message.timestamp.type", "LogAppendTime"),
            ("retention.ms", "soon"),
            ("min.insync.replicas", "2"),
        ]));
        assert!(!set.cleanup_delete && set.cleanup_compact);
        assert_eq!(set.segment_bytes, Some(100));
        assert_eq!(set.index_interval_bytes, 1);
        assert!(set.log_append_time);
        assert_eq!(set.retention_ms, -1, "an unreadable value falls back");
        assert_eq!(set.min_insync_replicas, Some(2));
    }

    #[test]
    fn only_a_delete_policy_lets_retention_delete() {
        let deletes = |policy: &str| {
            let explicit = BTreeMap::from([("cleanup.policy".to_string(), policy.to_string())]);
            TopicConfig::parse(&explicit).cleanup_delete
        };
        assert!(TopicConfig::parse(&BTreeMap::new()).cleanup_delete);
        assert!(deletes("delete"));
        assert!(deletes("compact,delete"));
        assert!(deletes("delete,compact"));
        assert!(!deletes("compact"));
    }

    #[test]
    fn removed_configs_are_accepted_and_dropped() {
        assert!(validate_config("message.format.version", "0.10.0.0").is_ok());
        let mut configs = BTreeMap::from([
            ("message.format.version".to_string(), "0.10.0.0".to_string()),
            ("retention.ms".to_string(), "1000".to_string()),
        ]);
        drop_ignored("t", &mut configs);
        assert_eq!(
            configs,
            BTreeMap::from([("retention.ms".to_string(), "1000".to_string())])
        );
    }

    #[test]
    fn timestamp_difference_becomes_the_bounds_not_set() {
        assert!(validate_config(TIMESTAMP_DIFFERENCE_MAX_MS, "-1").is_err());
        let owned = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let mut configs = owned(&[
            (TIMESTAMP_DIFFERENCE_MAX_MS, "5000"),
            ("message.timestamp.after.max.ms", "100"),
        ]);
        drop_ignored("t", &mut configs);
        assert_eq!(
            configs,
            owned(&[
                ("message.timestamp.after.max.ms", "100"),
                ("message.timestamp.before.max.ms", "5000"),
            ])
        );
    }
}
