//! Framing and ApiVersions negotiation as pure functions over bytes: no sockets here, so an async
//! or benchmark client can reuse them. Per-API builders and parsers are in `apis`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes, VersionRange};

use super::error::{ClientError, Result};

/// Frames are bounded and prefixed as the broker's (`net::frame`): the 100 MiB limit only stops
/// garbage or hostile size prefixes, since Fetch responses are bounded by the request's max_bytes.
pub use net::frame::{FRAME_BYTES_MAX, FRAME_PREFIX_BYTES};

/// The Kafka API versions this client implements; negotiation picks within these.
pub const CLIENT_API_VERSIONS: &[(ApiKey, VersionRange)] = &[
    (ApiKey::ApiVersions, VersionRange { min: 0, max: 3 }),
    (ApiKey::Metadata, VersionRange { min: 1, max: 12 }),
    (ApiKey::Produce, VersionRange { min: 3, max: 9 }),
    (ApiKey::Fetch, VersionRange { min: 4, max: 12 }),
    (ApiKey::ListOffsets, VersionRange { min: 1, max: 7 }),
    (ApiKey::CreateTopics, VersionRange { min: 2, max: 7 }),
    (ApiKey::DeleteTopics, VersionRange { min: 1, max: 6 }),
    (ApiKey::DescribeConfigs, VersionRange { min: 1, max: 4 }),
    (ApiKey::FindCoordinator, VersionRange { min: 0, max: 4 }),
    (ApiKey::JoinGroup, VersionRange { min: 0, max: 9 }),
    (ApiKey::SyncGroup, VersionRange { min: 0, max: 5 }),
    (ApiKey::Heartbeat, VersionRange { min: 0, max: 4 }),
    (ApiKey::LeaveGroup, VersionRange { min: 0, max: 5 }),
    // v2 is the oldest kafka-protocol encodes; v9 is KIP-848's member epoch.
    (ApiKey::OffsetCommit, VersionRange { min: 2, max: 8 }),
    // v2 is the first that can ask for all of a group's partitions (topics null).
    (ApiKey::OffsetFetch, VersionRange { min: 2, max: 8 }),
    (ApiKey::ListGroups, VersionRange { min: 0, max: 4 }),
    (ApiKey::DescribeGroups, VersionRange { min: 0, max: 5 }),
    (ApiKey::DeleteGroups, VersionRange { min: 0, max: 2 }),
    (ApiKey::OffsetDelete, VersionRange { min: 0, max: 0 }),
    // Non-transactional only; v3+ can bump the epoch of an existing producer id (KIP-360).
    (ApiKey::InitProducerId, VersionRange { min: 0, max: 4 }),
    // v2 can ask for fenced brokers too.
    (ApiKey::DescribeCluster, VersionRange { min: 0, max: 2 }),
    (ApiKey::DescribeQuorum, VersionRange { min: 0, max: 2 }),
    // v1 is the first with an election type (unclean elections).
    (ApiKey::ElectLeaders, VersionRange { min: 1, max: 2 }),
    (
        ApiKey::AlterPartitionReassignments,
        VersionRange { min: 0, max: 0 },
    ),
    (
        ApiKey::ListPartitionReassignments,
        VersionRange { min: 0, max: 0 },
    ),
];

/// Validates a frame's length prefix before anything is allocated for its body.
pub fn frame_body_bytes(prefix: [u8; FRAME_PREFIX_BYTES]) -> Result<usize> {
    let frame_bytes = i32::from_be_bytes(prefix);
    if frame_bytes < 0 || frame_bytes as usize > FRAME_BYTES_MAX {
        return Err(ClientError::FrameSize {
            frame_bytes: i64::from(frame_bytes),
            frame_bytes_max: FRAME_BYTES_MAX,
        });
    }
    Ok(frame_bytes as usize)
}

/// Encodes a whole request frame: length prefix, RequestHeader, body.
pub fn encode_request_frame<R: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &R,
) -> Result<Bytes> {
    let mut header = RequestHeader::default();
    header.request_api_key = api_key as i16;
    header.request_api_version = api_version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_string(client_id.to_owned()));
    let header_version = api_key.request_header_version(api_version);
    let encode_error = |error: anyhow::Error| {
        ClientError::protocol(format!(
            "encoding {api_key:?} v{api_version} request: {error}"
        ))
    };
    let mut frame = BytesMut::new();
    frame.put_i32(0); // Filled in below.
    header
        .encode(&mut frame, header_version)
        .map_err(encode_error)?;
    body.encode(&mut frame, api_version).map_err(encode_error)?;
    let body_bytes = frame.len() - FRAME_PREFIX_BYTES;
    if body_bytes > FRAME_BYTES_MAX {
        return Err(ClientError::FrameSize {
            frame_bytes: body_bytes as i64,
            frame_bytes_max: FRAME_BYTES_MAX,
        });
    }
    frame[..FRAME_PREFIX_BYTES].copy_from_slice(&(body_bytes as i32).to_be_bytes());
    Ok(frame.freeze())
}

/// Decodes a response frame body (without its length prefix): ResponseHeader, then the body.
pub fn decode_response_frame<R: Decodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    mut frame: Bytes,
) -> Result<R> {
    let decode_error = |error: anyhow::Error| {
        ClientError::protocol(format!(
            "decoding {api_key:?} v{api_version} response: {error}"
        ))
    };
    let header_version = api_key.response_header_version(api_version);
    let header = ResponseHeader::decode(&mut frame, header_version).map_err(decode_error)?;
    if header.correlation_id != correlation_id {
        return Err(ClientError::protocol(format!(
            "response correlation id {} does not match request {correlation_id}",
            header.correlation_id
        )));
    }
    R::decode(&mut frame, api_version).map_err(decode_error)
}

pub fn api_versions_request(version: i16) -> ApiVersionsRequest {
    let mut request = ApiVersionsRequest::default();
    if version >= 3 {
        request.client_software_name = StrBytes::from_static_str("sluice");
        request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
    }
    request
}

/// Error code UNSUPPORTED_VERSION: a broker that does not know our ApiVersions version answers
/// with it, encoded as an ApiVersions v0 body.
pub const UNSUPPORTED_VERSION: i16 = 35;

/// Decodes an ApiVersions response body, switching to v0 when the broker rejected our version.
pub fn decode_api_versions_frame(
    api_version: i16,
    correlation_id: i32,
    frame: Bytes,
) -> Result<ApiVersionsResponse> {
    // ApiVersions responses always use header v0: correlation id, then error_code first in body.
    let error_code = (frame.len() >= 6).then(|| (&frame[4..6]).get_i16());
    let body_version = if error_code == Some(UNSUPPORTED_VERSION) {
        0
    } else {
        api_version
    };
    decode_response_frame(ApiKey::ApiVersions, body_version, correlation_id, frame)
}

/// The version chosen for each API: the highest both sides support.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NegotiatedVersions {
    versions: Vec<(ApiKey, i16)>,
}

impl NegotiatedVersions {
    pub fn negotiate(response: &ApiVersionsResponse) -> Self {
        let mut versions = Vec::with_capacity(CLIENT_API_VERSIONS.len());
        for (api_key, ours) in CLIENT_API_VERSIONS {
            let theirs = response
                .api_keys
                .iter()
                .find(|entry| entry.api_key == *api_key as i16);
            if let Some(theirs) = theirs {
                let range = ours.intersect(&VersionRange {
                    min: theirs.min_version,
                    max: theirs.max_version,
                });
                if !range.is_empty() {
                    versions.push((*api_key, range.max));
                }
            }
        }
        NegotiatedVersions { versions }
    }

    pub fn get(&self, api_key: ApiKey) -> Option<i16> {
        self.versions
            .iter()
            .find(|(key, _)| *key == api_key)
            .map(|(_, version)| *version)
    }

    pub fn require(&self, api_key: ApiKey) -> Result<i16> {
        self.get(api_key)
            .ok_or_else(|| ClientError::UnsupportedApi {
                api: api_key,
                ours: client_versions(api_key),
            })
    }
}

/// Our version range for an API. Panics for an API the client does not implement.
pub fn client_versions(api_key: ApiKey) -> VersionRange {
    CLIENT_API_VERSIONS
        .iter()
        .find(|(key, _)| *key == api_key)
        .map(|(_, range)| *range)
        .unwrap_or_else(|| panic!("client does not implement {api_key:?}"))
}
