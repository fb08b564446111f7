//! Kafka API handlers: one module per API, each declaring the versions it serves.
//!
//! `dispatch` turns one request frame into an [`Outcome`]: it checks the API and version against
//! [`SUPPORTED_APIS`], decodes the header and body, and runs the API's handler. Anything that
//! cannot be decoded closes the connection, as Kafka does; nothing a client sends can panic the
//! broker.

pub mod alter_configs;
pub mod api_versions;
pub mod authorized_operations;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod fetch_frame;
pub mod find_coordinator;
#[cfg(test)]
mod fuzz_tests;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod produce;
pub mod sync_group;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use net::frame::{decode_request_header, encode_response, RequestPreamble};

use crate::shard::Shard;

/// Entries (array elements and tagged fields, at every level) decoded from one request; a
/// request claiming more closes its connection before they are built. Each entry costs up to a
/// few hundred bytes decoded, and later a response entry, from a few bytes on the wire: without
/// this bound a 100 MiB Fetch listing millions of partitions took gigabytes and stalled the
/// shard for seconds. Real clients stay far below it (a consumer fetching 10,000 partitions
/// sends about 10,100 entries).
pub const REQUEST_ENTRIES_MAX: u64 = 100_000;

/// What the connection does with a request.
pub enum Outcome {
    /// Write this complete response frame.
    Respond(Bytes),
    /// Write these pieces in order: together one complete response frame (a Fetch response,
    /// whose records are not copied into a frame buffer).
    RespondPieces(Vec<Bytes>),
    /// Write nothing (Produce with acks=0).
    NoResponse,
    /// Close the connection after earlier responses are written.
    Close(String),
}

/// An API and the versions Sluice serves.
pub struct ApiSupport {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

/// Every API Sluice answers, for routing and for ApiVersions.
pub const SUPPORTED_APIS: &[ApiSupport] = &[
    ApiSupport {
        key: ApiKey::AlterConfigs,
        min: alter_configs::VERSION_MIN,
        max: alter_configs::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::IncrementalAlterConfigs,
        min: alter_configs::INCREMENTAL_VERSION_MIN,
        max: alter_configs::INCREMENTAL_VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::FindCoordinator,
        min: find_coordinator::VERSION_MIN,
        max: find_coordinator::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::JoinGroup,
        min: join_group::VERSION_MIN,
        max: join_group::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::SyncGroup,
        min: sync_group::VERSION_MIN,
        max: sync_group::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::Heartbeat,
        min: heartbeat::VERSION_MIN,
        max: heartbeat::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::LeaveGroup,
        min: leave_group::VERSION_MIN,
        max: leave_group::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::OffsetCommit,
        min: offset_commit::VERSION_MIN,
        max: offset_commit::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::OffsetFetch,
        min: offset_fetch::VERSION_MIN,
        max: offset_fetch::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::ListGroups,
        min: list_groups::VERSION_MIN,
        max: list_groups::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::DescribeGroups,
        min: describe_groups::VERSION_MIN,
        max: describe_groups::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::DeleteGroups,
        min: delete_groups::VERSION_MIN,
        max: delete_groups::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::OffsetDelete,
        min: offset_delete::VERSION_MIN,
        max: offset_delete::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::Produce,
        min: produce::VERSION_MIN,
        max: produce::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::Fetch,
        min: fetch::VERSION_MIN,
        max: fetch::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::ListOffsets,
        min: list_offsets::VERSION_MIN,
        max: list_offsets::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::Metadata,
        min: metadata::VERSION_MIN,
        max: metadata::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::ApiVersions,
        min: api_versions::VERSION_MIN,
        max: api_versions::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::CreateTopics,
        min: create_topics::VERSION_MIN,
        max: create_topics::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::DeleteRecords,
        min: delete_records::VERSION_MIN,
        max: delete_records::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::DeleteTopics,
        min: delete_topics::VERSION_MIN,
        max: delete_topics::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::DescribeConfigs,
        min: describe_configs::VERSION_MIN,
        max: describe_configs::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::DescribeCluster,
        min: describe_cluster::VERSION_MIN,
        max: describe_cluster::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::InitProducerId,
        min: init_producer_id::VERSION_MIN,
        max: init_producer_id::VERSION_MAX,
    },
    ApiSupport {
        key: ApiKey::CreatePartitions,
        min: create_partitions::VERSION_MIN,
        max: create_partitions::VERSION_MAX,
    },
];

pub fn supported(key: ApiKey) -> Option<&'static ApiSupport> {
    SUPPORTED_APIS.iter().find(|api| api.key == key)
}

/// A decoded request's context, handed to every handler.
pub struct RequestContext {
    pub shard: Rc<Shard>,
    /// The client's IP address, as group member descriptions show it.
    pub peer_ip: Rc<str>,
    pub header: RequestHeader,
    pub version: i16,
}

macro_rules! route {
    ($ctx:expr, $body:expr, $request:ty, $handler:path) => {
        match decode_body::<$request>($body, $ctx.version) {
            Ok(request) => encode(&$ctx, Some($handler(&$ctx, request).await)),
            Err(reason) => Outcome::Close(reason),
        }
    };
    (optional $ctx:expr, $body:expr, $request:ty, $handler:path) => {
        match decode_body::<$request>($body, $ctx.version) {
            Ok(request) => encode(&$ctx, $handler(&$ctx, request).await),
            Err(reason) => Outcome::Close(reason),
        }
    };
}

/// Handles one request frame (everything after the length prefix).
pub async fn dispatch(shard: Rc<Shard>, peer_ip: Rc<str>, mut frame: Bytes) -> Outcome {
    let preamble = match RequestPreamble::parse(&frame) {
        Ok(preamble) => preamble,
        Err(e) => return Outcome::Close(e.to_string()),
    };
    let Ok(key) = ApiKey::try_from(preamble.api_key) else {
        return Outcome::Close(format!("unknown api key {}", preamble.api_key));
    };
    let Some(api) = supported(key) else {
        return Outcome::Close(format!("unsupported api {key:?}"));
    };
    let version = preamble.api_version;
    if version < api.min || version > api.max {
        if key == ApiKey::ApiVersions {
            return Outcome::Respond(api_versions::unsupported_version(preamble.correlation_id));
        }
        return Outcome::Close(format!("unsupported version {version} of {key:?}"));
    }
    let header = match catch_decode(|| {
        decode_request_header(key, version, &mut frame).map_err(|e| e.to_string())
    }) {
        Ok(header) => header,
        Err(reason) => return Outcome::Close(reason),
    };
    let ctx = RequestContext {
        shard,
        peer_ip,
        header,
        version,
    };
    let body = frame;
    match key {
        ApiKey::Produce => {
            route!(optional ctx, body, kafka_protocol::messages::ProduceRequest, produce::handle)
        }
        ApiKey::Fetch => {
            match decode_body::<kafka_protocol::messages::FetchRequest>(body, ctx.version) {
                Ok(request) => encode_fetch(&ctx, &fetch::handle(&ctx, request).await),
                Err(reason) => Outcome::Close(reason),
            }
        }
        ApiKey::ListOffsets => route!(
            ctx,
            body,
            kafka_protocol::messages::ListOffsetsRequest,
            list_offsets::handle
        ),
        ApiKey::Metadata => route!(
            ctx,
            body,
            kafka_protocol::messages::MetadataRequest,
            metadata::handle
        ),
        ApiKey::ApiVersions => route!(
            ctx,
            body,
            kafka_protocol::messages::ApiVersionsRequest,
            api_versions::handle
        ),
        ApiKey::CreateTopics => route!(
            ctx,
            body,
            kafka_protocol::messages::CreateTopicsRequest,
            create_topics::handle
        ),
        ApiKey::DeleteTopics => route!(
            ctx,
            body,
            kafka_protocol::messages::DeleteTopicsRequest,
            delete_topics::handle
        ),
        ApiKey::DeleteRecords => route!(
            ctx,
            body,
            kafka_protocol::messages::DeleteRecordsRequest,
            delete_records::handle
        ),
        ApiKey::DescribeConfigs => {
            route!(
                ctx,
                body,
                kafka_protocol::messages::DescribeConfigsRequest,
                describe_configs::handle
            )
        }
        ApiKey::DescribeCluster => route!(
            ctx,
            body,
            kafka_protocol::messages::DescribeClusterRequest,
            describe_cluster::handle
        ),
        ApiKey::CreatePartitions => {
            route!(
                ctx,
                body,
                kafka_protocol::messages::CreatePartitionsRequest,
                create_partitions::handle
            )
        }
        ApiKey::InitProducerId => route!(
            ctx,
            body,
            kafka_protocol::messages::InitProducerIdRequest,
            init_producer_id::handle
        ),
        ApiKey::FindCoordinator => route!(
            ctx,
            body,
            kafka_protocol::messages::FindCoordinatorRequest,
            find_coordinator::handle
        ),
        ApiKey::JoinGroup => route!(
            ctx,
            body,
            kafka_protocol::messages::JoinGroupRequest,
            join_group::handle
        ),
        ApiKey::SyncGroup => route!(
            ctx,
            body,
            kafka_protocol::messages::SyncGroupRequest,
            sync_group::handle
        ),
        ApiKey::Heartbeat => route!(
            ctx,
            body,
            kafka_protocol::messages::HeartbeatRequest,
            heartbeat::handle
        ),
        ApiKey::LeaveGroup => route!(
            ctx,
            body,
            kafka_protocol::messages::LeaveGroupRequest,
            leave_group::handle
        ),
        ApiKey::OffsetCommit => route!(
            ctx,
            body,
            kafka_protocol::messages::OffsetCommitRequest,
            offset_commit::handle
        ),
        ApiKey::OffsetFetch => route!(
            ctx,
            body,
            kafka_protocol::messages::OffsetFetchRequest,
            offset_fetch::handle
        ),
        ApiKey::ListGroups => route!(
            ctx,
            body,
            kafka_protocol::messages::ListGroupsRequest,
            list_groups::handle
        ),
        ApiKey::DescribeGroups => route!(
            ctx,
            body,
            kafka_protocol::messages::DescribeGroupsRequest,
            describe_groups::handle
        ),
        ApiKey::DeleteGroups => route!(
            ctx,
            body,
            kafka_protocol::messages::DeleteGroupsRequest,
            delete_groups::handle
        ),
        ApiKey::OffsetDelete => route!(
            ctx,
            body,
            kafka_protocol::messages::OffsetDeleteRequest,
            offset_delete::handle
        ),
        ApiKey::AlterConfigs => route!(
            ctx,
            body,
            kafka_protocol::messages::AlterConfigsRequest,
            alter_configs::handle
        ),
        ApiKey::IncrementalAlterConfigs => route!(
            ctx,
            body,
            kafka_protocol::messages::IncrementalAlterConfigsRequest,
            alter_configs::handle_incremental
        ),
        _ => unreachable!("SUPPORTED_APIS lists only routed APIs"),
    }
}

/// The work for one requested partition on its owner shard, or `None` when the topic does not
/// have that partition.
pub type PartitionTask<T> = Option<glommio::Task<Result<T, ResponseError>>>;

/// Starts `work(owner, topic, partition, argument)` on the owner shard of each requested
/// partition of `topic`, all before any is awaited, so that partitions on different shards
/// proceed in parallel. Await each with [`partition_result`].
pub fn start_on_owners<A, T, F, Fut>(
    ctx: &RequestContext,
    topic: &str,
    requests: impl IntoIterator<Item = (i32, A)>,
    work: F,
) -> Vec<(i32, PartitionTask<T>)>
where
    A: Send + 'static,
    T: Send + 'static,
    F: Fn(Rc<Shard>, String, i32, A) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<T, ResponseError>> + 'static,
{
    let partitions = ctx
        .shard
        .metadata()
        .topics
        .get(topic)
        .map(|meta| meta.partitions);
    let start = |index: i32, argument: A| {
        let (shard, name, work) = (ctx.shard.clone(), topic.to_string(), work.clone());
        glommio::spawn_local(async move {
            let owner = shard.owner(&name, index);
            shard
                .call(owner, move |s| work(s, name, index, argument))
                .await
        })
    };
    requests
        .into_iter()
        .map(|(index, argument)| match partitions {
            Some(count) if index >= 0 && index < count => (index, Some(start(index, argument))),
            _ => (index, None),
        })
        .collect()
}

/// The outcome of a [`start_on_owners`] task: UNKNOWN_TOPIC_OR_PARTITION if none was started.
pub async fn partition_result<T>(task: PartitionTask<T>) -> Result<T, ResponseError> {
    match task {
        Some(task) => task.await,
        None => Err(ResponseError::UnknownTopicOrPartition),
    }
}

fn decode_body<T: Decodable>(mut body: Bytes, version: i16) -> Result<T, String> {
    catch_decode(|| T::decode(&mut body, version).map_err(|e| e.to_string()))
}

/// Decodes with at most [`REQUEST_ENTRIES_MAX`] entries.
fn bounded<T>(decode: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    kafka_protocol::protocol::decode_with_entries_max(REQUEST_ENTRIES_MAX, decode)
}

/// Runs a decoder, turning a panic inside it into an error: malformed input must never take the
/// broker down, whatever the codec does with it.
fn catch_decode<T>(decode: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(AssertUnwindSafe(|| bounded(decode)))
        .unwrap_or_else(|_| Err("decoder panicked".to_string()))
}

fn encode_fetch(
    ctx: &RequestContext,
    response: &kafka_protocol::messages::FetchResponse,
) -> Outcome {
    match fetch_frame::encode(ctx.version, ctx.header.correlation_id, response) {
        Ok(pieces) => Outcome::RespondPieces(pieces),
        Err(e) => Outcome::Close(format!("encoding Fetch response failed: {e}")),
    }
}

fn encode<M: Encodable>(ctx: &RequestContext, response: Option<M>) -> Outcome {
    let Some(response) = response else {
        return Outcome::NoResponse;
    };
    let key = ApiKey::try_from(ctx.header.request_api_key).expect("dispatch checked the api key");
    match encode_response(key, ctx.version, ctx.header.correlation_id, &response) {
        Ok(frame) => Outcome::Respond(frame),
        Err(e) => Outcome::Close(format!("encoding {key:?} response failed: {e}")),
    }
}
