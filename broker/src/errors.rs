//! The one place where internal errors become Kafka error codes.

use kafka_protocol::error::ResponseError;
use storage::{BatchError, StorageError};

/// The Kafka error a client sees for a storage failure. I/O errors (EIO, ENOSPC, a poisoned
/// sync) are KAFKA_STORAGE_ERROR; storage logs them once per run of failures, so they are not
/// logged here for every request.
pub fn storage_error(e: &StorageError) -> ResponseError {
    match e {
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::Io(_) => ResponseError::KafkaStorageError,
        // Storage fenced the range and logged it (rate-limited) when it found it.
        StorageError::CorruptRange { .. } => ResponseError::CorruptMessage,
        _ => {
            log::error!("storage error: {e}");
            ResponseError::KafkaStorageError
        }
    }
}

/// The Kafka error a producer sees for batches that fail validation, as Kafka answers them:
/// malformed bytes are CORRUPT_MESSAGE; well-formed batches that break a rule (Kafka's
/// `InvalidRecordException`) are INVALID_RECORD.
pub fn batch_error(e: &BatchError) -> ResponseError {
    match e {
        BatchError::BadMagic(_) => ResponseError::UnsupportedForMessageFormat,
        BatchError::TooLarge { .. } | BatchError::DecompressedTooLarge { .. } => {
            ResponseError::MessageTooLarge
        }
        BatchError::ZstdNeedsProduceV7 => ResponseError::UnsupportedCompressionType,
        BatchError::LogAppendTimeFromClient | BatchError::TimestampOutOfRange { .. } => {
            ResponseError::InvalidTimestamp
        }
        BatchError::ControlBatchFromClient
        | BatchError::RecordCountMismatch { .. }
        | BatchError::OffsetDeltaNotConsecutive { .. }
        | BatchError::KeylessRecordsInCompactedTopic(_) => ResponseError::InvalidRecord,
        BatchError::Empty
        | BatchError::Truncated { .. }
        | BatchError::BadLength(_)
        | BatchError::CrcMismatch { .. }
        | BatchError::BadLastOffsetDelta(_)
        | BatchError::BadRecordCount(_)
        | BatchError::BadRecords(_)
        | BatchError::UnknownCodec(_)
        | BatchError::BadCompressedData => ResponseError::CorruptMessage,
    }
}

/// The wire code for an optional error (`0` means success).
pub fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_errors_are_kafka_storage_errors() {
        for errno in [libc::EIO, libc::ENOSPC] {
            let error = StorageError::Io(std::io::Error::from_raw_os_error(errno));
            assert_eq!(storage_error(&error), ResponseError::KafkaStorageError);
            assert_eq!(code(Some(storage_error(&error))), 56);
        }
        let out_of_range = StorageError::OffsetOutOfRange {
            offset: 5,
            log_start_offset: 0,
            log_end_offset: 3,
        };
        assert_eq!(
            storage_error(&out_of_range),
            ResponseError::OffsetOutOfRange
        );
    }
}
