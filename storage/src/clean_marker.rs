//! The clean-shutdown marker `<partition dir>/clean-shutdown`: written by `PartitionLog::close`
//! after the active segment was trimmed, fdatasync'd and its index written, and removed by
//! `open` before the log can be appended to. While it is valid and matches the last segment
//! (base offset, file length, log end offset), recovery trusts that segment's index and scans
//! nothing. The byte layout is documented in the crate docs (`lib.rs`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::index_file;
use crate::StorageError;

pub(crate) const MARKER_FILE_NAME: &str = "clean-shutdown";
pub(crate) const MARKER_MAGIC: [u8; 8] = *b"SLCCLEAN";
pub(crate) const MARKER_FORMAT_VERSION: u32 = 1;
pub(crate) const MARKER_BYTES: usize = 48;

/// What a clean close left behind: the active segment and where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanMarker {
    pub active_base_offset: i64,
    pub active_segment_bytes: u64,
    pub log_end_offset: i64,
}

impl CleanMarker {
    pub fn encode(&self) -> [u8; MARKER_BYTES] {
        let mut bytes = [0u8; MARKER_BYTES];
        bytes[0..8].copy_from_slice(&MARKER_MAGIC);
        bytes[8..12].copy_from_slice(&MARKER_FORMAT_VERSION.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.active_base_offset.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.active_segment_bytes.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.log_end_offset.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..40]);
        bytes[40..44].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<CleanMarker> {
        if bytes.len() != MARKER_BYTES || bytes[0..8] != MARKER_MAGIC {
            return None;
        }
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let long = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        if word(8) != MARKER_FORMAT_VERSION || word(40) != crc32c::crc32c(&bytes[..40]) {
            return None;
        }
        Some(CleanMarker {
            active_base_offset: long(16) as i64,
            active_segment_bytes: long(24),
            log_end_offset: long(32) as i64,
        })
    }
}

pub(crate) fn marker_path(dir: &Path) -> PathBuf {
    dir.join(MARKER_FILE_NAME)
}

/// Reads the marker and removes it, so that it can vouch for the log only until the log is
/// changed. The removal is made durable by the directory sync of the first `sync_to` (the
/// caller arranges it): until then the marker may reappear after a power failure, but the
/// segment it describes has then not grown either, or its length no longer matches.
/// Returns whether a marker file was removed, and the marker if it was valid.
pub(crate) fn take_blocking(dir: &Path) -> io::Result<(bool, Option<CleanMarker>)> {
    let path = marker_path(dir);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok((false, None)),
        Err(error) => return Err(error),
    };
    fs::remove_file(&path)?;
    let marker = CleanMarker::decode(&bytes);
    if marker.is_none() {
        log::warn!(
            "ignoring an invalid clean-shutdown marker in {}",
            dir.display()
        );
    }
    Ok((true, marker))
}

/// Writes the marker durably (temporary file, fdatasync, rename); the caller syncs the directory.
pub(crate) async fn write(dir: &Path, marker: &CleanMarker) -> Result<(), StorageError> {
    index_file::write(&marker_path(dir), marker.encode().to_vec()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let marker = CleanMarker {
            active_base_offset: 1000,
            active_segment_bytes: 123_456,
            log_end_offset: 1234,
        };
        let bytes = marker.encode();
        assert_eq!(CleanMarker::decode(&bytes), Some(marker));
        for at in 0..44 {
            let mut damaged = bytes;
            damaged[at] ^= 1;
            assert_eq!(CleanMarker::decode(&damaged), None, "flip at {at}");
        }
        assert_eq!(CleanMarker::decode(&bytes[..40]), None);
    }
}
