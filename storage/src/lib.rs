//! Per-partition append-only logs of Kafka RecordBatch v2 bytes, written with direct I/O on a
//! glommio executor.
//!
//! `storage` knows the RecordBatch byte format, because it is the on-disk format, and nothing of
//! Kafka requests, responses or sockets.
//!
//! # On-disk format
//!
//! A partition is a directory of segment files named `<base_offset:020>.log`, e.g.
//! `00000000000000001000.log` holds the batches starting at offset 1000. A segment file is a plain
//! concatenation of RecordBatch v2 batches, exactly as produced except for two fields storage
//! owns: `baseOffset` (assigned on append) and `partitionLeaderEpoch` (set to 0). Neither is
//! covered by the CRC, so the producer's CRC stays valid on disk. There are no other files: the
//! segment files are the ground truth, and the indexes are derived from them in memory.
//!
//! | offset | field                | type | notes                                        |
//! |-------:|----------------------|------|----------------------------------------------|
//! |      0 | baseOffset           | i64  | assigned by storage                          |
//! |      8 | batchLength          | i32  | bytes after this field; total = 12 + this    |
//! |     12 | partitionLeaderEpoch | i32  | set to 0 by storage                          |
//! |     16 | magic                | i8   | always 2                                     |
//! |     17 | crc                  | u32  | CRC-32C of bytes 21..end                     |
//! |     21 | attributes           | i16  | bits 0-2 compression, bit 3 LogAppendTime    |
//! |     23 | lastOffsetDelta      | i32  | the batch occupies lastOffsetDelta+1 offsets |
//! |     27 | baseTimestamp        | i64  |                                              |
//! |     35 | maxTimestamp         | i64  |                                              |
//! |     43 | producerId           | i64  |                                              |
//! |     51 | producerEpoch        | i16  |                                              |
//! |     53 | baseSequence         | i32  |                                              |
//! |     57 | recordCount          | i32  |                                              |
//! |     61 | records              |      |                                              |
//!
//! # Invariants
//!
//! - **Dense offsets.** Within and across segments, each batch's baseOffset is the previous
//!   batch's baseOffset + lastOffsetDelta + 1, and each segment starts at the offset where the
//!   previous one ends. `log_start_offset` is the first segment's base offset.
//! - **Nothing past the last valid batch is served.** Only bytes below a segment's in-memory
//!   logical end are ever read; that end moves only after the write that put the bytes on disk
//!   completed. Every batch is CRC-checked before it is written (in [`ValidatedBatches::validate`])
//!   and after it is read (on fetch and at recovery).
//! - **Direct I/O with an aligned tail.** Appends write one aligned buffer at the aligned-down
//!   logical end: `[partial tail block][new batches][zero padding]`. The active segment's file is
//!   therefore a whole number of blocks, grown ahead of the writes by `fallocate` in steps of
//!   `segment_preallocate_bytes` (so appends rarely change the file size), and the logical end
//!   lives in memory. The tail block's
//!   bytes below the logical end are identical in every rewrite, so a concurrent read of that
//!   block, or a crash during its rewrite, sees the same prefix either way (assuming the device
//!   does not tear a single block it has already acknowledged: sector-atomic writes).
//! - **Recovery.** On open, every batch of every segment is verified (length, magic, CRC, record
//!   framing, dense offsets); the first invalid byte of a segment (torn write, garbage, or the
//!   zero padding, whose batchLength of 0 is invalid) ends it and the file is truncated there.
//!   Sealed segments are trimmed to their last batch and fdatasync'd when the log rolls, so
//!   recovery only has to make the last segment durable; the active one is trimmed on close.
//!   If a segment was cut and the next one no longer starts where it now ends, the later
//!   segments are deleted (no offset gap is ever served); a gap between uncut segments fails
//!   `open` with `Corrupt` instead.
//! - **Retention cuts a prefix.** [`PartitionLog::apply_retention`] deletes whole sealed
//!   segments from the oldest, never the active one. The log start offset moves before any file
//!   is unlinked, and files are unlinked oldest first, so the files on disk always chain densely
//!   and recovery starts the log at the first remaining segment's base offset.
//! - **Durability is explicit.** `append` returns after the write completed; `sync_to` returns
//!   after fdatasync. Concurrent `sync_to` callers share fdatasyncs (group commit). For each
//!   segment `synced_position <= end_position`.
//! - **Bounded memory.** Lengths read from disk or wire are checked against
//!   [`BATCH_BYTES_MAX`] before allocation; one append is at most [`APPEND_BYTES_MAX`] and one
//!   read at most [`READ_BYTES_MAX`].
//!
//! # Concurrency
//!
//! A [`PartitionLog`] is `!Send` and belongs to one glommio executor (shard). Several tasks on
//! that executor may use it at once through `&self` methods; appends are serialised internally.

mod batch;
mod error;
pub mod fault;
mod fifo_lock;
mod index;
pub mod io;
mod iopoll_probe;
mod log;
mod notify;
mod recovery;
mod segment;

pub use batch::{
    BatchError, ValidatedBatches, APPEND_BYTES_MAX, BATCH_BYTES_MAX, BATCH_HEADER_BYTES,
};
pub use error::StorageError;
pub use log::PartitionLog;
pub use segment::READ_BYTES_MAX;

/// Default preallocation step of the active segment file: one `fallocate` per 16 MiB appended,
/// small next to the default 1 GiB segment and large enough that its cost is amortised.
pub const SEGMENT_PREALLOCATE_BYTES: u64 = 16 << 20;

/// Tuning of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A new segment is started when an append would make the active segment larger than this.
    pub segment_bytes: u64,
    /// One sparse index entry per this many bytes of batches.
    pub index_interval_bytes: u64,
    /// The active segment file grows in steps of this many bytes (`fallocate`), bounded by
    /// `segment_bytes`, so that most appends do not change the file size. 0 disables it.
    pub segment_preallocate_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            index_interval_bytes: 4096,
            segment_preallocate_bytes: SEGMENT_PREALLOCATE_BYTES,
        }
    }
}

/// What [`PartitionLog::apply_retention`] may delete. Only whole sealed segments are deleted,
/// oldest first; the active segment always stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// A sealed segment whose largest batch maxTimestamp is older than `now_ms - retention_ms`
    /// is deleted. -1 (any negative value): no time limit (Kafka's `retention.ms`).
    pub retention_ms: i64,
    /// The oldest sealed segment is deleted while the log without it still holds at least this
    /// many bytes. -1 (any negative value): no size limit (Kafka's `retention.bytes`).
    pub retention_bytes: i64,
    /// Wall-clock time the time limit is measured from, in milliseconds since the Unix epoch.
    pub now_ms: i64,
}

/// What one [`PartitionLog::apply_retention`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    /// The log start offset after retention.
    pub log_start_offset: i64,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record of the first batch.
    pub base_offset: i64,
    /// Offset of the last record of the last batch.
    pub last_offset: i64,
    /// Wall-clock time of the append in milliseconds since the Unix epoch. The broker reports it
    /// only for topics with `message.timestamp.type=LogAppendTime` (Kafka sends -1 otherwise).
    pub log_append_time_ms: i64,
}
