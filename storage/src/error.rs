//! Typed errors returned by the storage layer.

use crate::batch::BatchError;

/// Operating errors of a partition log. Programmer errors (broken invariants) are asserts, not
/// variants of this type.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The operating system reported an I/O error (EIO, ENOSPC, EMFILE, ...).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The requested offset is outside `[log_start_offset, log_end_offset]`.
    #[error("offset {offset} is out of range [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// Bytes on disk that were valid when written no longer are (bit rot, a foreign writer), or the
    /// set of segment files is inconsistent in a way recovery must not paper over.
    #[error("corrupt log: {0}")]
    Corrupt(String),
    /// The offsets `[first_offset, next_offset)` lie in a damaged range of a segment (a batch
    /// that fails its checks, with valid batches after it): they cannot be read, while offsets
    /// before and from `next_offset` on can.
    #[error("offsets [{first_offset}, {next_offset}) are in a corrupt range of the log")]
    CorruptRange { first_offset: i64, next_offset: i64 },
    /// Stored bytes failed batch validation when read back.
    #[error("corrupt batch on disk: {0}")]
    CorruptBatch(#[from] BatchError),
    /// Assigning offsets to an append would overflow i64.
    #[error("offset space exhausted")]
    OffsetOverflow,
    /// A truncation offset inside a batch: a log is cut only between batches.
    #[error("offset {offset} is inside the batch [{batch_base_offset}, {batch_next_offset})")]
    NotBatchBoundary {
        offset: i64,
        batch_base_offset: i64,
        batch_next_offset: i64,
    },
    /// Replicated batches that do not continue the log: the first does not start at the log end,
    /// or a later one does not start where the one before it ended.
    #[error("replicated batches start at offset {found}, the log expects {expected}")]
    NotContiguous { expected: i64, found: i64 },
    /// The log is being closed; no new operations are accepted.
    #[error("log is closed")]
    Closed,
}

impl<T> From<glommio::GlommioError<T>> for StorageError {
    fn from(error: glommio::GlommioError<T>) -> Self {
        StorageError::Io(error.into())
    }
}
