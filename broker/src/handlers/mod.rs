//! Kafka API handlers: one module per API, each declaring the versions it serves.
//!
//! `dispatch` turns one request frame into an [`Outcome`]: it checks the API and version against
//! [`APIS`], decodes the header and body, and runs the API's handler. Anything that
//! cannot be decoded closes the connection, as Kafka does; nothing a client sends can panic the
//! broker.

pub mod alter_configs;
pub mod alter_partition_reassignments;
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
pub mod describe_quorum;
pub mod elect_leaders;
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
pub mod list_partition_reassignments;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};
use net::frame::{decode_request_header, encode_response, RequestPreamble};

use crate::cluster::routing::{coordinator_route, leader_route};
use crate::shard::message::{Reply, Request};
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

/// Runs one API's handler on a request body: decode, handle, encode.
type HandlerFn = fn(RequestContext, Bytes) -> Pin<Box<dyn Future<Output = Outcome>>>;

/// One API Sluice serves: its key, the versions it serves, and its handler. [`APIS`] lists every
/// one; dispatch, ApiVersions and the request fuzzer all read it.
pub struct ApiSupport {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
    /// The lowest version ApiVersions lists; `min` except for Produce (see
    /// `produce::VERSION_MIN_ADVERTISED`).
    pub advertised_min: i16,
    handler: HandlerFn,
    /// Encodes a default request of this API at a version: the fuzzer's template.
    #[cfg(test)]
    encode_default: fn(i16, &mut bytes::BytesMut) -> anyhow::Result<()>,
}

/// One [`APIS`] entry: `api!(Key, module, Request)` serves `module::handle` at the versions
/// `module::VERSION_MIN..=VERSION_MAX`; the long form names the handler and versions. The handler
/// answers with a response (`respond`), an optional one or a reason to close the connection (`optional`, Produce with acks=0) or a
/// Fetch response written in pieces (`pieces`).
macro_rules! api {
    ($key:ident, $module:ident, $request:ty) => {
        api!(
            $key,
            $request,
            $module::handle,
            respond,
            $module::VERSION_MIN,
            $module::VERSION_MAX
        )
    };
    ($key:ident, $request:ty, $handler:path, $answer:ident, $min:expr, $max:expr) => {
        api!($key, $request, $handler, $answer, $min, $max, $min)
    };
    ($key:ident, $request:ty, $handler:path, $answer:ident, $min:expr, $max:expr, $advertised_min:expr) => {
        ApiSupport {
            key: ApiKey::$key,
            min: $min,
            max: $max,
            advertised_min: $advertised_min,
            handler: |ctx, body| {
                Box::pin(async move {
                    match decode_body::<$request>(body, ctx.version) {
                        Ok(request) => $answer(&ctx, $handler(&ctx, request).await),
                        Err(reason) => Outcome::Close(reason),
                    }
                })
            },
            #[cfg(test)]
            encode_default: |version, buf| <$request>::default().encode(buf, version),
        }
    };
}

/// Every API Sluice answers, in the order ApiVersions lists them.
pub const APIS: &[ApiSupport] = &[
    api!(
        AlterConfigs,
        AlterConfigsRequest,
        alter_configs::handle,
        respond,
        alter_configs::VERSION_MIN,
        alter_configs::VERSION_MAX
    ),
    api!(
        IncrementalAlterConfigs,
        IncrementalAlterConfigsRequest,
        alter_configs::handle_incremental,
        respond,
        alter_configs::INCREMENTAL_VERSION_MIN,
        alter_configs::INCREMENTAL_VERSION_MAX
    ),
    api!(FindCoordinator, find_coordinator, FindCoordinatorRequest),
    api!(JoinGroup, join_group, JoinGroupRequest),
    api!(SyncGroup, sync_group, SyncGroupRequest),
    api!(Heartbeat, heartbeat, HeartbeatRequest),
    api!(LeaveGroup, leave_group, LeaveGroupRequest),
    api!(OffsetCommit, offset_commit, OffsetCommitRequest),
    api!(OffsetFetch, offset_fetch, OffsetFetchRequest),
    api!(ListGroups, list_groups, ListGroupsRequest),
    api!(DescribeGroups, describe_groups, DescribeGroupsRequest),
    api!(DeleteGroups, delete_groups, DeleteGroupsRequest),
    api!(OffsetDelete, offset_delete, OffsetDeleteRequest),
    api!(
        Produce,
        ProduceRequest,
        produce::handle,
        optional,
        produce::VERSION_MIN,
        produce::VERSION_MAX,
        produce::VERSION_MIN_ADVERTISED
    ),
    api!(
        Fetch,
        FetchRequest,
        fetch::handle,
        pieces,
        fetch::VERSION_MIN,
        fetch::VERSION_MAX
    ),
    api!(ListOffsets, list_offsets, ListOffsetsRequest),
    api!(
        OffsetForLeaderEpoch,
        offset_for_leader_epoch,
        OffsetForLeaderEpochRequest
    ),
    api!(Metadata, metadata, MetadataRequest),
    api!(ApiVersions, api_versions, ApiVersionsRequest),
    api!(CreateTopics, create_topics, CreateTopicsRequest),
    api!(DeleteRecords, delete_records, DeleteRecordsRequest),
    api!(DeleteTopics, delete_topics, DeleteTopicsRequest),
    api!(DescribeConfigs, describe_configs, DescribeConfigsRequest),
    api!(DescribeCluster, describe_cluster, DescribeClusterRequest),
    api!(DescribeQuorum, describe_quorum, DescribeQuorumRequest),
    api!(InitProducerId, init_producer_id, InitProducerIdRequest),
    api!(CreatePartitions, create_partitions, CreatePartitionsRequest),
    api!(ElectLeaders, elect_leaders, ElectLeadersRequest),
    api!(
        AlterPartitionReassignments,
        alter_partition_reassignments,
        AlterPartitionReassignmentsRequest
    ),
    api!(
        ListPartitionReassignments,
        list_partition_reassignments,
        ListPartitionReassignmentsRequest
    ),
];

pub fn supported(key: ApiKey) -> Option<&'static ApiSupport> {
    APIS.iter().find(|api| api.key == key)
}

/// A decoded request's context, handed to every handler.
pub struct RequestContext {
    pub shard: Rc<Shard>,
    /// The client's IP address, as group member descriptions show it.
    pub peer_ip: Rc<str>,
    pub header: RequestHeader,
    pub version: i16,
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
    (api.handler)(ctx, frame).await
}

/// The work for one requested partition on its owner shard, or the error it was refused with
/// before any shard was asked (the partition does not exist, or another broker leads it).
pub type PartitionTask<T> = Result<glommio::Task<Result<T, ResponseError>>, ResponseError>;

/// Sends `request(topic, partition, argument)` to the owner shard of each requested partition
/// of `topic` that this broker leads, all before any is awaited, so that partitions on different
/// shards proceed in parallel; `reply` takes the result out of the answer. A partition this
/// broker does not lead is refused here (`cluster::routing::leader_route`). Await each with
/// [`partition_result`].
pub fn start_on_owners<A, T>(
    ctx: &RequestContext,
    topic: &str,
    requests: impl IntoIterator<Item = (i32, A)>,
    request: fn(String, i32, A) -> Request,
    reply: fn(Reply) -> Result<T, ResponseError>,
) -> Vec<(i32, PartitionTask<T>)>
where
    A: 'static,
    T: 'static,
{
    let snapshot = ctx.shard.metadata();
    let node = ctx.shard.config.node_id;
    let start = |index: i32, argument: A| {
        let (shard, name) = (ctx.shard.clone(), topic.to_string());
        glommio::spawn_local(async move {
            let owner = shard.owner(&name, index);
            reply(shard.call(owner, request(name, index, argument)).await)
        })
    };
    requests
        .into_iter()
        .map(|(index, argument)| {
            let route = leader_route(&snapshot, topic, index, node);
            (
                index,
                route
                    .map(|()| start(index, argument))
                    .map_err(|refused| refused.error),
            )
        })
        .collect()
}

/// The shard coordinating `group` if this broker coordinates it (it leads the group's
/// `__consumer_offsets` partition); else NOT_COORDINATOR, or COORDINATOR_NOT_AVAILABLE when no
/// broker does (`cluster::routing::coordinator_route`). A broker cut off from its quorum
/// (`tasks/cut_off.rs`) coordinates nothing: NOT_COORDINATOR, so that members look again.
pub fn group_shard(ctx: &RequestContext, group: &str) -> Result<usize, ResponseError> {
    if ctx.shard.cut_off.get() {
        return Err(ResponseError::NotCoordinator);
    }
    let partition = crate::groups::store::offsets_partition(group);
    coordinator_route(&ctx.shard.metadata(), partition, ctx.shard.config.node_id)?;
    Ok(crate::groups::coordinator_shard(group, ctx.shard.count))
}

/// The outcome of a [`start_on_owners`] task.
pub async fn partition_result<T>(task: PartitionTask<T>) -> Result<T, ResponseError> {
    task?.await
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

/// A Fetch response, written in pieces so its records are not copied.
fn pieces(ctx: &RequestContext, response: FetchResponse) -> Outcome {
    match fetch_frame::encode(ctx.version, ctx.header.correlation_id, &response) {
        Ok(pieces) => Outcome::RespondPieces(pieces),
        Err(e) => Outcome::Close(format!("encoding Fetch response failed: {e}")),
    }
}

fn respond<M: Encodable>(ctx: &RequestContext, response: M) -> Outcome {
    optional(ctx, Ok(Some(response)))
}

/// A response, none, or a reason to close the connection (Produce with acks=0).
fn optional<M: Encodable>(ctx: &RequestContext, response: Result<Option<M>, String>) -> Outcome {
    let response = match response {
        Ok(Some(response)) => response,
        Ok(None) => return Outcome::NoResponse,
        Err(reason) => return Outcome::Close(reason),
    };
    let key = ApiKey::try_from(ctx.header.request_api_key).expect("dispatch checked the api key");
    match encode_response(key, ctx.version, ctx.header.correlation_id, &response) {
        Ok(frame) => Outcome::Respond(frame),
        Err(e) => Outcome::Close(format!("encoding {key:?} response failed: {e}")),
    }
}
