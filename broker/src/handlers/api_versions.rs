//! ApiVersions: which APIs and versions this broker serves.
//!
//! Versions 0–4. A request at a version we do not know is answered at version 0 with
//! UNSUPPORTED_VERSION and the full list, so the client can retry with a version we serve
//! (KIP-511); clients such as kafka-python rely on that.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use net::frame::encode_response;

use super::{RequestContext, APIS};

pub const VERSION_MIN: i16 = 0;
pub const VERSION_MAX: i16 = 4;

pub async fn handle(_ctx: &RequestContext, _request: ApiVersionsRequest) -> ApiVersionsResponse {
    response(0)
}

fn response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = APIS
        .iter()
        .map(|api| {
            ApiVersion::default()
                .with_api_key(api.key as i16)
                .with_min_version(api.advertised_min)
                .with_max_version(api.max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

/// The version-0 response to an ApiVersions request whose version we do not serve.
pub fn unsupported_version(correlation_id: i32) -> Bytes {
    let body = response(ResponseError::UnsupportedVersion.code());
    encode_response(ApiKey::ApiVersions, 0, correlation_id, &body)
        .expect("a version-0 ApiVersions response encodes")
}
