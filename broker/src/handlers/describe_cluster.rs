//! DescribeCluster (KIP-700): the cluster id, the controller (the metadata quorum's leader as
//! this broker sees it, -1 while none is known) and the brokers. Versions 0–2.
//!
//! The brokers are the metadata snapshot's registrations: the live ones, as Metadata lists them,
//! and with v2's `include_fenced_brokers` the fenced ones too, marked `is_fenced`. v1+'s
//! endpoint type must be BROKERS: a broker here has no controller endpoints for clients (the
//! controller listener carries only Raft traffic), as a Kafka broker answers then.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::{authorized_operations, RequestContext};
use crate::cluster::metadata::MetadataSnapshot;

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 2;

/// Kafka's EndpointType.BROKER, the only value v0 can mean.
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let response = DescribeClusterResponse::default().with_endpoint_type(request.endpoint_type);
    if request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "this broker has only broker endpoints",
            )));
    }
    let snapshot = ctx.shard.metadata();
    response
        .with_cluster_id(StrBytes::from_string(snapshot.cluster_id.clone()))
        .with_controller_id(BrokerId(ctx.shard.controller_id()))
        .with_brokers(brokers(&snapshot, request.include_fenced_brokers))
        .with_cluster_authorized_operations(authorized_operations::if_requested(
            request.include_cluster_authorized_operations,
            authorized_operations::CLUSTER,
        ))
}

/// The registered brokers by id: the live ones, and the fenced ones too if asked.
fn brokers(snapshot: &MetadataSnapshot, include_fenced: bool) -> Vec<DescribeClusterBroker> {
    (snapshot.brokers.values())
        .filter(|broker| include_fenced || !broker.fenced)
        .map(|broker| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(broker.id))
                .with_host(StrBytes::from_string(broker.host.clone()))
                .with_port(i32::from(broker.port))
                .with_rack(broker.rack.clone().map(StrBytes::from_string))
                .with_is_fenced(broker.fenced)
        })
        .collect()
}
