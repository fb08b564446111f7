//! Building RecordBatch v2 batches: the records section (Kafka's `DefaultRecord`, varints
//! zigzag-encoded) and the header around it, CRC included.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    set_crc, BATCH_HEADER_BYTES, BATCH_LENGTH_PREFIX_BYTES, MAGIC_V2, NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};

/// The batch-level fields a producer chooses. `baseOffset` is 0 (the log assigns offsets) and
/// `lastOffsetDelta` and `recordCount` follow from the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchFields {
    /// Codec id in bits 0-2 (the records given to [`encode_batch`] are compressed with it),
    /// and the timestamp-type and transactional bits.
    pub attributes: i16,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl BatchFields {
    /// An uncompressed CreateTime batch of a producer that is not idempotent, every record at
    /// `timestamp_ms`.
    pub fn plain(timestamp_ms: i64) -> BatchFields {
        BatchFields {
            attributes: 0,
            base_timestamp: timestamp_ms,
            max_timestamp: timestamp_ms,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            base_sequence: NO_SEQUENCE,
        }
    }
}

/// One record header: a key (never null) and a value (null allowed).
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// Appends one record to `out`: record `offset_delta` of its batch, with its timestamp
/// `timestamp_delta` after the batch's `baseTimestamp`.
pub fn encode_record(
    out: &mut Vec<u8>,
    offset_delta: i32,
    timestamp_delta: i64,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[RecordHeader<'_>],
) {
    let mut body = Vec::with_capacity(
        16 + key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len) + 16 * headers.len(),
    );
    body.push(0); // attributes: unused
    put_varint(&mut body, timestamp_delta);
    put_varint(&mut body, i64::from(offset_delta));
    put_bytes_field(&mut body, key);
    put_bytes_field(&mut body, value);
    put_varint(&mut body, headers.len() as i64);
    for header in headers {
        put_bytes_field(&mut body, Some(header.key));
        put_bytes_field(&mut body, header.value);
    }
    put_varint(out, body.len() as i64);
    out.extend_from_slice(&body);
}

/// One batch of `record_count` records whose records section (as [`encode_record`] writes it,
/// then compressed by the codec in `fields.attributes`) is `records`. The partition leader
/// epoch is left unset (-1) for the log to stamp.
pub fn encode_batch(fields: &BatchFields, record_count: i32, records: &[u8]) -> Bytes {
    assert!(record_count > 0, "a batch holds at least one record");
    let total_bytes = BATCH_HEADER_BYTES + records.len();
    let batch_length = i32::try_from(total_bytes - BATCH_LENGTH_PREFIX_BYTES)
        .expect("a batch's length fits its i32 field");
    let mut out = BytesMut::with_capacity(total_bytes);
    out.put_i64(0); // baseOffset
    out.put_i32(batch_length);
    out.put_i32(NO_PARTITION_LEADER_EPOCH);
    out.put_i8(MAGIC_V2);
    out.put_u32(0); // crc, set below
    out.put_i16(fields.attributes);
    out.put_i32(record_count - 1); // lastOffsetDelta
    out.put_i64(fields.base_timestamp);
    out.put_i64(fields.max_timestamp);
    out.put_i64(fields.producer_id);
    out.put_i16(fields.producer_epoch);
    out.put_i32(fields.base_sequence);
    out.put_i32(record_count);
    assert_eq!(out.len(), BATCH_HEADER_BYTES);
    out.extend_from_slice(records);
    set_crc(&mut out);
    out.freeze()
}

/// A length (-1: null) then the bytes.
fn put_bytes_field(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(bytes) => {
            put_varint(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

/// A zigzag varint (or varlong: the encoding is the same, only the width differs).
fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}
