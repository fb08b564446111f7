//! RecordBatch v2 as storage checks it: the full check produce, fence searches and recovery run,
//! timestamp lookups inside a batch, and `ValidatedBatches`. The byte layout itself is the
//! `record_batch` crate's.

use bytes::{Bytes, BytesMut};
pub(crate) use record_batch::{BatchError, BatchHeader, BATCH_BYTES_MAX, BATCH_HEADER_BYTES};

use crate::records::{self, RecordPolicy};

/// Largest `ValidatedBatches` (all batches of one append together). An append is written as one
/// DMA buffer, so this bounds that buffer (plus at most one alignment block of tail bytes).
pub const APPEND_BYTES_MAX: usize = BATCH_BYTES_MAX;

const _: () = assert!(BATCH_BYTES_MAX <= APPEND_BYTES_MAX);
const _: () = assert!(APPEND_BYTES_MAX <= i32::MAX as usize);

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

/// Checks that the batch at the start of `bytes` is stored intact
/// ([`record_batch::check_integrity`]: header ranges, presence of every byte, CRC-32C and
/// `recordCount = lastOffsetDelta + 1`). Reads check what they serve here: every stored batch
/// passed [`check_batch`] when it was produced or recovered, so a read only has to find damage
/// done since, which the CRC covers; walking the records again on every fetch would double the
/// CPU it spends per byte.
pub(crate) fn check_batch_integrity(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    record_batch::check_integrity(bytes)
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

/// Rewrites the fields storage owns in a batch copy headed for disk: its base offset and the
/// partition leader epoch it was appended under. Neither is covered by the CRC, so the stored
/// CRC stays valid.
pub(crate) fn set_base_offset_and_epoch(batch: &mut [u8], base_offset: i64, leader_epoch: i32) {
    record_batch::set_base_offset(batch, base_offset);
    record_batch::set_partition_leader_epoch(batch, leader_epoch);
}

/// The partition leader epoch of an append whose caller gives none: a partition's first epoch.
pub const LEADER_EPOCH_DEFAULT: i32 = 0;

/// Per-batch facts gathered during validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchSummary {
    /// Position of the batch inside the `ValidatedBatches` bytes.
    pub position: usize,
    /// The baseOffset the batch carries (a producer's is meaningless; a leader's is kept by
    /// `PartitionLog::append_replicated`).
    pub base_offset: i64,
    pub total_bytes: usize,
    pub offset_count: i64,
    pub max_timestamp: i64,
}

/// One or more RecordBatch v2 batches that passed validation: lengths consistent, magic 2,
/// CRC-32C correct, `recordCount = lastOffsetDelta + 1`, uncompressed records well framed,
/// each batch at most [`BATCH_BYTES_MAX`] and all together at most [`APPEND_BYTES_MAX`].
/// Constructed only by [`ValidatedBatches::validate`], so `PartitionLog::append` cannot be handed
/// unchecked bytes.
///
/// Archivable with rkyv (for messages that may one day travel between brokers) as its bytes and
/// leader epoch; deserializing validates the bytes again, so an archive cannot forge the type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedBatches {
    bytes: Bytes,
    batches: Vec<BatchSummary>,
    record_count: i64,
    leader_epoch: i32,
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
                base_offset: header.base_offset,
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
            leader_epoch: LEADER_EPOCH_DEFAULT,
        })
    }

    /// The partition leader epoch the append stamps into every batch's header (outside the
    /// CRC), as the appending leader gives it; [`LEADER_EPOCH_DEFAULT`] unless set.
    pub fn with_leader_epoch(mut self, leader_epoch: i32) -> ValidatedBatches {
        assert!(leader_epoch >= 0, "a leader epoch is never negative");
        self.leader_epoch = leader_epoch;
        self
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
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

    /// The baseOffset the first batch carries.
    pub fn first_base_offset(&self) -> i64 {
        self.batches[0].base_offset
    }

    /// The first position where a batch's carried baseOffset is not the previous batch's
    /// baseOffset + its offset count, as (expected, found); None if the batches follow each
    /// other without gaps or overlaps, as a leader's log holds them.
    pub fn carried_offset_gap(&self) -> Option<(i64, i64)> {
        self.batches.windows(2).find_map(|pair| {
            let expected = pair[0].base_offset.checked_add(pair[0].offset_count)?;
            (pair[1].base_offset != expected).then_some((expected, pair[1].base_offset))
        })
    }
}

impl ValidatedBatches {
    /// Validates produced bytes: everything [`ValidatedBatches::validate`] checks, then every
    /// record of every batch against `policy`. For a LogAppendTime topic the result holds a copy
    /// stamped with `policy.log_append_time_ms`; otherwise it holds `bytes` untouched.
    pub fn validate_produced(
        bytes: Bytes,
        policy: &RecordPolicy,
    ) -> Result<ValidatedBatches, BatchError> {
        let checked = ValidatedBatches::validate(bytes)?;
        for summary in checked.summaries() {
            let batch = &checked.bytes()[summary.position..summary.position + summary.total_bytes];
            records::check_produced_batch(batch, policy)?;
        }
        let Some(now_ms) = policy.log_append_time_ms else {
            return Ok(checked);
        };
        let mut stamped = BytesMut::from(&checked.bytes()[..]);
        for summary in checked.summaries() {
            let end = summary.position + summary.total_bytes;
            record_batch::set_log_append_time(&mut stamped[summary.position..end], now_ms);
        }
        let stamped = ValidatedBatches::validate(stamped.freeze())
            .expect("stamping LogAppendTime keeps a valid batch valid");
        Ok(stamped)
    }
}

/// What rkyv stores of a [`ValidatedBatches`]: the rest is derived from the bytes.
#[derive(rkyv::Archive, rkyv::Serialize)]
pub struct ValidatedBatchesArchive {
    bytes: Bytes,
    leader_epoch: i32,
}

impl ValidatedBatches {
    fn archive(&self) -> ValidatedBatchesArchive {
        ValidatedBatchesArchive {
            bytes: self.bytes.clone(),
            leader_epoch: self.leader_epoch,
        }
    }
}

impl rkyv::Archive for ValidatedBatches {
    type Archived = ArchivedValidatedBatchesArchive;
    type Resolver = ValidatedBatchesArchiveResolver;

    fn resolve(&self, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        self.archive().resolve(resolver, out);
    }
}

impl<S> rkyv::Serialize<S> for ValidatedBatches
where
    S: rkyv::rancor::Fallible + rkyv::ser::Allocator + rkyv::ser::Writer + ?Sized,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        self.archive().serialize(serializer)
    }
}

/// An archived leader epoch below zero, which no leader ever has.
#[derive(Debug, thiserror::Error)]
#[error("archived leader epoch {0} is negative")]
struct NegativeLeaderEpoch(i32);

impl<D> rkyv::Deserialize<ValidatedBatches, D> for ArchivedValidatedBatchesArchive
where
    D: rkyv::rancor::Fallible + ?Sized,
    D::Error: rkyv::rancor::Source,
{
    fn deserialize(&self, _: &mut D) -> Result<ValidatedBatches, D::Error> {
        use rkyv::rancor::Source;
        let leader_epoch = self.leader_epoch.to_native();
        if leader_epoch < 0 {
            return Err(D::Error::new(NegativeLeaderEpoch(leader_epoch)));
        }
        let bytes = Bytes::copy_from_slice(self.bytes.as_slice());
        let batches = ValidatedBatches::validate(bytes).map_err(D::Error::new)?;
        Ok(batches.with_leader_epoch(leader_epoch))
    }
}
