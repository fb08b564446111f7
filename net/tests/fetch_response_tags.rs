//! The vendored kafka-protocol decodes FetchResponses that carry NodeEndpoints (tag 0) below v16,
//! as tansu 0.6 sends them, by skipping the tag (KIP-482: unknown tags are ignored).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::FetchResponse;
use kafka_protocol::protocol::{Decodable, Encodable};

/// A FetchResponse body of `version` with its top-level tagged fields replaced by one field:
/// tag 0 holding an empty compact array (NodeEndpoints with no entries).
fn with_tag_zero(version: i16) -> Bytes {
    let mut body = BytesMut::new();
    FetchResponse::default()
        .with_throttle_time_ms(7)
        .encode(&mut body, version)
        .unwrap();
    // The default response has no tagged fields: its last byte is the tagged-field count 0.
    assert_eq!(body.last(), Some(&0));
    body.truncate(body.len() - 1);
    body.put_u8(1); // one tagged field
    body.put_u8(0); // tag 0
    body.put_u8(1); // one byte of value
    body.put_u8(1); // compact array length 0 (stored as length + 1)
    body.freeze()
}

#[test]
fn node_endpoints_below_v16_are_skipped() {
    for version in 12..=15 {
        let mut bytes = with_tag_zero(version);
        let response = FetchResponse::decode(&mut bytes, version).unwrap();
        assert_eq!(response.throttle_time_ms, 7);
        assert!(response.node_endpoints.is_empty());
        assert_eq!(response.unknown_tagged_fields.len(), 1, "version {version}");
        assert!(bytes.is_empty(), "version {version}: every byte consumed");
    }
}

#[test]
fn node_endpoints_from_v16_are_decoded() {
    let mut bytes = with_tag_zero(16);
    let response = FetchResponse::decode(&mut bytes, 16).unwrap();
    assert_eq!(response.throttle_time_ms, 7);
    assert!(response.node_endpoints.is_empty());
    assert!(response.unknown_tagged_fields.is_empty());
    assert!(bytes.is_empty());
}
