//! Broker configuration from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;

/// `sluice serve` options. Defaults give a single-node broker on 127.0.0.1:9092 storing data in
/// `./data` with one shard per online core.
#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Directory holding topic metadata and partition logs.
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// Address to listen on; every shard accepts on it (SO_REUSEPORT). The port must be fixed.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub listen: SocketAddr,
    /// Host name given to clients in Metadata responses (default: the listen address's IP).
    #[arg(long)]
    pub advertised_host: Option<String>,
    /// Number of shards (one pinned executor thread each); default: every online core.
    #[arg(long)]
    pub shards: Option<usize>,
    /// This broker's node id (Kafka's broker id); with `--controller-voters`, one of the voters.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..))]
    pub node_id: i32,
    /// Where this node's metadata quorum listener binds (default: its entry in
    /// `--controller-voters`, or an ephemeral loopback port without voters).
    #[arg(long)]
    pub controller_listen: Option<SocketAddr>,
    /// The voters of the metadata quorum, `id@host:port,...` with node ids (default: this node
    /// alone). Fixed for the life of the data directory.
    #[arg(long, value_parser = parse_controller_voters)]
    pub controller_voters: Option<ControllerVoters>,
    /// This broker's rack (Kafka's broker.rack), for rack-aware replica placement and for
    /// consumers fetching from a replica in their own rack (`--replica-selector-class`).
    #[arg(long, visible_alias = "broker-rack")]
    pub rack: Option<String>,
    /// Which replica a partition's leader names to a consumer that sends its rack (Kafka's
    /// replica.selector.class, KIP-392): `org.apache.kafka.common.replica.RackAwareReplicaSelector`
    /// names an in-sync replica in the consumer's rack (the leader first); default: none, every
    /// consumer fetches from the leader.
    #[arg(long, value_parser = parse_replica_selector)]
    pub replica_selector_class: Option<ReplicaSelector>,
    /// A broker the controller has not heard from for this long is fenced.
    #[arg(long, default_value_t = 9000)]
    pub session_timeout_ms: u64,
    /// How long a broker stopping on SIGTERM or SIGINT waits for the controller to move its
    /// leaderships away and take it out of the ISRs before it stops anyway (controlled
    /// shutdown).
    #[arg(long, default_value_t = 30_000)]
    pub controlled_shutdown_timeout_ms: u64,
    /// A follower that has not caught up with its leader for this long leaves the ISR
    /// (Kafka's replica.lag.time.max.ms); the leader checks every half of it.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(2..))]
    pub replica_lag_time_max_ms: u64,
    /// The active controller moves leaderships back to preferred replicas (Kafka's
    /// auto.leader.rebalance.enable).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_leader_rebalance_enable: bool,
    /// How often the active controller checks the leader imbalance (Kafka's
    /// leader.imbalance.check.interval.seconds, here in ms).
    #[arg(long, default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub leader_imbalance_check_interval_ms: u64,
    /// A broker not leading more than this share of the partitions it is the preferred replica
    /// of gets them back (Kafka's leader.imbalance.per.broker.percentage).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub leader_imbalance_per_broker_percentage: u32,
    /// Replication factor of topics created without one (auto-creation included).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i16).range(1..))]
    pub default_replication_factor: i16,
    /// Default of the `min.insync.replicas` topic config.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub min_insync_replicas: i32,
    /// Partition count of topics created without an explicit count (auto-creation included).
    #[arg(long, default_value_t = 1)]
    pub default_partitions: i32,
    /// Create unknown topics on Metadata and Produce requests (Kafka's auto.create.topics.enable).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_create_topics: bool,
    /// Default segment size in bytes for topics without `segment.bytes` (at least 1 MiB, as in
    /// Kafka).
    #[arg(long, default_value_t = 1 << 30, value_parser = segment_bytes_parser())]
    pub segment_bytes: u64,
    /// For tests: replaces `--segment-bytes` with a value that may be below its minimum (the
    /// broker-wide counterpart of Kafka's `internal.segment.bytes`).
    #[arg(long, hide = true, value_parser = internal_segment_bytes_parser())]
    pub internal_segment_bytes: Option<u64>,
    /// How long a new consumer group waits for more members before its first generation
    /// (Kafka's group.initial.rebalance.delay.ms).
    #[arg(long, default_value_t = 3000)]
    pub group_initial_rebalance_delay_ms: u64,
    /// Bytes appended to a partition between snapshots of its idempotent-producer state; bounds
    /// how much of the log a restart scans to rebuild that state.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub producer_snapshot_interval_bytes: u64,
    /// How often each shard applies its partitions' `retention.ms` and `retention.bytes`,
    /// deleting expired segments (Kafka's log.retention.check.interval.ms).
    #[arg(long, default_value_t = 300_000)]
    pub retention_check_interval_ms: u64,
    /// Bytes of recently appended batches the broker keeps in memory, split evenly over the
    /// shards, so that consumers reading the tail of a partition are served without disk reads.
    /// 0 disables the cache.
    #[arg(long, default_value_t = TAIL_CACHE_BYTES_DEFAULT)]
    pub tail_cache_bytes: usize,
    /// Test mode: track what fdatasync made durable and, when the file `power-loss` appears in
    /// the data directory, lose everything else and die (see `power_loss.rs`).
    #[arg(long, hide = true)]
    pub simulate_power_loss: bool,
    /// Request bytes each shard holds in memory across all its connections; while they are
    /// spent, connections stop reading (back-pressure). Must hold the largest frame and a
    /// reserve for small requests (Kafka's queued.max.request.bytes, per shard).
    #[arg(long, default_value_t = crate::request_budget::SHARD_REQUEST_BYTES_DEFAULT)]
    pub shard_request_bytes_max: u64,
    /// Largest request frame accepted; a longer one closes the connection (Kafka's
    /// socket.request.max.bytes). At most 104857600.
    #[arg(long, default_value_t = net::frame::FRAME_BYTES_MAX)]
    pub socket_request_max_bytes: usize,
    /// How long a request may take to arrive once its first byte has: a connection that sends
    /// a frame slower than this is closed, and the frame's memory freed.
    #[arg(long, default_value_t = 60_000)]
    pub request_read_timeout_ms: u64,
    /// A connection with no request in flight that sends nothing for this long is closed
    /// (Kafka's connections.max.idle.ms).
    #[arg(long, default_value_t = 600_000)]
    pub connections_max_idle_ms: u64,
    /// Shortest session timeout a JoinGroup may ask for (Kafka's group.min.session.timeout.ms).
    #[arg(long, default_value_t = 6_000)]
    pub group_min_session_timeout_ms: u64,
    /// Longest session timeout a JoinGroup may ask for (Kafka's group.max.session.timeout.ms);
    /// also bounds how long a member that abandons its first join keeps its metadata.
    #[arg(long, default_value_t = 1_800_000)]
    pub group_max_session_timeout_ms: u64,
    /// Longest a follower's Fetch waits at the leader for data (Kafka's
    /// replica.fetch.wait.max.ms); at most the leader's 30 s cap on any fetch's wait.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=30_000))]
    pub replica_fetch_wait_max_ms: u64,
    /// Most bytes a follower asks of one partition per Fetch (Kafka's replica.fetch.max.bytes);
    /// a larger first batch still comes whole (KIP-74). At most 16 MiB, what one append holds.
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..=(16 << 20)))]
    pub replica_fetch_max_bytes: u64,
    /// Most bytes a follower asks for in one Fetch response (Kafka's
    /// replica.fetch.response.max.bytes); at most the leader's 64 MiB cap on any response.
    #[arg(long, default_value_t = 10 << 20, value_parser = clap::value_parser!(u64).range(1..=(64 << 20)))]
    pub replica_fetch_response_max_bytes: u64,
}

/// One voter of the metadata quorum, as `--controller-voters` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerVoter {
    pub node_id: i32,
    pub address: SocketAddr,
}

/// The parsed `--controller-voters` (a newtype: clap takes a `Vec` for a repeated flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerVoters(pub Vec<ControllerVoter>);

/// Parses `--controller-voters` with the quorum crate's parser (host resolution, limits,
/// duplicates). Node ids start at 0, Raft ids at 1: the ids are shifted into Raft ids for the
/// parser and back, through the one mapping in `cluster::controller::quorum_ids`.
fn parse_controller_voters(text: &str) -> Result<ControllerVoters, String> {
    use crate::cluster::controller::quorum_ids::{node_id, raft_id};
    let mut shifted = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, address) = (entry.split_once('@'))
            .ok_or_else(|| format!("voter `{entry}` is not of the form id@host:port"))?;
        let id: i32 = (id.trim().parse().ok())
            .filter(|id| *id >= 0)
            .ok_or_else(|| {
                format!("voter `{entry}` has an id that is not a node id (0 or more)")
            })?;
        shifted.push(format!("{}@{address}", raft_id(id)));
    }
    let voters = quorum::parse_voters(&shifted.join(",")).map_err(|e| e.to_string())?;
    Ok(ControllerVoters(
        (voters.into_iter())
            .map(|voter| ControllerVoter {
                node_id: node_id(voter.id),
                address: voter.address,
            })
            .collect(),
    ))
}

/// The replica selectors `--replica-selector-class` accepts (KIP-392).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaSelector {
    /// Kafka's LeaderSelector: consumers fetch from the leader (as without a selector).
    Leader,
    /// Kafka's RackAwareReplicaSelector: an in-sync replica in the consumer's rack.
    RackAware,
}

impl ReplicaSelector {
    /// Kafka's class names for the selectors, as `replica.selector.class` takes them.
    pub const LEADER_CLASS: &'static str = "org.apache.kafka.common.replica.LeaderSelector";
    pub const RACK_AWARE_CLASS: &'static str =
        "org.apache.kafka.common.replica.RackAwareReplicaSelector";

    pub fn class_name(self) -> &'static str {
        match self {
            ReplicaSelector::Leader => Self::LEADER_CLASS,
            ReplicaSelector::RackAware => Self::RACK_AWARE_CLASS,
        }
    }
}

/// Parses `--replica-selector-class`: Kafka's class name, or its last component.
fn parse_replica_selector(text: &str) -> Result<ReplicaSelector, String> {
    let simple = |class: &'static str| class.rsplit('.').next().expect("a class name");
    [ReplicaSelector::Leader, ReplicaSelector::RackAware]
        .into_iter()
        .find(|selector| {
            let class = selector.class_name();
            text == class || text == simple(class)
        })
        .ok_or_else(|| {
            format!(
                "unknown replica selector `{text}`: {} or {}",
                ReplicaSelector::RACK_AWARE_CLASS,
                ReplicaSelector::LEADER_CLASS
            )
        })
}

/// Default of `--tail-cache-bytes`: a few seconds of appends at what one broker sustains, small
/// next to the memory of any machine that runs one.
pub const TAIL_CACHE_BYTES_DEFAULT: usize = 256 << 20;

fn segment_bytes_parser() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(crate::cluster::topic_config::SEGMENT_BYTES_MIN as u64..)
}

fn internal_segment_bytes_parser() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64)
        .range(crate::cluster::topic_config::INTERNAL_SEGMENT_BYTES_MIN as u64..)
}

impl ServeArgs {
    /// Segment size of topics that set neither `segment.bytes` nor `internal.segment.bytes`.
    pub fn default_segment_bytes(&self) -> u64 {
        self.internal_segment_bytes.unwrap_or(self.segment_bytes)
    }

    pub fn shard_count(&self) -> usize {
        self.shards
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The tail cache budget of each shard (see `--tail-cache-bytes`), within what storage
    /// accepts per executor.
    pub fn tail_cache_bytes_per_shard(&self) -> usize {
        (self.tail_cache_bytes / self.shard_count().max(1)).min(storage::TAIL_CACHE_BYTES_MAX)
    }

    /// Checks the options that constrain each other.
    pub fn check(&self) -> Result<(), String> {
        if self.socket_request_max_bytes > net::frame::FRAME_BYTES_MAX {
            return Err(format!(
                "--socket-request-max-bytes is at most {}",
                net::frame::FRAME_BYTES_MAX
            ));
        }
        if let Some(voters) = &self.controller_voters {
            if !voters.0.iter().any(|voter| voter.node_id == self.node_id) {
                return Err(format!(
                    "--node-id {} is not one of --controller-voters",
                    self.node_id
                ));
            }
        }
        if self.session_timeout_ms < crate::quorum_contact::SESSION_TIMEOUT_MIN_MS {
            return Err(format!(
                "--session-timeout-ms is at least {} (a broker's lease ends that much earlier)",
                crate::quorum_contact::SESSION_TIMEOUT_MIN_MS
            ));
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err("--group-min-session-timeout-ms exceeds the maximum".to_string());
        }
        crate::request_budget::RequestBudget::check(
            self.shard_request_bytes_max,
            self.socket_request_max_bytes,
        )
    }

    /// Where this node's quorum listener binds: `--controller-listen`, else this node's voter
    /// entry, else an ephemeral loopback port (a one-voter quorum has no peer to reach it).
    pub fn controller_listen(&self) -> SocketAddr {
        let own_entry = (self.controller_voters.iter().flat_map(|voters| &voters.0))
            .find(|voter| voter.node_id == self.node_id)
            .map(|voter| voter.address);
        (self.controller_listen.or(own_entry))
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The configured voters as (node id, controller address); empty without
    /// `--controller-voters` (this node alone).
    pub fn controller_voter_addresses(&self) -> Vec<(i32, SocketAddr)> {
        (self.controller_voters.iter().flat_map(|voters| &voters.0))
            .map(|voter| (voter.node_id, voter.address))
            .collect()
    }

    /// Whether this broker, leading a partition, names a replica in a consumer's rack.
    pub fn rack_aware_reads(&self) -> bool {
        self.replica_selector_class == Some(ReplicaSelector::RackAware)
    }

    pub fn advertised_host(&self) -> String {
        self.advertised_host
            .clone()
            .unwrap_or_else(|| self.listen.ip().to_string())
    }
}
