//! The Fetch response frame as a list of pieces written one after the other: the header and
//! encoded fields in small buffers, and each partition's records as the `Bytes` storage returned
//! (a slice of the tail cache or of a read buffer), so record bytes are never copied into a
//! response buffer. The concatenated pieces are byte for byte what `encode_response` produces
//! (see the tests); the layout is Kafka's FetchResponse for the versions `fetch.rs` serves.
//!
//! A response that uses a field this encoder does not write (tagged fields, node endpoints,
//! fields of other versions) is encoded by `encode_response` as one piece instead.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use net::frame::{encode_response, FRAME_PREFIX_BYTES};

use super::fetch::{VERSION_MAX, VERSION_MIN};

/// Records up to this size are copied next to the fields around them: a separate socket write
/// per small partition would cost more than the copy.
pub const RECORDS_INLINE_BYTES_MAX: usize = 16 * 1024;

/// First version with compact arrays, strings and bytes and with tagged fields.
const FLEXIBLE_VERSION_MIN: i16 = 12;

/// The complete response frame (length prefix included) as pieces to write in order.
pub fn encode(
    version: i16,
    correlation_id: i32,
    response: &FetchResponse,
) -> anyhow::Result<Vec<Bytes>> {
    if !is_plain(version, response) {
        let frame = encode_response(ApiKey::Fetch, version, correlation_id, response)?;
        return Ok(vec![frame]);
    }
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = ApiKey::Fetch.response_header_version(version);
    let size = header.compute_size(header_version)? + response.compute_size(version)?;
    anyhow::ensure!(
        size <= i32::MAX as usize,
        "response of {size} bytes is too large"
    );
    let mut frame = Pieces::default();
    frame.buffer.put_i32(size as i32);
    header.encode(&mut frame.buffer, header_version)?;
    encode_body(&mut frame, version, response)?;
    let pieces = frame.finish();
    let written: usize = pieces.iter().map(Bytes::len).sum();
    assert_eq!(written, FRAME_PREFIX_BYTES + size);
    Ok(pieces)
}

/// Whether every field set in `response` is one this encoder writes at `version`.
fn is_plain(version: i16, response: &FetchResponse) -> bool {
    (VERSION_MIN..=VERSION_MAX).contains(&version)
        && (version >= 7 || response.session_id == 0)
        && response.node_endpoints.is_empty()
        && response.unknown_tagged_fields.is_empty()
        && response.responses.iter().all(|topic| {
            topic.unknown_tagged_fields.is_empty()
                && topic
                    .partitions
                    .iter()
                    .all(|p| is_plain_partition(version, p))
        })
}

fn is_plain_partition(version: i16, partition: &PartitionData) -> bool {
    (version >= 11 || partition.preferred_read_replica.0 == -1)
        && partition.diverging_epoch == Default::default()
        && partition.current_leader == Default::default()
        && partition.snapshot_id == Default::default()
        && partition.unknown_tagged_fields.is_empty()
}

#[derive(Default)]
struct Pieces {
    done: Vec<Bytes>,
    buffer: BytesMut,
}

impl Pieces {
    fn put_records(&mut self, records: &Bytes) {
        if records.len() <= RECORDS_INLINE_BYTES_MAX {
            self.buffer.extend_from_slice(records);
            return;
        }
        let fields = std::mem::take(&mut self.buffer).freeze();
        self.done.push(fields);
        self.done.push(records.clone());
    }

    fn finish(mut self) -> Vec<Bytes> {
        if !self.buffer.is_empty() {
            self.done.push(self.buffer.freeze());
        }
        self.done
    }
}

fn encode_body(frame: &mut Pieces, version: i16, response: &FetchResponse) -> anyhow::Result<()> {
    let flexible = version >= FLEXIBLE_VERSION_MIN;
    let buffer = &mut frame.buffer;
    buffer.put_i32(response.throttle_time_ms);
    if version >= 7 {
        buffer.put_i16(response.error_code);
        buffer.put_i32(response.session_id);
    }
    put_array_len(buffer, flexible, Some(response.responses.len()));
    for topic in &response.responses {
        encode_topic(frame, version, topic)?;
    }
    put_no_tagged_fields(&mut frame.buffer, flexible);
    Ok(())
}

fn encode_topic(
    frame: &mut Pieces,
    version: i16,
    topic: &FetchableTopicResponse,
) -> anyhow::Result<()> {
    let flexible = version >= FLEXIBLE_VERSION_MIN;
    put_string(&mut frame.buffer, flexible, topic.topic.as_str())?;
    put_array_len(&mut frame.buffer, flexible, Some(topic.partitions.len()));
    for partition in &topic.partitions {
        encode_partition(frame, version, partition)?;
    }
    put_no_tagged_fields(&mut frame.buffer, flexible);
    Ok(())
}

fn encode_partition(
    frame: &mut Pieces,
    version: i16,
    partition: &PartitionData,
) -> anyhow::Result<()> {
    let flexible = version >= FLEXIBLE_VERSION_MIN;
    let buffer = &mut frame.buffer;
    buffer.put_i32(partition.partition_index);
    buffer.put_i16(partition.error_code);
    buffer.put_i64(partition.high_watermark);
    buffer.put_i64(partition.last_stable_offset);
    if version >= 5 {
        buffer.put_i64(partition.log_start_offset);
    }
    let aborted = partition.aborted_transactions.as_ref();
    put_array_len(buffer, flexible, aborted.map(Vec::len));
    for transaction in aborted.into_iter().flatten() {
        transaction.encode(buffer, version)?;
    }
    if version >= 11 {
        buffer.put_i32(partition.preferred_read_replica.0);
    }
    let records = partition.records.as_ref();
    put_bytes_len(buffer, flexible, records.map(Bytes::len))?;
    if let Some(records) = records {
        frame.put_records(records);
    }
    put_no_tagged_fields(&mut frame.buffer, flexible);
    Ok(())
}

/// An array's length: compact (length + 1 as an unsigned varint, 0 for null) in flexible
/// versions, else an i32 (-1 for null).
fn put_array_len(buffer: &mut BytesMut, flexible: bool, len: Option<usize>) {
    match (flexible, len) {
        (true, None) => put_unsigned_varint(buffer, 0),
        (true, Some(len)) => put_unsigned_varint(buffer, len as u64 + 1),
        (false, None) => buffer.put_i32(-1),
        (false, Some(len)) => buffer.put_i32(len as i32),
    }
}

/// A byte string's length, encoded as an array's.
fn put_bytes_len(buffer: &mut BytesMut, flexible: bool, len: Option<usize>) -> anyhow::Result<()> {
    anyhow::ensure!(
        len.is_none_or(|len| len <= i32::MAX as usize),
        "records too large"
    );
    put_array_len(buffer, flexible, len);
    Ok(())
}

fn put_string(buffer: &mut BytesMut, flexible: bool, value: &str) -> anyhow::Result<()> {
    anyhow::ensure!(value.len() <= i16::MAX as usize, "string too long");
    if flexible {
        put_unsigned_varint(buffer, value.len() as u64 + 1);
    } else {
        buffer.put_i16(value.len() as i16);
    }
    buffer.extend_from_slice(value.as_bytes());
    Ok(())
}

fn put_no_tagged_fields(buffer: &mut BytesMut, flexible: bool) {
    if flexible {
        put_unsigned_varint(buffer, 0);
    }
}

fn put_unsigned_varint(buffer: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buffer.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buffer.put_u8(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{AbortedTransaction, EpochEndOffset};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn records(len: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    fn partition(index: i32, error_code: i16, records: Option<Bytes>) -> PartitionData {
        PartitionData::default()
            .with_partition_index(index)
            .with_error_code(error_code)
            .with_high_watermark(1000 + i64::from(index))
            .with_last_stable_offset(900)
            .with_log_start_offset(7)
            .with_records(records)
    }

    fn topic(name: &str, partitions: Vec<PartitionData>) -> FetchableTopicResponse {
        FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_string(name.to_string())))
            .with_partitions(partitions)
    }

    /// Responses with what the handler produces: several topics and partitions, records small
    /// and large, empty and null, errors, and a long topic name (a two-byte varint length).
    fn responses() -> Vec<FetchResponse> {
        let large = records(RECORDS_INLINE_BYTES_MAX + 1, 0xab);
        let many: Vec<PartitionData> = (0..130)
            .map(|i| partition(i, 0, Some(records(i as usize, i as u8))))
            .collect();
        vec![
            FetchResponse::default(),
            FetchResponse::default().with_error_code(70),
            FetchResponse::default().with_responses(vec![topic("t", vec![partition(0, 0, None)])]),
            FetchResponse::default().with_responses(vec![
                topic(
                    "orders",
                    vec![
                        partition(0, 0, Some(records(100, 1))),
                        partition(1, 1, Some(Bytes::new())),
                        partition(2, 0, Some(large.clone())),
                        partition(3, 0, Some(large.clone())),
                    ],
                ),
                topic(&"x".repeat(200), vec![partition(5, 3, Some(large))]),
                topic("many", many),
            ]),
            FetchResponse::default()
                .with_throttle_time_ms(5)
                .with_responses(vec![topic(
                    "aborted",
                    vec![
                        partition(0, 0, Some(records(10, 2))).with_aborted_transactions(Some(
                            vec![AbortedTransaction::default()
                                .with_producer_id(kafka_protocol::messages::ProducerId(3))
                                .with_first_offset(4)],
                        )),
                    ],
                )]),
        ]
    }

    fn concatenated(pieces: &[Bytes]) -> Vec<u8> {
        pieces
            .iter()
            .flat_map(|piece| piece.iter().copied())
            .collect()
    }

    #[test]
    fn pieces_match_the_encoder_at_every_version() {
        for version in VERSION_MIN..=VERSION_MAX {
            for (case, response) in responses().iter().enumerate() {
                let expected = encode_response(ApiKey::Fetch, version, 42, response).unwrap();
                let pieces = encode(version, 42, response).unwrap();
                assert_eq!(
                    concatenated(&pieces),
                    expected[..],
                    "version {version}, case {case}"
                );
            }
        }
    }

    #[test]
    fn a_preferred_read_replica_is_written_from_v11() {
        let redirected = partition(0, 0, Some(Bytes::new()))
            .with_preferred_read_replica(kafka_protocol::messages::BrokerId(3));
        let response = FetchResponse::default().with_responses(vec![topic("t", vec![redirected])]);
        for version in 11..=VERSION_MAX {
            assert!(is_plain(version, &response));
            let expected = encode_response(ApiKey::Fetch, version, 5, &response).unwrap();
            let pieces = encode(version, 5, &response).unwrap();
            assert_eq!(concatenated(&pieces), expected[..], "version {version}");
        }
    }

    #[test]
    fn large_records_are_not_copied() {
        let large = records(RECORDS_INLINE_BYTES_MAX + 1, 7);
        let response = FetchResponse::default()
            .with_responses(vec![topic("t", vec![partition(0, 0, Some(large.clone()))])]);
        for version in VERSION_MIN..=VERSION_MAX {
            let pieces = encode(version, 1, &response).unwrap();
            assert!(pieces.iter().any(|piece| piece.as_ptr() == large.as_ptr()));
            let small = partition(0, 0, Some(records(10, 1)));
            let response = FetchResponse::default().with_responses(vec![topic("t", vec![small])]);
            assert_eq!(encode(version, 1, &response).unwrap().len(), 1);
        }
    }

    #[test]
    fn fields_it_does_not_write_fall_back_to_the_encoder() {
        let diverging = partition(0, 0, Some(records(RECORDS_INLINE_BYTES_MAX + 1, 1)))
            .with_diverging_epoch(EpochEndOffset::default().with_epoch(3));
        let response = FetchResponse::default().with_responses(vec![topic("t", vec![diverging])]);
        let expected = encode_response(ApiKey::Fetch, 12, 9, &response).unwrap();
        let pieces = encode(12, 9, &response).unwrap();
        assert_eq!(pieces, vec![expected]);
        assert!(encode(3, 9, &response).is_err());
    }
}
