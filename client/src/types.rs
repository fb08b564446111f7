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
    /// The topic id (Metadata v10+), hyphenated; None when the broker sent none.
    pub topic_id: Option<String>,
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
    /// Replicas on brokers that are not live (fenced), Metadata v5+.
    pub offline_replicas: Vec<i32>,
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

/// A broker address, e.g. the coordinator FindCoordinator names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddress {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
}

impl BrokerAddress {
    /// `host:port`, with brackets around an IPv6 host.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Who a member is in a group generation: what Heartbeat, SyncGroup, OffsetCommit and
/// LeaveGroup carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMembership {
    pub group_id: String,
    pub member_id: String,
    pub generation_id: i32,
    /// Static membership id (KIP-345); `None` for dynamic members.
    pub group_instance_id: Option<String>,
}

impl GroupMembership {
    /// What an admin tool uses to commit offsets of a group with no active members: the broker
    /// accepts generation -1 and an empty member id only while the group is empty.
    pub fn admin(group_id: &str) -> Self {
        GroupMembership {
            group_id: group_id.to_owned(),
            member_id: String::new(),
            generation_id: -1,
            group_instance_id: None,
        }
    }
}

/// One protocol a member offers in JoinGroup, e.g. ("range", subscription bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupProtocol {
    pub name: String,
    pub metadata: Bytes,
}

/// A JoinGroup request's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroupParams {
    pub group_id: String,
    /// Empty on the first join; the id the broker assigned afterwards.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub session_timeout_ms: i32,
    /// How long the broker waits for every member to rejoin (JoinGroup v1+).
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    pub protocols: Vec<GroupProtocol>,
    /// Why the member (re)joins, shown in broker logs (JoinGroup v8+).
    pub reason: Option<String>,
}

/// A group member as the JoinGroup response lists it to the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// The metadata of the chosen protocol, e.g. a ConsumerProtocolSubscription.
    pub metadata: Bytes,
}

/// A successful JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedGroup {
    pub generation_id: i32,
    /// Set from JoinGroup v7 on.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader_id: String,
    pub member_id: String,
    /// Set when the leader must not compute an assignment (JoinGroup v9, static members).
    pub skip_assignment: bool,
    /// Every member with its metadata; only the leader gets them.
    pub members: Vec<JoinedMember>,
}

impl JoinedGroup {
    pub fn is_leader(&self) -> bool {
        self.leader_id == self.member_id
    }
}

/// What JoinGroup answered when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    Joined(JoinedGroup),
    /// MEMBER_ID_REQUIRED (JoinGroup v4+): join again with this member id.
    MemberIdRequired {
        member_id: String,
    },
}

/// An offset to commit (or the committed offset to look up) for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOffset {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// A committed offset as OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    /// `None` when the group has committed nothing for the partition.
    pub offset: Option<i64>,
    pub metadata: Option<String>,
}

/// One group from ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    /// Set from ListGroups v4 on, e.g. "Stable" or "Empty".
    pub state: Option<String>,
}

/// One group from DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// E.g. "Stable", "PreparingRebalance", "CompletingRebalance", "Empty" or "Dead".
    pub state: String,
    pub protocol_type: String,
    /// The chosen protocol, e.g. "range"; empty unless the group is stable.
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}
