//! Plain data the client hands to and gets back from its callers; no protocol types leak out.

use bytes::Bytes;
use kafka_protocol::ResponseError;

/// The cluster as described by one Metadata response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: Vec<BrokerMetadata>,
    pub topics: Vec<TopicMetadata>,
}

impl ClusterMetadata {
    pub fn topic(&self, name: &str) -> Option<&TopicMetadata> {
        self.topics.iter().find(|topic| topic.name == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMetadata {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    /// Zero when the topic exists; e.g. UNKNOWN_TOPIC_OR_PARTITION (3) when it does not.
    pub error_code: i16,
    pub is_internal: bool,
    /// Sorted by partition index.
    pub partitions: Vec<PartitionMetadata>,
}

impl TopicMetadata {
    pub fn error(&self) -> Option<ResponseError> {
        ResponseError::try_from_code(self.error_code)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: i32,
    pub error_code: i16,
    /// -1 when the partition has no leader.
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub replica_nodes: Vec<i32>,
    pub isr_nodes: Vec<i32>,
}

/// One topic configuration entry from DescribeConfigs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub read_only: bool,
    pub is_default: bool,
    pub is_sensitive: bool,
}

/// A record to produce. `timestamp_ms` is the CreateTime the broker stores (unless the topic uses
/// LogAppendTime).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProduceRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp_ms: i64,
}

/// A record read by Fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedRecord {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// The answer for one partition of a Fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResult {
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Records at or after the requested offset, in offset order; control records are left out.
    pub records: Vec<ConsumedRecord>,
    /// The offset to fetch next: one past the last complete batch returned (even if all its
    /// records were filtered out, e.g. a control batch), or the requested offset if none was.
    pub next_offset: i64,
    /// The partition-level error, e.g. OFFSET_OUT_OF_RANGE; `None` on success.
    pub error: Option<ResponseError>,
}
