//! The leader-epoch cache of one partition (Kafka's `LeaderEpochFileCache`): for each leader
//! epoch that wrote batches, the offset of its first batch, and its checkpoint file
//! `<partition dir>/leader-epoch-checkpoint`. OffsetForLeaderEpoch answers from it, and a
//! follower truncates its divergent suffix with it (KIP-101, KIP-279).
//!
//! The cache is a function of the batches in the log (plus an epoch a new leader assigned at its
//! log end): every batch is observed in offset order by [`LeaderEpochs::observe`], which adds
//! `(epoch, base offset)` when the epoch differs from the latest entry's, first dropping every
//! entry that the new one would not follow (Kafka's rule, so epochs and start offsets both grow
//! strictly). The log (`log/epochs.rs`) observes batches when it publishes them and writes the
//! checkpoint, fdatasync'd, before it writes the first batch the checkpoint does not yet cover,
//! so the file on disk never lacks an entry for a batch on disk. It may hold entries past the log
//! end (written ahead of a write that a crash lost, or left by a truncation): `open` drops them.
//! A missing or damaged checkpoint is rebuilt by reading every batch header.
//!
//! Layout (little-endian; the list shape of the small-file codec, `marker_file.rs`: replaced
//! through a temporary file, fdatasync, rename, directory fsync):
//!
//! | offset      | field        | type    | notes                               |
//! |------------:|--------------|---------|-------------------------------------|
//! |           0 | magic        | [u8; 8] | `SLCEPOCH`                          |
//! |           8 | version      | u32     | 1                                   |
//! |          12 | entryCount   | u32     | n, at most `LEADER_EPOCH_ENTRIES_MAX` |
//! |  16 + 12 i  | epoch        | i32     | entry i, strictly increasing        |
//! |  20 + 12 i  | startOffset  | i64     | entry i, strictly increasing, >= 0  |
//! |  16 + 12 n  | crc          | u32     | CRC-32C of every byte before it     |

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::batch::{BatchHeader, BATCH_HEADER_BYTES};
use crate::io::LogIo;
use crate::marker_file::{i64_at, MarkerError, MarkerFormat};
use crate::StorageError;

/// Entries a cache keeps: one per leader epoch that wrote batches, so a partition needs a
/// thousand leader changes with writes in between to reach it; past it the oldest entry goes
/// (OffsetForLeaderEpoch then answers its epoch as below the first one). Bounds the checkpoint
/// at 12 KiB.
pub const LEADER_EPOCH_ENTRIES_MAX: usize = 1024;

const ENTRY_BYTES: usize = 12;
const FORMAT: MarkerFormat = MarkerFormat::entries(
    "leader-epoch-checkpoint",
    *b"SLCEPOCH",
    1,
    ENTRY_BYTES,
    LEADER_EPOCH_ENTRIES_MAX,
);

/// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// One entry: `epoch` wrote (or was assigned) the offsets from `start_offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// The entries, strictly increasing in epoch and start offset. Pure: no I/O, no clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochs {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochs {
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// Whether observing a batch of `epoch` at `start_offset` would change nothing.
    pub fn covers(&self, epoch: i32, start_offset: i64) -> bool {
        epoch < 0
            || self
                .latest()
                .is_some_and(|latest| latest.epoch == epoch && latest.start_offset <= start_offset)
    }

    /// A batch of `epoch` starting at `start_offset` follows everything observed so far. Returns
    /// whether the entries changed. Negative epochs (batches written without one) are ignored.
    pub fn observe(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        assert!(start_offset >= 0);
        if self.covers(epoch, start_offset) {
            return false;
        }
        // Kafka's `maybeTruncateNonMonotonicEntries`: the entries form a monotonic list, so the
        // ones the new entry cannot follow are a suffix.
        self.entries
            .retain(|entry| entry.epoch < epoch && entry.start_offset < start_offset);
        if self.entries.len() == LEADER_EPOCH_ENTRIES_MAX {
            self.entries.remove(0);
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Drops the entries starting at or past `end_offset` (the log was cut there, or a crash
    /// lost the batches they were written ahead of). Returns whether any went.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.start_offset < end_offset);
        self.entries.len() != before
    }

    /// The entries as seen from a log that starts at `log_start_offset`: those wholly below it
    /// (another entry starts at or before it) are left out, and the first kept one starts no
    /// earlier than it (Kafka's `truncateFromStart`). The entries themselves keep their starts,
    /// so a crash that brings back segments below a moved start finds their epochs still there.
    pub fn view(&self, log_start_offset: i64) -> Vec<EpochEntry> {
        let first_kept = self
            .entries
            .iter()
            .rposition(|entry| entry.start_offset <= log_start_offset)
            .unwrap_or(0);
        let mut view = self.entries[first_kept..].to_vec();
        if let Some(first) = view.first_mut() {
            first.start_offset = first.start_offset.max(log_start_offset);
        }
        view
    }

    /// Kafka's `endOffsetFor`: for `epoch`, the largest epoch at or below it that the log knows
    /// and the start of the next larger epoch, or `log_end_offset` for the latest epoch. Below
    /// the first entry it is `epoch` itself with the first entry's start; above the latest one,
    /// or for `UNDEFINED_EPOCH`, it is (`UNDEFINED_EPOCH`, `UNDEFINED_EPOCH_OFFSET`).
    pub fn end_offset_for(
        &self,
        epoch: i32,
        log_start_offset: i64,
        log_end_offset: i64,
    ) -> (i32, i64) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        let view = self.view(log_start_offset);
        if epoch < 0 {
            return undefined;
        }
        if view.last().is_some_and(|latest| latest.epoch == epoch) {
            return (epoch, log_end_offset);
        }
        let Some(higher) = view.iter().position(|entry| entry.epoch > epoch) else {
            return undefined;
        };
        let end_offset = view[higher].start_offset;
        match higher.checked_sub(1) {
            Some(floor) => (view[floor].epoch, end_offset),
            None => (epoch, end_offset),
        }
    }

    fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    fn from_entries(entries: Vec<EpochEntry>) -> LeaderEpochs {
        LeaderEpochs { entries }
    }
}

pub(crate) fn checkpoint_path(dir: &Path) -> PathBuf {
    FORMAT.path(dir)
}

fn payload(epochs: &LeaderEpochs) -> Vec<u8> {
    let entries = epochs.entries();
    let mut payload = Vec::with_capacity(ENTRY_BYTES * entries.len());
    for entry in entries {
        payload.extend_from_slice(&entry.epoch.to_le_bytes());
        payload.extend_from_slice(&entry.start_offset.to_le_bytes());
    }
    payload
}

/// The entries of a checkpoint's payload, refused unless they are strictly increasing.
fn parse(payload: &[u8]) -> Result<LeaderEpochs, MarkerError> {
    let mut entries: Vec<EpochEntry> = Vec::with_capacity(payload.len() / ENTRY_BYTES);
    for (i, entry) in payload.chunks_exact(ENTRY_BYTES).enumerate() {
        let epoch = i32::from_le_bytes(entry[0..4].try_into().expect("4 bytes"));
        let start_offset = i64_at(entry, 4);
        let follows = entries
            .last()
            .is_none_or(|last| last.epoch < epoch && last.start_offset < start_offset);
        if epoch < 0 || start_offset < 0 || !follows {
            return Err(MarkerError::Payload(format!(
                "entry {i} ({epoch}, {start_offset}) out of order"
            )));
        }
        entries.push(EpochEntry {
            epoch,
            start_offset,
        });
    }
    Ok(LeaderEpochs::from_entries(entries))
}

#[cfg(test)]
fn encode(epochs: &LeaderEpochs) -> Vec<u8> {
    FORMAT.encode(&payload(epochs))
}

#[cfg(test)]
fn decode(bytes: &[u8]) -> Result<LeaderEpochs, MarkerError> {
    FORMAT.decode(bytes).and_then(parse)
}

/// The checkpoint in `dir`: `Ok(None)` if there is none, the reason if it does not decode.
pub(crate) fn read_blocking(dir: &Path) -> io::Result<Result<Option<LeaderEpochs>, MarkerError>> {
    FORMAT.try_load_blocking(dir, parse)
}

/// Durably replaces the checkpoint in `dir`, the directory fsync included.
pub(crate) async fn write(
    io: &dyn LogIo,
    dir: &Path,
    epochs: &LeaderEpochs,
) -> Result<(), StorageError> {
    FORMAT.replace(io, dir, &payload(epochs)).await
}

/// The cache of a log whose checkpoint is missing or damaged: every batch header of the
/// segments (`(path, segment bytes)`, in offset order), observed in order. A header that does
/// not parse (a fenced damaged range) ends the walk of its segment.
pub(crate) fn rebuild_blocking(segments: &[(PathBuf, u64)]) -> io::Result<LeaderEpochs> {
    let mut epochs = LeaderEpochs::default();
    let mut header = [0u8; BATCH_HEADER_BYTES];
    for (path, segment_bytes) in segments {
        let file = File::open(path)?;
        let mut position = 0u64;
        while position + BATCH_HEADER_BYTES as u64 <= *segment_bytes {
            file.read_exact_at(&mut header, position)?;
            let parsed = BatchHeader::parse(&header)
                .ok()
                .filter(|h| h.base_offset >= 0);
            let Some(parsed) = parsed else {
                log::warn!(
                    "{}: leader epochs rebuilt up to byte {position}, where a batch header is damaged",
                    path.display()
                );
                break;
            };
            epochs.observe(parsed.partition_leader_epoch, parsed.base_offset);
            position += parsed.total_bytes() as u64;
        }
    }
    Ok(epochs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(entries: &[(i32, i64)]) -> LeaderEpochs {
        let mut epochs = LeaderEpochs::default();
        for (epoch, start) in entries {
            assert!(epochs.observe(*epoch, *start));
        }
        epochs
    }

    fn pairs(entries: &[EpochEntry]) -> Vec<(i32, i64)> {
        entries.iter().map(|e| (e.epoch, e.start_offset)).collect()
    }

    #[test]
    fn observing_adds_an_entry_per_new_epoch_and_drops_what_it_cannot_follow() {
        let mut cache = LeaderEpochs::default();
        assert!(!cache.observe(-1, 0));
        assert!(cache.observe(0, 0));
        assert!(!cache.observe(0, 10));
        assert!(cache.observe(3, 20));
        assert!(!cache.observe(3, 25));
        assert_eq!(pairs(cache.entries()), [(0, 0), (3, 20)]);
        // A lower epoch after a higher one (a leader assigned 3 and lost the race): 3 goes.
        assert!(cache.observe(2, 20));
        assert_eq!(pairs(cache.entries()), [(0, 0), (2, 20)]);
        // The same epoch starting earlier than its entry replaces it.
        assert!(cache.observe(2, 15));
        assert_eq!(pairs(cache.entries()), [(0, 0), (2, 15)]);
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let cache = epochs(&[(1, 0), (3, 100), (6, 200)]);
        assert_eq!(cache.end_offset_for(6, 0, 250), (6, 250));
        assert_eq!(cache.end_offset_for(3, 0, 250), (3, 200));
        assert_eq!(cache.end_offset_for(4, 0, 250), (3, 200));
        assert_eq!(cache.end_offset_for(1, 0, 250), (1, 100));
        assert_eq!(cache.end_offset_for(0, 0, 250), (0, 0));
        assert_eq!(cache.end_offset_for(7, 0, 250), (-1, -1));
        assert_eq!(cache.end_offset_for(-1, 0, 250), (-1, -1));
        assert_eq!(LeaderEpochs::default().end_offset_for(0, 0, 0), (-1, -1));
        // A log start at 150 hides epoch 1 and clamps epoch 3's start.
        assert_eq!(pairs(&cache.view(150)), [(3, 150), (6, 200)]);
        assert_eq!(cache.end_offset_for(1, 150, 250), (1, 150));
        assert_eq!(cache.end_offset_for(3, 150, 250), (3, 200));
        assert_eq!(pairs(&cache.view(100)), [(3, 100), (6, 200)]);
    }

    #[test]
    fn truncation_from_the_end_drops_entries_at_or_past_it() {
        let mut cache = epochs(&[(1, 0), (3, 100), (6, 200)]);
        assert!(!cache.truncate_from_end(201));
        assert!(cache.truncate_from_end(200));
        assert_eq!(pairs(cache.entries()), [(1, 0), (3, 100)]);
        assert!(cache.truncate_from_end(50));
        assert_eq!(pairs(cache.entries()), [(1, 0)]);
    }

    #[test]
    fn the_oldest_entry_goes_at_the_bound() {
        let mut cache = LeaderEpochs::default();
        for epoch in 0..=LEADER_EPOCH_ENTRIES_MAX as i32 {
            cache.observe(epoch, i64::from(epoch) * 10);
        }
        assert_eq!(cache.entries().len(), LEADER_EPOCH_ENTRIES_MAX);
        assert_eq!(cache.entries()[0].epoch, 1);
    }

    #[test]
    fn the_checkpoint_round_trips_in_its_layout_and_damage_is_refused() {
        let cache = epochs(&[(1, 0), (3, 100)]);
        let bytes = encode(&cache);
        assert_eq!(bytes.len(), 16 + 24 + 4);
        assert_eq!(&bytes[0..8], b"SLCEPOCH");
        assert_eq!(&bytes[8..16], &[1, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&bytes[16..20], &1i32.to_le_bytes());
        assert_eq!(&bytes[28..32], &3i32.to_le_bytes());
        assert_eq!(&bytes[32..40], &100i64.to_le_bytes());
        assert_eq!(decode(&bytes), Ok(cache.clone()));
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x01;
            assert!(decode(&damaged).is_err(), "flipped byte {position}");
        }
        assert!(decode(&bytes[..bytes.len() - 1]).is_err());
        assert_eq!(
            decode(&encode(&LeaderEpochs::default())),
            Ok(LeaderEpochs::default())
        );
        // Entries out of order with a valid CRC.
        let mut unordered = encode(&cache);
        unordered[28..32].copy_from_slice(&0i32.to_le_bytes());
        let crc_at = unordered.len() - 4;
        let crc = crc32c::crc32c(&unordered[..crc_at]);
        unordered[crc_at..].copy_from_slice(&crc.to_le_bytes());
        assert!(decode(&unordered).is_err());
    }

    /// A checkpoint of (0, 0), (3, 1000), (7, 123456789) and an empty one, as the format's
    /// first version (its own encoder, before the shared codec) wrote them.
    const VERSION_1_HEX: &str = "534c4345504f434801000000030000000000000000000000000000000300\
        0000e8030000000000000700000015cd5b0700000000c474bba5";
    const VERSION_1_EMPTY_HEX: &str = "534c4345504f434801000000000000002c543e62";

    #[test]
    fn checkpoints_of_the_first_version_decode() {
        let cache = epochs(&[(0, 0), (3, 1_000), (7, 123_456_789)]);
        let bytes = crate::marker_file::from_hex(VERSION_1_HEX);
        assert_eq!(decode(&bytes), Ok(cache.clone()));
        assert_eq!(encode(&cache), bytes);
        let empty = crate::marker_file::from_hex(VERSION_1_EMPTY_HEX);
        assert_eq!(decode(&empty), Ok(LeaderEpochs::default()));
        assert_eq!(encode(&LeaderEpochs::default()), empty);
    }
}
