//! The truncation marker `<partition dir>/truncate-to`: written durably by
//! `PartitionLog::truncate_to` before it changes any file, removed once every file is cut, so
//! that a crash in between is finished by the next open (see `recovery::finish_truncation`)
//! instead of leaving a log that is neither the old one nor the truncated one. The byte layout is
//! documented in the crate docs (`lib.rs`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::index_file;
use crate::StorageError;

const MARKER_FILE_NAME: &str = "truncate-to";
const MARKER_MAGIC: [u8; 8] = *b"SLCTRUNC";
const MARKER_FORMAT_VERSION: u32 = 1;
const MARKER_BYTES: usize = 48;

/// A truncation in progress: the log keeps the offsets below `offset`, which ends the segment
/// starting at `segment_base_offset` at byte `segment_bytes`; later segments go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncation {
    pub offset: i64,
    pub segment_base_offset: i64,
    pub segment_bytes: u64,
}

fn marker_path(dir: &Path) -> PathBuf {
    dir.join(MARKER_FILE_NAME)
}

fn encode(truncation: &Truncation) -> [u8; MARKER_BYTES] {
    assert!(truncation.segment_base_offset >= 0);
    assert!(truncation.offset >= truncation.segment_base_offset);
    let mut bytes = [0u8; MARKER_BYTES];
    bytes[0..8].copy_from_slice(&MARKER_MAGIC);
    bytes[8..12].copy_from_slice(&MARKER_FORMAT_VERSION.to_le_bytes());
    bytes[16..24].copy_from_slice(&truncation.offset.to_le_bytes());
    bytes[24..32].copy_from_slice(&truncation.segment_base_offset.to_le_bytes());
    bytes[32..40].copy_from_slice(&truncation.segment_bytes.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..40]);
    bytes[40..44].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Option<Truncation> {
    if bytes.len() != MARKER_BYTES || bytes[0..8] != MARKER_MAGIC {
        return None;
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    let crc = u32::from_le_bytes(bytes[40..44].try_into().unwrap());
    if version != MARKER_FORMAT_VERSION || crc != crc32c::crc32c(&bytes[..40]) {
        return None;
    }
    let truncation = Truncation {
        offset: i64::from_le_bytes(bytes[16..24].try_into().unwrap()),
        segment_base_offset: i64::from_le_bytes(bytes[24..32].try_into().unwrap()),
        segment_bytes: u64::from_le_bytes(bytes[32..40].try_into().unwrap()),
    };
    let consistent = truncation.segment_base_offset >= 0
        && truncation.offset >= truncation.segment_base_offset
        && (truncation.segment_bytes == 0) == (truncation.offset == truncation.segment_base_offset);
    consistent.then_some(truncation)
}

/// The truncation a crash interrupted, `None` if there is no marker. A marker that exists but
/// does not decode is `Corrupt`: it is written atomically (rename), so damage means the files
/// were changed outside this code, and guessing where to cut could lose batches.
pub(crate) fn read_blocking(dir: &Path) -> Result<Option<Truncation>, StorageError> {
    let path = marker_path(dir);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    match decode(&bytes) {
        Some(truncation) => Ok(Some(truncation)),
        None => Err(StorageError::Corrupt(format!(
            "{} is damaged",
            path.display()
        ))),
    }
}

/// Writes the marker durably (the caller syncs the directory afterwards).
pub(crate) async fn write(dir: &Path, truncation: &Truncation) -> Result<(), StorageError> {
    index_file::write(&marker_path(dir), encode(truncation).to_vec()).await
}

/// Removes the marker (the caller syncs the directory afterwards).
pub(crate) fn remove(dir: &Path) -> io::Result<()> {
    index_file::remove_if_exists(&marker_path(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_round_trips_and_damage_is_detected() {
        let truncation = Truncation {
            offset: 1_234,
            segment_base_offset: 1_000,
            segment_bytes: 8_192,
        };
        let bytes = encode(&truncation);
        assert_eq!(decode(&bytes), Some(truncation));
        for position in 0..44 {
            let mut damaged = bytes;
            damaged[position] ^= 0x01;
            assert_eq!(decode(&damaged), None, "flipped byte {position}");
        }
        assert_eq!(decode(&bytes[..47]), None);
    }
}
