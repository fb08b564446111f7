//! The clean-shutdown marker `<partition dir>/clean-shutdown`: written by `PartitionLog::close`
//! after the active segment was trimmed, fdatasync'd and its index written, and removed by
//! `open` before the log can be appended to. While it is valid and matches the last segment
//! (base offset, file length, log end offset), recovery trusts that segment's index and scans
//! nothing. The byte layout is documented in the crate docs (`lib.rs`).

use std::fs;
use std::io;
use std::path::Path;

use crate::io::LogIo;
use crate::marker_file::{i64_at, u64_at, MarkerError, MarkerFormat};
use crate::StorageError;

const FORMAT: MarkerFormat = MarkerFormat::new("clean-shutdown", *b"SLCCLEAN", 1, 24, 48);

/// What a clean close left behind: the active segment and where it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CleanMarker {
    pub active_base_offset: i64,
    pub active_segment_bytes: u64,
    pub log_end_offset: i64,
}

impl CleanMarker {
    fn payload(&self) -> [u8; 24] {
        let mut payload = [0u8; 24];
        payload[0..8].copy_from_slice(&self.active_base_offset.to_le_bytes());
        payload[8..16].copy_from_slice(&self.active_segment_bytes.to_le_bytes());
        payload[16..24].copy_from_slice(&self.log_end_offset.to_le_bytes());
        payload
    }

    fn parse(payload: &[u8]) -> Result<CleanMarker, MarkerError> {
        Ok(CleanMarker {
            active_base_offset: i64_at(payload, 0),
            active_segment_bytes: u64_at(payload, 8),
            log_end_offset: i64_at(payload, 16),
        })
    }
}

/// Reads the marker and removes it, so that it can vouch for the log only until the log is
/// changed. The removal is made durable by the directory sync of the first `sync_to` (the
/// caller arranges it): until then the marker may reappear after a power failure, but the
/// segment it describes has then not grown either, or its length no longer matches.
/// Returns whether a marker file was removed, and the marker if it was valid. An invalid one
/// costs only a scan of the last segment, so it is logged and ignored.
pub(crate) fn take_blocking(dir: &Path) -> io::Result<(bool, Option<CleanMarker>)> {
    let Some(bytes) = FORMAT.read_blocking(dir)? else {
        return Ok((false, None));
    };
    fs::remove_file(FORMAT.path(dir))?;
    match FORMAT.decode(&bytes).and_then(CleanMarker::parse) {
        Ok(marker) => Ok((true, Some(marker))),
        Err(error) => {
            log::warn!(
                "ignoring an invalid clean-shutdown marker in {}: {error}",
                dir.display()
            );
            Ok((true, None))
        }
    }
}

/// Writes the marker durably, the directory fsync included.
pub(crate) async fn write(
    io: &dyn LogIo,
    dir: &Path,
    marker: &CleanMarker,
) -> Result<(), StorageError> {
    FORMAT.replace(io, dir, &marker.payload()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Option<CleanMarker> {
        FORMAT.decode(bytes).and_then(CleanMarker::parse).ok()
    }

    /// A marker as the format's first version wrote it, byte by byte.
    fn version_1_bytes(marker: &CleanMarker) -> Vec<u8> {
        let mut bytes = vec![0u8; 48];
        bytes[0..8].copy_from_slice(b"SLCCLEAN");
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        bytes[16..24].copy_from_slice(&marker.active_base_offset.to_le_bytes());
        bytes[24..32].copy_from_slice(&marker.active_segment_bytes.to_le_bytes());
        bytes[32..40].copy_from_slice(&marker.log_end_offset.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..40]);
        bytes[40..44].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn round_trip_in_its_layout_and_damage() {
        let marker = CleanMarker {
            active_base_offset: 1000,
            active_segment_bytes: 123_456,
            log_end_offset: 1234,
        };
        let bytes = FORMAT.encode(&marker.payload());
        assert_eq!(bytes, version_1_bytes(&marker));
        assert_eq!(decode(&bytes), Some(marker));
        for at in 0..44 {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            assert_eq!(decode(&damaged), None, "flip at {at}");
        }
        assert_eq!(decode(&bytes[..40]), None);
    }

    /// The marker of `round_trip_in_its_layout_and_damage` as the format's first version (its
    /// own encoder, before the shared codec) wrote it.
    const VERSION_1_HEX: &str = "534c43434c45414e0100000000000000e80300000000000040e20100000000\
        00d20400000000000019476ad200000000";

    #[test]
    fn a_marker_of_the_first_version_decodes() {
        let bytes = crate::marker_file::from_hex(VERSION_1_HEX);
        let marker = CleanMarker {
            active_base_offset: 1000,
            active_segment_bytes: 123_456,
            log_end_offset: 1234,
        };
        assert_eq!(decode(&bytes), Some(marker));
        assert_eq!(FORMAT.encode(&marker.payload()), bytes);
    }
}
