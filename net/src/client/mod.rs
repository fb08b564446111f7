//! Native blocking Kafka client, used by the `sluice` CLI.
//!
//! Layers, so an async or benchmark client can reuse everything but the socket:
//! - `codec`: framing (length prefix, headers, FRAME_BYTES_MAX) and ApiVersions negotiation.
//! - `apis`: one request builder and one response parser per API, pure functions.
//! - `records`: RecordBatch v2 encoding for Produce and tolerant decoding of Fetch data.
//! - `transport`: a blocking `TcpStream` with connect/read/write timeouts.
//! - `Client` (here): glues them, one request in flight at a time.
//!
//! The client talks only to the bootstrap broker; it does not route requests to partition leaders
//! on other brokers (Sluice runs as a single node for now).

pub mod apis;
pub mod codec;
pub mod error;
pub mod partitioner;
pub mod records;
pub mod transport;
pub mod types;

use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::{Decodable, Encodable};
use kafka_protocol::records::Compression;

pub use apis::{FetchParams, FetchPosition, TIMESTAMP_EARLIEST, TIMESTAMP_LATEST};
pub use codec::{NegotiatedVersions, FRAME_BYTES_MAX};
pub use error::{ClientError, KafkaError, Result};
pub use kafka_protocol::ResponseError;
pub use partitioner::{murmur2, partition_for_key};
pub use types::{
    BrokerMetadata, ClusterMetadata, ConfigEntry, ConsumedRecord, FetchResult, PartitionMetadata,
    ProduceRecord, TopicMetadata,
};

use apis::CreateTopicParams;
use codec::{client_versions, UNSUPPORTED_VERSION};
use error::check_code;
use transport::Connection;

pub const BOOTSTRAP_DEFAULT: &str = "127.0.0.1:9092";

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
        let version = self.versions.require(ApiKey::Produce)?;
        let batch = records::encode_record_batch(records, compression)?;
        let request = apis::produce_request(topic, partition, batch, acks, self.timeout_ms());
        if acks == 0 {
            self.send(ApiKey::Produce, version, &request)?;
            return Ok(-1);
        }
        let response = self.call(ApiKey::Produce, version, &request)?;
        apis::parse_produce(&response, topic, partition)
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
}

#[cfg(test)]
mod tests;
