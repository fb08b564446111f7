//! Why bytes are not an acceptable RecordBatch v2: framing and integrity errors found here,
//! and the record-level and policy errors storage's produce validation reports.

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
