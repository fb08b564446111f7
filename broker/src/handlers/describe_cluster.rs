//! DescribeCluster (KIP-700): the cluster id, the controller and the brokers. Versions 0–1.
//!
//! There is one broker, which is also what clients are told is the controller, as a Kafka
//! broker answers with a live broker. v1's endpoint type must be BROKERS: this broker has no
//! controller endpoints, as a Kafka broker answers then.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::{authorized_operations, RequestContext};

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 1;

/// Kafka's EndpointType.BROKER, the only value v0 can mean.
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub async fn handle(
    ctx: &RequestContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let config = &ctx.shard.config;
    let response = DescribeClusterResponse::default().with_endpoint_type(request.endpoint_type);
    if request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        return response
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(StrBytes::from_static_str(
                "this broker has only broker endpoints",
            )));
    }
    let node = BrokerId(config.node_id);
    response
        .with_cluster_id(StrBytes::from_string(
            ctx.shard.metadata().cluster_id.clone(),
        ))
        .with_controller_id(node)
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(node)
            .with_host(StrBytes::from_string(config.advertised_host()))
            .with_port(i32::from(config.listen.port()))])
        .with_cluster_authorized_operations(authorized_operations::if_requested(
            request.include_cluster_authorized_operations,
            authorized_operations::CLUSTER,
        ))
}
