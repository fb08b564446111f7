//! The one place where internal errors become Kafka error codes.

use kafka_protocol::error::ResponseError;
use storage::{BatchError, StorageError};

/// The Kafka error a client sees for a storage failure.
pub fn storage_error(e: &StorageError) -> ResponseError {
    match e {
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        _ => {
            log::error!("storage error: {e}");
            ResponseError::KafkaStorageError
        }
    }
}

/// The Kafka error a producer sees for batches that fail validation.
pub fn batch_error(e: &BatchError) -> ResponseError {
    match e {
        BatchError::BadMagic(_) => ResponseError::UnsupportedForMessageFormat,
        BatchError::TooLarge { .. } => ResponseError::MessageTooLarge,
        _ => ResponseError::CorruptMessage,
    }
}

/// The wire code for an optional error (`0` means success).
pub fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}
