//! Native blocking Kafka client, used by the `sluice` CLI.
//!
//! Layers, so an async or benchmark client can reuse everything but the socket:
//! - `codec`: framing (length prefix, headers, FRAME_BYTES_MAX) and ApiVersions negotiation.
//! - `apis`: one request builder and one response parser per API, pure functions.
//! - `group_apis`: the same for the consumer group APIs.
//! - `consumer_protocol`: the "consumer" group protocol's subscription and assignment formats and
//!   the range assignor, pure.
//! - `group`: `GroupConsumer`, a group member that joins, heartbeats, fetches and commits.
//! - `records`: RecordBatch v2 encoding for Produce and tolerant decoding of Fetch data.
//! - `transport`: a blocking `TcpStream` with connect/read/write timeouts.
//! - `Client` (here): glues them, one request in flight at a time.
//!
//! The client talks only to the bootstrap broker; it does not route requests to partition leaders
//! on other brokers (Sluice runs as a single node for now).

pub mod apis;
pub mod cluster_apis;
pub mod codec;
pub mod consumer_protocol;
pub mod election_apis;
pub mod error;
pub mod group;
pub mod group_apis;
pub mod idempotent;
pub mod partitioner;
pub mod producer;
pub mod reassign_apis;
pub mod records;
pub mod transport;
pub mod types;

use std::net::ToSocketAddrs;
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::records::Compression;

pub use apis::{
    FetchParams, FetchPosition, ProducerIdentity, TIMESTAMP_EARLIEST, TIMESTAMP_LATEST,
};
pub use cluster_apis::{ClusterBroker, ClusterDescription, QuorumDescription, VoterState};
pub use codec::{NegotiatedVersions, FRAME_BYTES_MAX};
pub use election_apis::ElectionOutcome;
pub use error::{ClientError, KafkaError, Result};
pub use idempotent::IdempotentProducer;
pub use kafka_protocol::ResponseError;
pub use partitioner::{murmur2, partition_for_key};
pub use reassign_apis::OngoingReassignment;
pub use types::{
    BrokerAddress, BrokerMetadata, ClusterMetadata, CommittedOffset, ConfigEntry, ConsumedRecord,
    FetchResult, GroupDescription, GroupMembership, GroupProtocol, JoinGroupParams, JoinOutcome,
    JoinedGroup, JoinedMember, ListedGroup, MemberDescription, PartitionMetadata, PartitionOffset,
    ProduceRecord, TopicMetadata,
};

use apis::CreateTopicParams;
use codec::{client_versions, UNSUPPORTED_VERSION};
use error::check_code;
use transport::Connection;

pub const BOOTSTRAP_DEFAULT: &str = "127.0.0.1:9092";
/// FindCoordinator attempts while the coordinator is loading or not yet available.
const COORDINATOR_ATTEMPTS_MAX: u32 = 20;
/// Pause between those attempts; 20 x 250 ms covers a broker loading its group state.
const COORDINATOR_RETRY_BACKOFF: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub client_id: String,
    pub connect_timeout: Duration,
    /// Read and write timeout of a request; a fetch additionally waits for its max_wait_ms.
    /// Also sent as the broker-side timeout of Produce, CreateTopics and DeleteTopics.
    pub request_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            client_id: "sluice-cli".to_owned(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// A blocking client on one connection to one broker.
///
/// After an `Err(ClientError::Io)` or a protocol error the connection may be mid-frame; drop the
/// client and connect again.
pub struct Client {
    connection: Connection,
    versions: NegotiatedVersions,
    config: ClientConfig,
    correlation_id_next: i32,
}

impl Client {
    pub fn connect(bootstrap: &str) -> Result<Self> {
        Self::connect_with(bootstrap, ClientConfig::default())
    }

    /// Connects and negotiates API versions.
    pub fn connect_with(bootstrap: &str, config: ClientConfig) -> Result<Self> {
        let connection =
            Connection::connect(bootstrap, config.connect_timeout, config.request_timeout)?;
        let mut client = Client {
            connection,
            versions: NegotiatedVersions::default(),
            config,
            correlation_id_next: 0,
        };
        client.versions = client.negotiate_versions()?;
        Ok(client)
    }

    /// Connects to the coordinator of `group_id`, found through the broker at `bootstrap`. Keeps
    /// the bootstrap connection when the coordinator is that broker. Retries FindCoordinator while
    /// its error is retriable (COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, ...).
    pub fn connect_coordinator(
        bootstrap: &str,
        group_id: &str,
        config: ClientConfig,
    ) -> Result<Self> {
        let mut client = Self::connect_with(bootstrap, config.clone())?;
        let mut attempt = 1;
        let coordinator = loop {
            match client.find_coordinator(group_id) {
                Err(ClientError::Kafka(error))
                    if error.error.is_retriable() && attempt < COORDINATOR_ATTEMPTS_MAX =>
                {
                    attempt += 1;
                    std::thread::sleep(COORDINATOR_RETRY_BACKOFF);
                }
                result => break result?,
            }
        };
        if client.is_connected_to(&coordinator)? {
            return Ok(client);
        }
        Self::connect_with(&coordinator.address(), config)
    }

    /// Whether `broker` resolves to the address this connection is connected to.
    pub fn is_connected_to(&self, broker: &BrokerAddress) -> Result<bool> {
        let peer = self.connection.peer_address()?;
        let port = u16::try_from(broker.port).map_err(|_| {
            ClientError::protocol(format!("broker port {} is out of range", broker.port))
        })?;
        let resolved = (broker.host.as_str(), port)
            .to_socket_addrs()
            .map_err(|source| ClientError::Io {
                address: broker.address(),
                source,
            })?;
        Ok(resolved.into_iter().any(|address| address == peer))
    }

    /// Replaces the connection with a new one to the same address, negotiating versions again.
    /// Used after an I/O error, when the old connection may be mid-frame.
    pub fn reconnect(&mut self) -> Result<()> {
        let address = self.connection.address().to_owned();
        *self = Self::connect_with(&address, self.config.clone())?;
        Ok(())
    }

    /// The negotiated socket and versions, for a pipelining sender that writes requests on one
    /// thread and reads responses on another.
    pub fn into_parts(self) -> (std::net::TcpStream, NegotiatedVersions, ClientConfig) {
        (self.connection.into_stream(), self.versions, self.config)
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    pub fn versions(&self) -> &NegotiatedVersions {
        &self.versions
    }

    /// ApiVersions at our highest version; if the broker answers UNSUPPORTED_VERSION, again at
    /// the highest version it advertised for ApiVersions (or v0).
    fn negotiate_versions(&mut self) -> Result<NegotiatedVersions> {
        let ours = client_versions(ApiKey::ApiVersions);
        let mut response = self.api_versions(ours.max)?;
        if response.error_code == UNSUPPORTED_VERSION {
            let theirs = response
                .api_keys
                .iter()
                .find(|entry| entry.api_key == ApiKey::ApiVersions as i16)
                .map_or(0, |entry| entry.max_version);
            let version = theirs.clamp(ours.min, ours.max).min(ours.max - 1);
            response = self.api_versions(version)?;
        }
        check_code(response.error_code, None, || "ApiVersions".to_owned())?;
        Ok(NegotiatedVersions::negotiate(&response))
    }

    fn api_versions(&mut self, version: i16) -> Result<ApiVersionsResponse> {
        let correlation_id = self.send(
            ApiKey::ApiVersions,
            version,
            &codec::api_versions_request(version),
        )?;
        let frame = self.connection.receive_frame()?;
        codec::decode_api_versions_frame(version, correlation_id, frame)
    }

    fn send<R: Encodable>(&mut self, api_key: ApiKey, version: i16, body: &R) -> Result<i32> {
        let correlation_id = self.correlation_id_next;
        self.correlation_id_next = self.correlation_id_next.wrapping_add(1);
        let frame = codec::encode_request_frame(
            api_key,
            version,
            correlation_id,
            &self.config.client_id,
            body,
        )?;
        self.connection.send_frame(&frame)?;
        Ok(correlation_id)
    }

    fn call<Q: Encodable, R: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &Q,
    ) -> Result<R> {
        let correlation_id = self.send(api_key, version, body)?;
        let frame = self.connection.receive_frame()?;
        codec::decode_response_frame(api_key, version, correlation_id, frame)
    }

    fn timeout_ms(&self) -> i32 {
        i32::try_from(self.config.request_timeout.as_millis()).unwrap_or(i32::MAX)
    }

    /// Metadata for `topics`, or for every topic when `None`. Unknown topics come back with
    /// UNKNOWN_TOPIC_OR_PARTITION in `TopicMetadata::error_code` rather than as an `Err`.
    pub fn metadata(&mut self, topics: Option<&[&str]>) -> Result<ClusterMetadata> {
        let version = self.versions.require(ApiKey::Metadata)?;
        let request = apis::metadata_request(topics, version);
        let response = self.call(ApiKey::Metadata, version, &request)?;
        Ok(apis::parse_metadata(response))
    }

    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(String, String)],
    ) -> Result<()> {
        let version = self.versions.require(ApiKey::CreateTopics)?;
        let request = apis::create_topics_request(&CreateTopicParams {
            name,
            partitions,
            replication_factor,
            configs,
            timeout_ms: self.timeout_ms(),
        });
        let response = self.call(ApiKey::CreateTopics, version, &request)?;
        apis::parse_create_topics(&response, name)
    }

    pub fn delete_topic(&mut self, name: &str) -> Result<()> {
        let version = self.versions.require(ApiKey::DeleteTopics)?;
        let request = apis::delete_topics_request(name, self.timeout_ms(), version);
        let response = self.call(ApiKey::DeleteTopics, version, &request)?;
        apis::parse_delete_topics(&response, name)
    }

    /// All configuration entries of a topic, sorted by name.
    pub fn describe_configs(&mut self, topic: &str) -> Result<Vec<ConfigEntry>> {
        let version = self.versions.require(ApiKey::DescribeConfigs)?;
        let request = apis::describe_configs_request(topic);
        let response = self.call(ApiKey::DescribeConfigs, version, &request)?;
        apis::parse_describe_configs(&response, topic)
    }

    /// Produces `records` as one uncompressed batch; returns its base offset, or -1 with
    /// `acks == 0` (the broker sends no response then).
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
        acks: i16,
    ) -> Result<i64> {
        self.produce_compressed(topic, partition, records, acks, Compression::None)
    }

    pub fn produce_compressed(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
        acks: i16,
        compression: Compression,
    ) -> Result<i64> {
        let batch = records::encode_record_batch(records, compression)?;
        self.produce_batch(topic, partition, batch, acks)
    }

    /// Produces one already encoded RecordBatch v2, e.g. an idempotent batch being resent.
    pub fn produce_batch(
        &mut self,
        topic: &str,
        partition: i32,
        batch: bytes::Bytes,
        acks: i16,
    ) -> Result<i64> {
        let version = self.versions.require(ApiKey::Produce)?;
        let request = apis::produce_request(topic, partition, batch, acks, self.timeout_ms());
        if acks == 0 {
            self.send(ApiKey::Produce, version, &request)?;
            return Ok(-1);
        }
        let response = self.call(ApiKey::Produce, version, &request)?;
        apis::parse_produce(&response, topic, partition)
    }

    /// A fresh producer id and epoch 0 for an idempotent (not transactional) producer.
    pub fn init_producer_id(&mut self) -> Result<ProducerIdentity> {
        self.init_producer_id_as(None)
    }

    /// `current: Some(..)` bumps that producer's epoch (InitProducerId v3+); its sequences
    /// restart at 0 on every partition.
    pub fn init_producer_id_as(
        &mut self,
        current: Option<ProducerIdentity>,
    ) -> Result<ProducerIdentity> {
        let version = self.versions.require(ApiKey::InitProducerId)?;
        if current.is_some() && version < 3 {
            return Err(ClientError::UnsupportedApi {
                api: ApiKey::InitProducerId,
                ours: kafka_protocol::protocol::VersionRange { min: 3, max: 4 },
            });
        }
        let request = apis::init_producer_id_request(current, i32::MAX, version);
        let response = self.call(ApiKey::InitProducerId, version, &request)?;
        apis::parse_init_producer_id(&response)
    }

    /// `timestamp`: TIMESTAMP_EARLIEST (-2), TIMESTAMP_LATEST (-1) or ms since the epoch.
    pub fn list_offsets(&mut self, topic: &str, partition: i32, timestamp: i64) -> Result<i64> {
        let version = self.versions.require(ApiKey::ListOffsets)?;
        let request = apis::list_offsets_request(topic, partition, timestamp);
        let response = self.call(ApiKey::ListOffsets, version, &request)?;
        apis::parse_list_offsets(&response, topic, partition)
    }

    /// Fetches one partition; see `fetch_many`.
    pub fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        max_bytes: i32,
    ) -> Result<FetchResult> {
        let positions = [FetchPosition {
            topic,
            partition,
            offset,
        }];
        let mut results = self.fetch_many(&positions, max_wait_ms, max_bytes, max_bytes)?;
        assert_eq!(results.len(), 1);
        Ok(results.pop().expect("one result per position"))
    }

    /// Fetches several partitions in one request; results come in the order of `positions`.
    /// Waits up to `max_wait_ms` for any of them to have data.
    pub fn fetch_many(
        &mut self,
        positions: &[FetchPosition<'_>],
        max_wait_ms: i32,
        max_bytes: i32,
        partition_max_bytes: i32,
    ) -> Result<Vec<FetchResult>> {
        assert!(max_wait_ms >= 0 && max_bytes > 0 && partition_max_bytes > 0);
        let version = self.versions.require(ApiKey::Fetch)?;
        let params = FetchParams {
            positions,
            max_wait_ms,
            max_bytes,
            partition_max_bytes,
        };
        let request = apis::fetch_request(&params);
        let wait = Duration::from_millis(max_wait_ms as u64);
        self.connection
            .set_read_timeout(self.config.request_timeout + wait)?;
        let response = self.call(ApiKey::Fetch, version, &request);
        self.connection
            .set_read_timeout(self.config.request_timeout)?;
        apis::parse_fetch(response?, &params)
    }

    /// The coordinator of a consumer group; one request, no retries (see `connect_coordinator`).
    pub fn find_coordinator(&mut self, group_id: &str) -> Result<BrokerAddress> {
        let version = self.versions.require(ApiKey::FindCoordinator)?;
        let request = group_apis::find_coordinator_request(group_id, version);
        let response = self.call(ApiKey::FindCoordinator, version, &request)?;
        group_apis::parse_find_coordinator(&response, group_id, version)
    }

    /// Joins (or rejoins) a group. The broker holds the answer until every member has joined or
    /// the rebalance timeout passed, so the read timeout is stretched by that much.
    pub fn join_group(&mut self, params: &JoinGroupParams) -> Result<JoinOutcome> {
        let version = self.versions.require(ApiKey::JoinGroup)?;
        let request = group_apis::join_group_request(params, version);
        let wait = Duration::from_millis(params.rebalance_timeout_ms.max(0) as u64);
        let response = self.call_waiting(ApiKey::JoinGroup, version, &request, wait)?;
        group_apis::parse_join_group(response, &params.group_id)
    }

    /// Sends the leader's assignments (or none, from a follower) and returns this member's.
    /// `wait`: how long the broker may hold the answer until the leader has synced.
    pub fn sync_group(
        &mut self,
        params: &group_apis::SyncGroupParams<'_>,
        wait: Duration,
    ) -> Result<bytes::Bytes> {
        let version = self.versions.require(ApiKey::SyncGroup)?;
        let request = group_apis::sync_group_request(params, version);
        let response = self.call_waiting(ApiKey::SyncGroup, version, &request, wait)?;
        group_apis::parse_sync_group(response, &params.membership.group_id)
    }

    pub fn heartbeat(&mut self, membership: &GroupMembership) -> Result<()> {
        let version = self.versions.require(ApiKey::Heartbeat)?;
        let request = group_apis::heartbeat_request(membership);
        let response = self.call(ApiKey::Heartbeat, version, &request)?;
        group_apis::parse_heartbeat(&response, &membership.group_id)
    }

    pub fn leave_group(
        &mut self,
        membership: &GroupMembership,
        reason: Option<&str>,
    ) -> Result<()> {
        let version = self.versions.require(ApiKey::LeaveGroup)?;
        let request = group_apis::leave_group_request(membership, reason, version);
        let response = self.call(ApiKey::LeaveGroup, version, &request)?;
        group_apis::parse_leave_group(&response, &membership.group_id)
    }

    /// Commits the offsets of the next records to consume. `membership` is the current
    /// generation, or `GroupMembership::admin` for a group without members.
    pub fn offset_commit(
        &mut self,
        membership: &GroupMembership,
        offsets: &[PartitionOffset],
    ) -> Result<()> {
        assert!(!offsets.is_empty(), "a commit carries at least one offset");
        let version = self.versions.require(ApiKey::OffsetCommit)?;
        let request = group_apis::offset_commit_request(membership, offsets);
        let response = self.call(ApiKey::OffsetCommit, version, &request)?;
        group_apis::parse_offset_commit(&response, &membership.group_id, offsets)
    }

    /// Committed offsets of `partitions`, or of every partition with a commit when `None`.
    pub fn offset_fetch(
        &mut self,
        group_id: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<CommittedOffset>> {
        let version = self.versions.require(ApiKey::OffsetFetch)?;
        let request = group_apis::offset_fetch_request(group_id, partitions, version);
        let response = self.call(ApiKey::OffsetFetch, version, &request)?;
        group_apis::parse_offset_fetch(response, group_id, version)
    }

    pub fn list_groups(&mut self) -> Result<Vec<ListedGroup>> {
        let version = self.versions.require(ApiKey::ListGroups)?;
        let request = group_apis::list_groups_request();
        let response = self.call(ApiKey::ListGroups, version, &request)?;
        group_apis::parse_list_groups(response, version)
    }

    pub fn describe_groups(&mut self, group_ids: &[&str]) -> Result<Vec<GroupDescription>> {
        let version = self.versions.require(ApiKey::DescribeGroups)?;
        let request = group_apis::describe_groups_request(group_ids);
        let response = self.call(ApiKey::DescribeGroups, version, &request)?;
        group_apis::parse_describe_groups(response, group_ids)
    }

    /// The cluster id, the controller and the brokers (fenced ones too where the broker can).
    pub fn describe_cluster(&mut self) -> Result<ClusterDescription> {
        let version = self.versions.require(ApiKey::DescribeCluster)?;
        let request = cluster_apis::describe_cluster_request(version);
        let response = self.call(ApiKey::DescribeCluster, version, &request)?;
        cluster_apis::parse_describe_cluster(response)
    }

    /// Leader elections, unclean or preferred, on `partitions` (None: every partition); one
    /// outcome per partition the broker reports.
    pub fn elect_leaders(
        &mut self,
        unclean: bool,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<ElectionOutcome>> {
        let version = self.versions.require(ApiKey::ElectLeaders)?;
        let request = election_apis::elect_leaders_request(unclean, partitions);
        let response = self.call(ApiKey::ElectLeaders, version, &request)?;
        election_apis::parse_elect_leaders(response)
    }

    /// Starts moving `topic`'s `partition` to `replicas` (KIP-455), or with None cancels its
    /// reassignment in progress. Answers once the controller committed the change.
    pub fn alter_partition_reassignment(
        &mut self,
        topic: &str,
        partition: i32,
        replicas: Option<&[i32]>,
    ) -> Result<()> {
        let version = self.versions.require(ApiKey::AlterPartitionReassignments)?;
        let request = reassign_apis::alter_request(topic, partition, replicas);
        let response = self.call(ApiKey::AlterPartitionReassignments, version, &request)?;
        reassign_apis::parse_alter(response, topic, partition)
    }

    /// The reassignments in progress: of `topic`'s `partitions`, or of every partition (None).
    pub fn list_partition_reassignments(
        &mut self,
        topic: Option<(&str, Vec<i32>)>,
    ) -> Result<Vec<OngoingReassignment>> {
        let version = self.versions.require(ApiKey::ListPartitionReassignments)?;
        let request = reassign_apis::list_request(topic);
        let response = self.call(ApiKey::ListPartitionReassignments, version, &request)?;
        reassign_apis::parse_list(response)
    }

    /// The metadata quorum as the connected broker sees it.
    pub fn describe_quorum(&mut self) -> Result<QuorumDescription> {
        let version = self.versions.require(ApiKey::DescribeQuorum)?;
        let request = cluster_apis::describe_quorum_request();
        let response = self.call(ApiKey::DescribeQuorum, version, &request)?;
        cluster_apis::parse_describe_quorum(response)
    }

    pub fn describe_group(&mut self, group_id: &str) -> Result<GroupDescription> {
        let mut groups = self.describe_groups(&[group_id])?;
        assert_eq!(groups.len(), 1);
        Ok(groups.pop().expect("one description per group"))
    }

    pub fn delete_groups(&mut self, group_ids: &[&str]) -> Result<()> {
        let version = self.versions.require(ApiKey::DeleteGroups)?;
        let request = group_apis::delete_groups_request(group_ids);
        let response = self.call(ApiKey::DeleteGroups, version, &request)?;
        group_apis::parse_delete_groups(&response, group_ids)
    }

    pub fn offset_delete(&mut self, group_id: &str, partitions: &[(String, i32)]) -> Result<()> {
        let version = self.versions.require(ApiKey::OffsetDelete)?;
        let request = group_apis::offset_delete_request(group_id, partitions);
        let response = self.call(ApiKey::OffsetDelete, version, &request)?;
        group_apis::parse_offset_delete(&response, group_id, partitions)
    }

    /// `call` for a request the broker may hold for up to `wait` before answering.
    fn call_waiting<Q: Encodable, R: Decodable>(
        &mut self,
        api_key: ApiKey,
        version: i16,
        body: &Q,
        wait: Duration,
    ) -> Result<R> {
        self.connection
            .set_read_timeout(self.config.request_timeout + wait)?;
        let response = self.call(api_key, version, body);
        self.connection
            .set_read_timeout(self.config.request_timeout)?;
        response
    }
}

#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod tests;
