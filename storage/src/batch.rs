//! RecordBatch v2: the on-disk format. Header parsing, validation and the record-level decoding
//! needed for timestamp lookups.

use bytes::Bytes;

use crate::records;

/// Bytes of the fixed RecordBatch v2 header, up to the first record.
pub const BATCH_HEADER_BYTES: usize = 61;

/// Largest single batch accepted from a producer or read back from disk. Every length read from
/// the wire or from a segment is checked against this before anything is allocated, so one bad
/// length field can never make us allocate gigabytes. Kafka's default `message.max.bytes` is about
/// 1 MiB; 16 MiB leaves room for large compressed batches while keeping one in-flight append or
/// read buffer per partition cheap.
pub const BATCH_BYTES_MAX: usize = 16 << 20;

/// Largest `ValidatedBatches` (all batches of one append together). An append is written as one
/// DMA buffer, so this bounds that buffer (plus at most one alignment block of tail bytes).
pub const APPEND_BYTES_MAX: usize = BATCH_BYTES_MAX;

const _: () = assert!(BATCH_HEADER_BYTES < BATCH_BYTES_MAX);
const _: () = assert!(BATCH_BYTES_MAX <= APPEND_BYTES_MAX);
const _: () = assert!(APPEND_BYTES_MAX <= i32::MAX as usize);

/// Bytes before and including the `batchLength` field; `batchLength` counts the bytes after it.
pub(crate) const BATCH_LENGTH_PREFIX_BYTES: usize = 12;

const OFFSET_BASE_OFFSET: usize = 0;
const OFFSET_BATCH_LENGTH: usize = 8;
const OFFSET_PARTITION_LEADER_EPOCH: usize = 12;
const OFFSET_MAGIC: usize = 16;
const OFFSET_CRC: usize = 17;
const OFFSET_ATTRIBUTES: usize = 21;
const OFFSET_LAST_OFFSET_DELTA: usize = 23;
const OFFSET_BASE_TIMESTAMP: usize = 27;
const OFFSET_MAX_TIMESTAMP: usize = 35;
const OFFSET_RECORD_COUNT: usize = 57;

const ATTRIBUTE_COMPRESSION_MASK: i16 = 0x7;
const ATTRIBUTE_LOG_APPEND_TIME: i16 = 0x8;

/// Why a byte sequence is not a valid sequence of RecordBatch v2 batches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("no batches")]
    Empty,
    #[error("truncated batch: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("invalid batch length {0}")]
    BadLength(i32),
    #[error("batch of {bytes} bytes exceeds the limit of {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },
    #[error("unsupported magic {0} (only RecordBatch v2 is stored)")]
    BadMagic(i8),
    #[error("CRC-32C mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("negative lastOffsetDelta {0}")]
    BadLastOffsetDelta(i32),
    #[error("negative recordCount {0}")]
    BadRecordCount(i32),
    #[error("malformed records: {0}")]
    BadRecords(&'static str),
    #[error("unknown compression codec {0}")]
    UnknownCodec(i16),
    #[error("zstd batches need Produce v7 or later")]
    ZstdNeedsProduceV7,
    #[error("clients may not write control batches")]
    ControlBatchFromClient,
    #[error("producers may not set the LogAppendTime timestamp type")]
    LogAppendTimeFromClient,
    #[error("recordCount {record_count} is not lastOffsetDelta {last_offset_delta} + 1")]
    RecordCountMismatch {
        record_count: i32,
        last_offset_delta: i32,
    },
    #[error("record {index} does not have offsetDelta {index}")]
    OffsetDeltaNotConsecutive { index: i32 },
    #[error("records without a key in a compacted topic: {0:?}")]
    KeylessRecordsInCompactedTopic(Vec<i32>),
    #[error("record timestamps outside [{low_ms}, {high_ms}]: {records:?}")]
    TimestampOutOfRange {
        /// (index in the batch, timestamp) of each record outside the window.
        records: Vec<(i32, i64)>,
        low_ms: i64,
        high_ms: i64,
    },
    #[error("records decompress to more than {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("compressed records cannot be decoded")]
    BadCompressedData,
}

/// The fields of a RecordBatch v2 header that storage uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses and range-checks the fixed header at the start of `bytes` (which may hold more).
    /// Does not check the CRC or that the whole batch is present.
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
        if magic != 2 {
            return Err(BatchError::BadMagic(magic));
        }
        let header = BatchHeader {
            base_offset: read_i64(bytes, OFFSET_BASE_OFFSET),
            batch_length,
            attributes: read_i16(bytes, OFFSET_ATTRIBUTES),
            last_offset_delta: read_i32(bytes, OFFSET_LAST_OFFSET_DELTA),
            base_timestamp: read_i64(bytes, OFFSET_BASE_TIMESTAMP),
            max_timestamp: read_i64(bytes, OFFSET_MAX_TIMESTAMP),
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

    pub fn is_compressed(&self) -> bool {
        self.attributes & ATTRIBUTE_COMPRESSION_MASK != 0
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTRIBUTE_LOG_APPEND_TIME != 0
    }
}

/// Fully checks the batch at the start of `bytes` (which may hold further batches): everything
/// [`check_batch_integrity`] checks, and for uncompressed batches every record by `records.rs`'s
/// rules. Produce, fence searches and recovery check batches here, so a batch produce would refuse
/// for its framing is never recovered.
pub(crate) fn check_batch(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = check_batch_integrity(bytes)?;
    if !header.is_compressed() {
        records::check_uncompressed_records(&bytes[..header.total_bytes()], &header)?;
    }
    Ok(header)
}

/// Checks that the batch at the start of `bytes` is stored intact: header ranges, presence of
/// every byte, CRC-32C and `recordCount = lastOffsetDelta + 1`. Reads check what they serve
/// here: every stored batch passed [`check_batch`] when it was produced or recovered, so a read
/// only has to find damage done since, which the CRC covers; walking the records again would
/// double the CPU a fetch spends per byte.
pub(crate) fn check_batch_integrity(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    let total_bytes = header.total_bytes();
    if bytes.len() < total_bytes {
        return Err(BatchError::Truncated {
            needed: total_bytes,
            available: bytes.len(),
        });
    }
    let stored = read_u32(bytes, OFFSET_CRC);
    let computed = crc32c::crc32c(&bytes[OFFSET_ATTRIBUTES..total_bytes]);
    if stored != computed {
        return Err(BatchError::CrcMismatch { stored, computed });
    }
    if i64::from(header.record_count) != header.offset_count() {
        return Err(BatchError::RecordCountMismatch {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// The first record of `batch` (a checked, whole batch) whose timestamp is at least
/// `timestamp_ms`, as `(offset, timestamp)`. LogAppendTime batches are answered from the header:
/// their `(baseOffset, maxTimestamp)`, since every record has the batch's timestamp. Compressed
/// batches are decompressed (bounded, streamed); one whose records cannot be decoded (stored
/// before produce checked records) is answered from its header too.
pub(crate) fn first_record_at_or_after(
    batch: &[u8],
    header: &BatchHeader,
    timestamp_ms: i64,
) -> Result<Option<(i64, i64)>, BatchError> {
    let from_header = || {
        let found = header.max_timestamp >= timestamp_ms;
        found.then_some((header.base_offset, header.max_timestamp))
    };
    if header.is_log_append_time() {
        return Ok(from_header());
    }
    match records::first_record_at_or_after(batch, header, timestamp_ms) {
        Ok(found) => Ok(found),
        Err(e) if header.is_compressed() => {
            log::warn!(
                "timestamp lookup: batch at offset {} not decodable ({e}); using its header",
                header.base_offset
            );
            Ok(from_header())
        }
        Err(e) => Err(e),
    }
}

/// Rewrites the fields storage owns in a batch copy headed for disk. Neither field is covered by
/// the CRC, so the stored CRC stays valid.
pub(crate) fn set_base_offset_and_epoch(batch: &mut [u8], base_offset: i64) {
    assert!(batch.len() >= BATCH_HEADER_BYTES);
    batch[OFFSET_BASE_OFFSET..OFFSET_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[OFFSET_PARTITION_LEADER_EPOCH..OFFSET_PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&0i32.to_be_bytes());
}

/// Per-batch facts gathered during validation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchSummary {
    /// Position of the batch inside the `ValidatedBatches` bytes.
    pub position: usize,
    pub total_bytes: usize,
    pub offset_count: i64,
    pub max_timestamp: i64,
}

/// One or more RecordBatch v2 batches that passed validation: lengths consistent, magic 2,
/// CRC-32C correct, `recordCount = lastOffsetDelta + 1`, uncompressed records well framed,
/// each batch at most [`BATCH_BYTES_MAX`] and all together at most [`APPEND_BYTES_MAX`].
/// Constructed only by [`ValidatedBatches::validate`], so `PartitionLog::append` cannot be handed
/// unchecked bytes.
#[derive(Debug, Clone)]
pub struct ValidatedBatches {
    bytes: Bytes,
    batches: Vec<BatchSummary>,
    record_count: i64,
}

impl ValidatedBatches {
    pub fn validate(bytes: Bytes) -> Result<ValidatedBatches, BatchError> {
        if bytes.is_empty() {
            return Err(BatchError::Empty);
        }
        if bytes.len() > APPEND_BYTES_MAX {
            return Err(BatchError::TooLarge {
                bytes: bytes.len(),
                limit: APPEND_BYTES_MAX,
            });
        }
        let mut batches = Vec::new();
        let mut record_count = 0i64;
        let mut position = 0usize;
        while position < bytes.len() {
            let header = check_batch(&bytes[position..])?;
            batches.push(BatchSummary {
                position,
                total_bytes: header.total_bytes(),
                offset_count: header.offset_count(),
                max_timestamp: header.max_timestamp,
            });
            record_count += header.offset_count();
            position += header.total_bytes();
        }
        assert_eq!(position, bytes.len());
        Ok(ValidatedBatches {
            bytes,
            batches,
            record_count,
        })
    }

    /// Offsets this append consumes: the sum of `lastOffsetDelta + 1` over its batches.
    pub fn record_count(&self) -> i64 {
        self.record_count
    }

    pub fn len_bytes(&self) -> usize {
        self.bytes.len()
    }

    pub fn batch_count(&self) -> usize {
        self.batches.len()
    }

    /// The validated bytes, exactly as given to `validate`.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub(crate) fn summaries(&self) -> &[BatchSummary] {
        &self.batches
    }
}

fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(bytes[at..at + 2].try_into().unwrap())
}

fn read_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn read_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_rejects_short_length_and_bad_magic() {
        let mut bytes = vec![0u8; BATCH_HEADER_BYTES];
        bytes[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&bytes), Err(BatchError::BadLength(10)));
        bytes[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4].copy_from_slice(&49i32.to_be_bytes());
        assert_eq!(BatchHeader::parse(&bytes), Err(BatchError::BadMagic(0)));
        bytes[OFFSET_MAGIC] = 2;
        assert!(BatchHeader::parse(&bytes).is_ok());
        bytes[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4]
            .copy_from_slice(&(BATCH_BYTES_MAX as i32).to_be_bytes());
        assert!(matches!(
            BatchHeader::parse(&bytes),
            Err(BatchError::TooLarge { .. })
        ));
    }
}
