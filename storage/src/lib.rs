//! Per-partition append-only logs of Kafka RecordBatch v2 bytes, written with direct I/O on a
//! glommio executor.
//!
//! `storage` knows the RecordBatch format (through the `record_batch` crate), because it is the
//! on-disk format, and nothing of Kafka requests, responses or sockets.
//!
//! # On-disk format
//!
//! A partition is a directory of segment files named `<base_offset:020>.log`, e.g.
//! `00000000000000001000.log` holds the batches starting at offset 1000. A segment file is a plain
//! concatenation of RecordBatch v2 batches, exactly as produced except for two fields storage
//! owns: `baseOffset` (assigned on append) and `partitionLeaderEpoch` (the epoch the appender
//! gave). Neither is covered by the CRC, so the producer's CRC stays valid on disk. The segment
//! files are the ground truth; next to them are derived files that only shorten `open`: one
//! index file per segment and the clean-shutdown marker (both below). The log start checkpoint
//! (below) is ground truth too, once DeleteRecords wrote it. Files named `*.tmp` are interrupted
//! writes of those and are removed at open. The batch header's byte table is in `record_batch`.
//!
//! ## Marker files
//!
//! The log start checkpoint, the clean-shutdown marker, the truncation marker and the
//! leader-epoch checkpoint share one codec (`marker_file.rs`), tabled for each below: 8 magic
//! bytes, a u32 version, a u32 header word, the payload from byte 16 and the CRC-32C of every
//! byte before it. The three markers are fixed-size: the header word is reserved (0) and zeros
//! pad the file after the CRC. The leader-epoch checkpoint is a list: the header word counts
//! its entries and the CRC ends the file. Each is written to `<name>.tmp`, fdatasync'd,
//! renamed, and the directory fsync'd. A file of the wrong size, magic, version, count or CRC,
//! or with an impossible payload, is refused with the reason (`Corrupt` for the log start
//! checkpoint and the truncation marker; a refused clean-shutdown marker only costs a scan of
//! the last segment, a refused leader-epoch checkpoint a rebuild from the batch headers).
//! Every test of these files decodes a hex fixture of their first version.
//!
//! ## Index files
//!
//! `<base_offset:020>.index` is the sparse index of the segment `<base_offset:020>.log`: an entry
//! for the first batch and then for the first batch after every `index_interval_bytes` of
//! batches, each with the largest `maxTimestamp` of the batches up to the next entry. It is
//! written (to `<name>.tmp`, fdatasync'd, renamed) when the segment is sealed at a roll, after
//! the segment itself was trimmed and fdatasync'd, and for the active segment by a clean close.
//! A 64-byte header, little-endian, is followed by the body:
//!
//! | offset | field          | type    | notes                                              |
//! |-------:|----------------|---------|----------------------------------------------------|
//! |      0 | magic          | [u8; 8] | `SLCINDEX`                                         |
//! |      8 | version        | u32     | 1                                                  |
//! |     12 | reserved       | u32     | 0                                                  |
//! |     16 | baseOffset     | i64     | must match the file name                           |
//! |     24 | segmentBytes   | u64     | length of the segment the index describes          |
//! |     32 | nextOffset     | i64     | offset after the segment's last batch              |
//! |     40 | maxTimestamp   | i64     | largest batch maxTimestamp; i64::MIN if no entries |
//! |     48 | entryCount     | u32     | at most 2^24                                       |
//! |     52 | bodyBytes      | u32     | 24 * entryCount + 8                                |
//! |     56 | bodyCrc        | u32     | CRC-32C of the body                                |
//! |     60 | headerCrc      | u32     | CRC-32C of bytes 0..60                             |
//! |     64 | body           |         | rkyv 0.8 archive of the entries, read in place     |
//!
//! The body is rkyv's archived `Vec` of entries (little-endian, 32-bit relative pointers): the
//! entries, then the 8-byte root. It starts at byte 64, a multiple of the archive's alignment.
//!
//! | body offset    | field        | type | notes                                           |
//! |---------------:|--------------|------|-------------------------------------------------|
//! |         24 * i | offset       | i64  | base offset of the batch entry i points at      |
//! |     24 * i + 8 | position     | u64  | its byte position in the segment                |
//! |    24 * i + 16 | maxTimestamp | i64  | largest maxTimestamp up to entry i + 1          |
//! |      24 * n    | root pointer | i32  | relative position of the entries (-24 * n)      |
//! |  24 * n + 4    | root length  | u32  | n = entryCount                                  |
//!
//! ## Log start checkpoint
//!
//! `log-start-offset` in the partition directory holds the log start offset that
//! [`PartitionLog::delete_records`] moved inside or past the first segment. It is written to
//! `log-start-offset.tmp`, fdatasync'd, renamed, and the directory fsync'd before the new start
//! is published. At open the start is this value clamped to `[first segment base, log end]`
//! (retention may since have deleted past it; a crash may have lost unsynced records below it);
//! without the file it is the first segment's base offset; a damaged file fails `open` with
//! `Corrupt`. 32 bytes, little-endian:
//!
//! | offset | field          | type    | notes                     |
//! |-------:|----------------|---------|---------------------------|
//! |      0 | magic          | [u8; 8] | `SLCSTART`                |
//! |      8 | version        | u32     | 1                         |
//! |     12 | reserved       | u32     | 0                         |
//! |     16 | logStartOffset | i64     | at least 0                |
//! |     24 | crc            | u32     | CRC-32C of bytes 0..24    |
//! |     28 | reserved       | u32     | 0                         |
//!
//! ## Clean-shutdown marker
//!
//! `clean-shutdown` in the partition directory is written by [`PartitionLog::close`] after the
//! final sync, the trim of the active segment, its fdatasync, and its index file; then the
//! directory is fsync'd. `open` reads and removes it before the log can change (the removal
//! reaches the disk with the directory sync of the first `sync_to`). 48 bytes, little-endian:
//!
//! | offset | field              | type    | notes                               |
//! |-------:|--------------------|---------|-------------------------------------|
//! |      0 | magic              | [u8; 8] | `SLCCLEAN`                          |
//! |      8 | version            | u32     | 1                                   |
//! |     12 | reserved           | u32     | 0                                   |
//! |     16 | activeBaseOffset   | i64     | base offset of the last segment     |
//! |     24 | activeSegmentBytes | u64     | its length after the trim           |
//! |     32 | logEndOffset       | i64     | offset after its last batch         |
//! |     40 | crc                | u32     | CRC-32C of bytes 0..40              |
//! |     44 | reserved           | u32     | 0                                   |
//!
//! ## Truncation marker
//!
//! `truncate-to` in the partition directory names a cut [`PartitionLog::truncate_to`] has
//! committed to (written like the checkpoint above, after the batches it keeps were
//! fdatasync'd) and is removed once the cut is durable; `open` finds it only after a crash
//! inside the truncation, and finishes the cut first. A damaged one fails `open` with
//! `Corrupt`. 48 bytes, little-endian:
//!
//! | offset | field             | type    | notes                                      |
//! |-------:|-------------------|---------|--------------------------------------------|
//! |      0 | magic             | [u8; 8] | `SLCTRUNC`                                 |
//! |      8 | version           | u32     | 1                                          |
//! |     12 | reserved          | u32     | 0                                          |
//! |     16 | truncateOffset    | i64     | the new log end                            |
//! |     24 | segmentBaseOffset | i64     | the segment holding it; later ones go      |
//! |     32 | segmentBytes      | u64     | that segment's length after the cut        |
//! |     40 | crc               | u32     | CRC-32C of bytes 0..40                     |
//! |     44 | reserved          | u32     | 0                                          |
//!
//! ## Reset marker
//!
//! `reset-to` in the partition directory names the offset a [`PartitionLog::reset_to`] has
//! committed to (written like the checkpoint above, before any file changes) and is removed
//! once the directory holds only the empty segment starting there, durably; `open` finds it
//! only after a crash inside the reset, and finishes the reset first. A damaged one fails
//! `open` with `Corrupt`. 32 bytes, little-endian:
//!
//! | offset | field       | type    | notes                                   |
//! |-------:|-------------|---------|-----------------------------------------|
//! |      0 | magic       | [u8; 8] | `SLCRESET`                              |
//! |      8 | version     | u32     | 1                                       |
//! |     12 | reserved    | u32     | 0                                       |
//! |     16 | resetOffset | i64     | the new log start and end, at least 0   |
//! |     24 | crc         | u32     | CRC-32C of bytes 0..24                  |
//! |     28 | reserved    | u32     | 0                                       |
//!
//! ## Leader-epoch checkpoint
//!
//! `leader-epoch-checkpoint` in the partition directory holds the leader-epoch cache (see
//! `leader_epochs.rs`): for each leader epoch, the offset of its first batch. Rewritten (to
//! `leader-epoch-checkpoint.tmp`, fdatasync'd, renamed, directory fsync'd) before the write of
//! the first batch it does not cover (the first of a new epoch, or the first after a truncation
//! or a failed write changed the cache), never otherwise. `open` drops its entries at or past
//! the log end; a missing one (with batches in the log) or a damaged one is rebuilt from the
//! batch headers and written back. Variable length, little-endian:
//!
//! | offset     | field       | type    | notes                                          |
//! |-----------:|-------------|---------|------------------------------------------------|
//! |          0 | magic       | [u8; 8] | `SLCEPOCH`                                     |
//! |          8 | version     | u32     | 1                                              |
//! |         12 | entryCount  | u32     | n, at most `LEADER_EPOCH_ENTRIES_MAX` (1,024)  |
//! |   16 + 12i | epoch       | i32     | entry i; strictly increasing, >= 0             |
//! |   20 + 12i | startOffset | i64     | entry i; strictly increasing, >= 0             |
//! |   16 + 12n | crc         | u32     | CRC-32C of every byte before it                |
//!
//! # Invariants
//!
//! - **Dense offsets.** Within and across segments, each batch's baseOffset is the previous
//!   batch's baseOffset + lastOffsetDelta + 1, and each segment starts at the offset where the
//!   previous one ends. `log_start_offset` is at least the first segment's base offset (more
//!   after DeleteRecords) and never moves back.
//! - **Nothing past the last valid batch is served.** Only bytes below a segment's in-memory
//!   logical end are ever read; that end moves only after the write that put the bytes on disk
//!   completed. Every batch is CRC-checked before it is written (in [`ValidatedBatches::validate`])
//!   and after it is read (on fetch and at recovery).
//! - **Direct I/O with an aligned tail.** Appends write one aligned buffer at the aligned-down
//!   logical end: `[partial tail block][new batches][zero padding]`. The active segment's file is
//!   therefore a whole number of blocks, grown ahead of the writes by `fallocate` in steps
//!   that double from `SEGMENT_PREALLOCATE_MIN_BYTES` up to `segment_preallocate_bytes` (so
//!   appends rarely change the file size, and an idle partition takes kilobytes of disk), and
//!   the logical end lives in memory. The tail block's
//!   bytes below the logical end are identical in every rewrite, so a concurrent read of that
//!   block, or a crash during its rewrite, sees the same prefix either way (assuming the device
//!   does not tear a single block it has already acknowledged: sector-atomic writes).
//! - **Recovery.** The bytes `[0, L)` of a segment never change once written (appends rewrite
//!   the tail block with the same prefix), so an index file written after the segment was
//!   fdatasync'd at length L vouches for the segment as long as the file is still L bytes long.
//!   On open:
//!   1. A sealed segment (not the last) whose index header is valid (magic, version, header CRC,
//!      base offset, consistent fields, file length) and whose `segmentBytes` equals the
//!      segment's length is trusted: only the 64-byte header is read. Its body (and body CRC)
//!      is checked when first loaded; a body that fails then is rebuilt from the segment.
//!   2. Any other segment is scanned: every batch verified (length, magic, CRC, record framing,
//!      dense offsets); the first invalid byte (torn write, garbage, or the zero padding, whose
//!      batchLength of 0 is invalid) ends it and the file is truncated there. A scanned sealed
//!      segment gets its index file rewritten.
//!   3. The last segment is scanned too, unless a valid clean-shutdown marker names its base
//!      offset and length and its index file is wholly valid with the same length and next
//!      offset: then its index is loaded and nothing is read or synced. After a crash exactly
//!      one segment per partition is scanned.
//!   4. Sealed segments are trimmed to their last batch and fdatasync'd when the log rolls, so
//!      recovery only has to make a scanned last segment durable; the active one is trimmed on
//!      close. If a segment was cut and the next one no longer starts where it now ends, the
//!      later segments (and their indexes) are deleted (no offset gap is ever served); a gap
//!      between uncut segments fails `open` with `Corrupt` instead. Index files without a
//!      segment, and the last segment's index after a scan, are removed.
//!
//!   A trusted sealed segment is not re-verified at open: bit rot in it is found by the CRC
//!   check of the read that reaches it, not by recovery.
//! - **Bounded index memory.** The active segment's entries are in memory (at most
//!   `segment_bytes / index_interval_bytes + 1`, 24 bytes each: 6 MiB at the defaults). A sealed
//!   segment keeps only its header; its entries are loaded on first use into its
//!   [`StorageContext`]'s cache of at most [`SEALED_INDEX_CACHE_BYTES_MAX`] bytes, least recently used first out.
//! - **Tail cache.** Each [`StorageContext`] (one per shard) keeps the batches of its logs' most
//!   recent appends in memory, exactly as stored, within one budget
//!   ([`StorageContext::set_tail_cache_bytes_max`], default
//!   [`TAIL_CACHE_BYTES_DEFAULT`]), oldest evicted first. A chunk is inserted only after its append
//!   published the new log end, a log's chunks are contiguous up to its log end, and a read whose
//!   offset they hold is answered from them with the batches a disk read would return. Retention,
//!   close, delete and drop remove what is no longer valid.
//! - **Readahead.** A fetch below the tail cache reads at least [`READ_AHEAD_BYTES`] from disk
//!   and keeps the chunk per segment in the context's cache of at most
//!   [`READ_AHEAD_CACHE_BYTES_MAX`]; later fetches inside it need no disk read. A chunk holds
//!   only bytes below the segment's logical end, which never change.
//! - **Truncation cuts a suffix, all or nothing.** [`PartitionLog::truncate_to`] (under the
//!   append lock, nothing in flight) fdatasyncs the batches below the offset, writes the
//!   truncation marker durably, publishes the shorter log (the cut segment becomes the active
//!   one, the tail cache of the log is dropped), unlinks the later segments newest first, cuts
//!   the holding segment and fdatasyncs it, syncs the directory and removes the marker. A crash
//!   before the marker is durable leaves the old log; after it, `open` finishes the same cut
//!   (each step is idempotent), so a reopen never sees a mix and never misses a batch below the
//!   offset. A failure after the marker poisons syncs until the log is reopened.
//! - **Retention cuts a prefix.** [`PartitionLog::apply_retention`] and
//!   [`PartitionLog::delete_records`] delete whole sealed segments from the oldest, never the
//!   active one. The log start offset moves before any file is unlinked; the unlinks run after
//!   the append lock is released, in ticket order under a second lock, oldest first (each
//!   segment, then its index), so the files on disk always chain densely and recovery starts
//!   the log at the first remaining segment's base offset (or the checkpoint above it). The
//!   directory is synced before the first unlink if a roll's new segment is not yet durable in
//!   it, and segments a failed removal left on disk are unlinked first by the next removal.
//! - **Leader epochs follow the batches.** The cache holds, for each epoch in the log, the
//!   offset of its first batch (Kafka's rule: an entry the new one cannot follow goes), plus an
//!   epoch a new leader assigned at its log end. No batch is written before the checkpoint on
//!   disk covers it, so after any crash the reopened cache is exactly what the batches say.
//! - **Rolls.** A new segment starts when an append would take the active one past
//!   `segment_bytes`, or when the first append to it is `segment_ms` old.
//! - **Appends in flight.** Up to [`PartitionLog::set_append_writes_in_flight`] appends per
//!   log (at most [`APPEND_WRITES_IN_FLIGHT_MAX`], default [`APPEND_WRITES_IN_FLIGHT_DEFAULT`])
//!   have their writes in flight (see `append_pipeline`): reserved (offsets, bytes, tail block) in call
//!   order under the append lock, written concurrently, published in reservation order, each
//!   only after its own write and every earlier one completed. No two writes of one block are
//!   in flight together: a write whose first block ends the previous append waits until every
//!   earlier append resolved. A failed write fails every later reserved append too; before the
//!   next reservation, with nothing in flight, the published tail block is rewritten with
//!   zeros after the end and the file is cut there, so no batch a failed pipeline left on disk
//!   can follow the end and be recovered. Rolls and close wait until nothing is in flight.
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
//! that executor may use it at once through `&self` methods; appends are ordered internally
//! (reserved and published in call order, written concurrently).

mod append_pipeline;
mod batch;
mod clean_marker;
mod context;
mod error;
pub mod fault;
mod fence;
mod fifo_lock;
mod index;
mod index_cache;
mod index_file;
pub mod io;
mod iopoll_probe;
mod leader_epochs;
mod log;
mod log_start_checkpoint;
mod lru;
mod marker_file;
mod notify;
mod read_ahead;
mod recovery;
mod reset_marker;
mod scan;
mod segment;
mod segment_files;
mod tail_cache;
mod truncation_marker;

pub use append_pipeline::{APPEND_WRITES_IN_FLIGHT_DEFAULT, APPEND_WRITES_IN_FLIGHT_MAX};
pub use batch::{ValidatedBatches, APPEND_BYTES_MAX, LEADER_EPOCH_DEFAULT};
pub use context::{StorageBudgets, StorageContext};
pub use error::StorageError;
pub use index_cache::SEALED_INDEX_CACHE_BYTES_MAX;
pub use leader_epochs::{LEADER_EPOCH_ENTRIES_MAX, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
pub use log::PartitionLog;
pub use notify::{Listener, Notify};
pub use read_ahead::{READ_AHEAD_BYTES, READ_AHEAD_CACHE_BYTES_MAX};
pub use record_batch::{records, BatchError, BATCH_BYTES_MAX, BATCH_HEADER_BYTES};
pub use segment::{parse_segment_file_name, READ_BYTES_MAX};
pub use segment_files::{SEALED_SEGMENT_FILES_DEFAULT, SEALED_SEGMENT_FILES_MAX};
pub use tail_cache::{TAIL_CACHE_BYTES_DEFAULT, TAIL_CACHE_BYTES_MAX};

/// Default largest preallocation step of the active segment file: one `fallocate` per 16 MiB
/// appended once the segment is that large, small next to the default 1 GiB segment and large
/// enough that its cost is amortised.
pub const SEGMENT_PREALLOCATE_BYTES: u64 = 16 << 20;

/// The first preallocation step of a segment; each later step is as large as the segment file
/// already is, up to `segment_preallocate_bytes`. Small, so that an idle partition (one record)
/// takes kilobytes of disk, not a whole step: 10,000 partitions with 16 MiB each took 156 GiB.
/// Doubling from here reaches 16 MiB steps after ten `fallocate`s.
pub const SEGMENT_PREALLOCATE_MIN_BYTES: u64 = 16 << 10;

/// Kafka's default `segment.ms`: 7 days.
pub const SEGMENT_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;

/// Tuning of one partition log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A new segment is started when an append would make the active segment larger than this.
    pub segment_bytes: u64,
    /// One sparse index entry per this many bytes of batches.
    pub index_interval_bytes: u64,
    /// The largest step (`fallocate`) by which the active segment file grows, bounded by
    /// `segment_bytes`, so that most appends do not change the file size. Steps start at
    /// `SEGMENT_PREALLOCATE_MIN_BYTES` and double with the file. 0 disables preallocation.
    pub segment_preallocate_bytes: u64,
    /// A new segment is started by the first append that comes at least this many milliseconds
    /// after the first append to the active segment (Kafka's `segment.ms`), so that retention by
    /// time can delete data even from a partition that fills segments slowly. Negative: never.
    pub segment_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            index_interval_bytes: 4096,
            segment_preallocate_bytes: SEGMENT_PREALLOCATE_BYTES,
            segment_ms: SEGMENT_MS_DEFAULT,
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
