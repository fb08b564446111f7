//! RecordBatch v2, the batch format of Kafka's wire protocol and of Sluice's segment files. This
//! crate is the only code that knows the header's byte layout; storage, the broker, the client
//! and the benchmarks read, check, stamp and build batches through it.
//!
//! | bytes  | field                | notes                                                  |
//! |--------|----------------------|--------------------------------------------------------|
//! | 0..8   | baseOffset           | assigned by the log at append                          |
//! | 8..12  | batchLength          | bytes after this field                                 |
//! | 12..16 | partitionLeaderEpoch | stamped by the log at append; outside the CRC          |
//! | 16     | magic                | 2                                                      |
//! | 17..21 | crc                  | CRC-32C of bytes 21..end                               |
//! | 21..23 | attributes           | bits 0-2 codec, 3 LogAppendTime, 4 transactional, 5 control |
//! | 23..27 | lastOffsetDelta      |                                                        |
//! | 27..35 | baseTimestamp        |                                                        |
//! | 35..43 | maxTimestamp         |                                                        |
//! | 43..51 | producerId           | -1: not idempotent                                     |
//! | 51..53 | producerEpoch        |                                                        |
//! | 53..57 | baseSequence         |                                                        |
//! | 57..61 | recordCount          |                                                        |
//! | 61..   | records              | compressed as a whole when the codec is not 0          |

mod encode;
mod error;
pub mod records;

pub use encode::{encode_batch, encode_record, BatchFields, RecordHeader};
pub use error::BatchError;

/// Bytes of the fixed RecordBatch v2 header, up to the first record.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Bytes before and including the `batchLength` field; `batchLength` counts the bytes after it.
pub const BATCH_LENGTH_PREFIX_BYTES: usize = 12;

/// Largest single batch accepted from a producer or read back from disk. Every length read from
/// the wire or from a segment is checked against this before anything is allocated, so one bad
/// length field can never make us allocate gigabytes. Kafka's default `message.max.bytes` is about
/// 1 MiB; 16 MiB leaves room for large compressed batches while keeping one in-flight append or
/// read buffer per partition cheap.
pub const BATCH_BYTES_MAX: usize = 16 << 20;

/// The only magic stored and served: RecordBatch v2.
pub const MAGIC_V2: i8 = 2;

/// `producerId`, `producerEpoch` and `baseSequence` of a batch whose producer is not idempotent.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;
pub const NO_SEQUENCE: i32 = -1;

/// `partitionLeaderEpoch` of a batch no leader has stamped (as clients send it).
pub const NO_PARTITION_LEADER_EPOCH: i32 = -1;

const _: () = assert!(BATCH_LENGTH_PREFIX_BYTES < BATCH_HEADER_BYTES);
const _: () = assert!(BATCH_HEADER_BYTES < BATCH_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX <= i32::MAX as usize);

const OFFSET_BASE_OFFSET: usize = 0;
const OFFSET_BATCH_LENGTH: usize = 8;
const OFFSET_PARTITION_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
/// Where the CRC-covered bytes begin.
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_PRODUCER_ID: usize = 43;
const OFFSET_PRODUCER_EPOCH: usize = 51;
const OFFSET_BASE_SEQUENCE: usize = 53;
const OFFSET_RECORD_COUNT: usize = 57;
const _: () = assert!(OFFSET_RECORD_COUNT + 4 == BATCH_HEADER_BYTES);

/// Attributes bits 0-2: the compression codec.
pub const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x7;
/// Attributes bit 3: timestamps are the broker's (LogAppendTime), not the producer's.
pub const ATTRIBUTE_LOG_APPEND_TIME: i16 = 0x8;
/// Attributes bit 4: the batch belongs to a transaction.
pub const ATTRIBUTE_TRANSACTIONAL: i16 = 0x10;
/// Attributes bit 5: a control batch (transaction markers).
pub const ATTRIBUTE_CONTROL: i16 = 0x20;

/// The fixed header of one RecordBatch v2, parsed and range-checked by [`BatchHeader::parse`].
/// A copy of the header's fields, so it outlives the bytes it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses and range-checks the fixed header at the start of `bytes` (which may hold more):
    /// a length that covers the header and is at most [`BATCH_BYTES_MAX`], magic 2, and
    /// non-negative `lastOffsetDelta` and `recordCount`. Does not check the CRC or that the
    /// whole batch is present.
    pub fn parse(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: bytes.len(),
            });
        }
        let batch_length = read_i32(bytes, OFFSET_BATCH_LENGTH);
        let min_length = (BATCH_HEADER_BYTES - BATCH_LENGTH_PREFIX_BYTES) as i32;
        if batch_length < min_length {
            return Err(BatchError::BadLength(batch_length));
        }
        let total_bytes = BATCH_LENGTH_PREFIX_BYTES + batch_length as usize;
        if total_bytes > BATCH_BYTES_MAX {
            return Err(BatchError::TooLarge {
                bytes: total_bytes,
                limit: BATCH_BYTES_MAX,
            });
        }
        let magic = bytes[OFFSET_MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(magic));
        }
        let header = BatchHeader {
            base_offset: read_i64(bytes, OFFSET_BASE_OFFSET),
            batch_length,
            partition_leader_epoch: read_i32(bytes, OFFSET_PARTITION_LEADER_EPOCH),
            crc: read_i32(bytes, OFFSET_CRC) as u32,
            attributes: read_i16(bytes, OFFSET_ATTRIBUTES),
            last_offset_delta: read_i32(bytes, OFFSET_LAST_OFFSET_DELTA),
            base_timestamp: read_i64(bytes, OFFSET_BASE_TIMESTAMP),
            max_timestamp: read_i64(bytes, OFFSET_MAX_TIMESTAMP),
            producer_id: read_i64(bytes, OFFSET_PRODUCER_ID),
            producer_epoch: read_i16(bytes, OFFSET_PRODUCER_EPOCH),
            base_sequence: read_i32(bytes, OFFSET_BASE_SEQUENCE),
            record_count: read_i32(bytes, OFFSET_RECORD_COUNT),
        };
        if header.last_offset_delta < 0 {
            return Err(BatchError::BadLastOffsetDelta(header.last_offset_delta));
        }
        if header.record_count < 0 {
            return Err(BatchError::BadRecordCount(header.record_count));
        }
        Ok(header)
    }

    /// Size of the whole batch in bytes, header included.
    pub fn total_bytes(&self) -> usize {
        BATCH_LENGTH_PREFIX_BYTES + self.batch_length as usize
    }

    /// Offsets this batch occupies: `lastOffsetDelta + 1`.
    pub fn offset_count(&self) -> i64 {
        i64::from(self.last_offset_delta) + 1
    }

    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    pub fn next_offset(&self) -> i64 {
        self.base_offset + self.offset_count()
    }

    /// The codec id, attributes bits 0-2 (0: uncompressed).
    pub fn compression_id(&self) -> i16 {
        self.attributes & ATTRIBUTE_COMPRESSION_MASK
    }

    pub fn is_compressed(&self) -> bool {
        self.compression_id() != 0
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTRIBUTE_LOG_APPEND_TIME != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTRIBUTE_TRANSACTIONAL != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & ATTRIBUTE_CONTROL != 0
    }
}

/// The records section of a whole batch whose header is `header` (compressed if its codec is).
pub fn records_of<'a>(batch: &'a [u8], header: &BatchHeader) -> &'a [u8] {
    &batch[BATCH_HEADER_BYTES..header.total_bytes()]
}

/// The whole length of the batch at the start of `bytes` from its `batchLength` field alone,
/// without any other check; `None` if the field is not all there or is negative. For callers
/// that only split a byte stream into batches (and check each with [`check_integrity`]).
pub fn total_bytes_from_length(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < BATCH_LENGTH_PREFIX_BYTES {
        return None;
    }
    let batch_length = read_i32(bytes, OFFSET_BATCH_LENGTH);
    usize::try_from(batch_length)
        .ok()
        .map(|length| BATCH_LENGTH_PREFIX_BYTES + length)
}

/// Checks that the batch at the start of `bytes` (which may hold further batches) is intact:
/// header ranges ([`BatchHeader::parse`]), presence of every byte, CRC-32C and
/// `recordCount = lastOffsetDelta + 1`. Does not look inside the records.
pub fn check_integrity(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    let total_bytes = header.total_bytes();
    if bytes.len() < total_bytes {
        return Err(BatchError::Truncated {
            needed: total_bytes,
            available: bytes.len(),
        });
    }
    let computed = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..total_bytes]);
    if header.crc != computed {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    if i64::from(header.record_count) != header.offset_count() {
        return Err(BatchError::RecordCountMismatch {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Sets `baseOffset` of a batch. Outside the CRC, so a valid batch stays valid.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    assert!(batch.len() >= BATCH_HEADER_BYTES);
    batch[OFFSET_BASE_OFFSET..OFFSET_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Sets `partitionLeaderEpoch` of a batch. Outside the CRC, so a valid batch stays valid.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    assert!(batch.len() >= BATCH_HEADER_BYTES);
    batch[OFFSET_PARTITION_LEADER_EPOCH..OFFSET_PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&epoch.to_be_bytes());
}

/// Sets the LogAppendTime bit and `maxTimestamp` of a whole batch and recomputes its CRC, as
/// Kafka does; the records stay as produced (clients read the batch's timestamp).
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    assert!(batch.len() >= BATCH_HEADER_BYTES);
    let attributes = read_i16(batch, OFFSET_ATTRIBUTES) | ATTRIBUTE_LOG_APPEND_TIME;
    batch[OFFSET_ATTRIBUTES..OFFSET_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[OFFSET_MAX_TIMESTAMP..OFFSET_MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    set_crc(batch);
}

/// A field of the batch header, named for code that must write a value [`encode_batch`] never
/// would: tests and tools that build malformed or damaged batches on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderField {
    BaseOffset,
    BatchLength,
    PartitionLeaderEpoch,
    Magic,
    Crc,
    Attributes,
    LastOffsetDelta,
    BaseTimestamp,
    MaxTimestamp,
    ProducerId,
    ProducerEpoch,
    BaseSequence,
    RecordCount,
}

impl HeaderField {
    /// The field's first byte and width in the header.
    pub fn range(self) -> std::ops::Range<usize> {
        let (at, width) = match self {
            HeaderField::BaseOffset => (OFFSET_BASE_OFFSET, 8),
            HeaderField::BatchLength => (OFFSET_BATCH_LENGTH, 4),
            HeaderField::PartitionLeaderEpoch => (OFFSET_PARTITION_LEADER_EPOCH, 4),
            HeaderField::Magic => (OFFSET_MAGIC, 1),
            HeaderField::Crc => (OFFSET_CRC, 4),
            HeaderField::Attributes => (OFFSET_ATTRIBUTES, 2),
            HeaderField::LastOffsetDelta => (OFFSET_LAST_OFFSET_DELTA, 4),
            HeaderField::BaseTimestamp => (OFFSET_BASE_TIMESTAMP, 8),
            HeaderField::MaxTimestamp => (OFFSET_MAX_TIMESTAMP, 8),
            HeaderField::ProducerId => (OFFSET_PRODUCER_ID, 8),
            HeaderField::ProducerEpoch => (OFFSET_PRODUCER_EPOCH, 2),
            HeaderField::BaseSequence => (OFFSET_BASE_SEQUENCE, 4),
            HeaderField::RecordCount => (OFFSET_RECORD_COUNT, 4),
        };
        at..at + width
    }
}

/// Overwrites one header field with `value`, big-endian in the field's width (the value must
/// fit it), and leaves the CRC as it was: call [`set_crc`] to make a changed covered field
/// pass the CRC check again.
pub fn overwrite_field(batch: &mut [u8], field: HeaderField, value: i64) {
    assert!(batch.len() >= BATCH_HEADER_BYTES);
    let range = field.range();
    let width = range.len();
    let fits = match width {
        1 => i8::try_from(value).is_ok() || u8::try_from(value).is_ok(),
        2 => i16::try_from(value).is_ok() || u16::try_from(value).is_ok(),
        4 => i32::try_from(value).is_ok() || u32::try_from(value).is_ok(),
        _ => true,
    };
    assert!(fits, "{value} does not fit {field:?}");
    batch[range].copy_from_slice(&value.to_be_bytes()[8 - width..]);
}

/// Recomputes the CRC of a whole batch after its covered bytes changed.
pub fn set_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[OFFSET_ATTRIBUTES..]);
    batch[OFFSET_CRC..OFFSET_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(bytes[at..at + 2].try_into().unwrap())
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().unwrap())
}

#[cfg(test)]
mod tests;
