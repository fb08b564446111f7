//! The truncation marker `<partition dir>/truncate-to`: written durably by
//! `PartitionLog::truncate_to` before it changes any file, removed once every file is cut, so
//! that a crash in between is finished by the next open (see `recovery::finish_truncation`)
//! instead of leaving a log that is neither the old one nor the truncated one. The byte layout is
//! documented in the crate docs (`lib.rs`).

use std::io;
use std::path::Path;

use crate::index_file;
use crate::io::LogIo;
use crate::marker_file::{i64_at, u64_at, MarkerError, MarkerFormat};
use crate::StorageError;

const FORMAT: MarkerFormat = MarkerFormat::new("truncate-to", *b"SLCTRUNC", 1, 24, 48);

/// A truncation in progress: the log keeps the offsets below `offset`, which ends the segment
/// starting at `segment_base_offset` at byte `segment_bytes`; later segments go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncation {
    pub offset: i64,
    pub segment_base_offset: i64,
    pub segment_bytes: u64,
}

fn payload(truncation: &Truncation) -> [u8; 24] {
    assert!(truncation.segment_base_offset >= 0);
    assert!(truncation.offset >= truncation.segment_base_offset);
    let mut payload = [0u8; 24];
    payload[0..8].copy_from_slice(&truncation.offset.to_le_bytes());
    payload[8..16].copy_from_slice(&truncation.segment_base_offset.to_le_bytes());
    payload[16..24].copy_from_slice(&truncation.segment_bytes.to_le_bytes());
    payload
}

fn parse(payload: &[u8]) -> Result<Truncation, MarkerError> {
    let truncation = Truncation {
        offset: i64_at(payload, 0),
        segment_base_offset: i64_at(payload, 8),
        segment_bytes: u64_at(payload, 16),
    };
    let consistent = truncation.segment_base_offset >= 0
        && truncation.offset >= truncation.segment_base_offset
        && (truncation.segment_bytes == 0) == (truncation.offset == truncation.segment_base_offset);
    if !consistent {
        return Err(MarkerError::Payload(
            "the cut is not inside its segment".into(),
        ));
    }
    Ok(truncation)
}

/// The truncation a crash interrupted, `None` if there is no marker. A marker that exists but
/// does not decode is `Corrupt`: guessing where to cut could lose batches.
pub(crate) fn read_blocking(dir: &Path) -> Result<Option<Truncation>, StorageError> {
    FORMAT.load_blocking(dir, parse)
}

/// Writes the marker durably, the directory fsync included.
pub(crate) async fn write(
    io: &dyn LogIo,
    dir: &Path,
    truncation: &Truncation,
) -> Result<(), StorageError> {
    FORMAT.replace(io, dir, &payload(truncation)).await
}

/// Removes the marker (the caller syncs the directory afterwards).
pub(crate) fn remove(dir: &Path) -> io::Result<()> {
    index_file::remove_if_exists(&FORMAT.path(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Truncation, MarkerError> {
        FORMAT.decode(bytes).and_then(parse)
    }

    /// A marker as the format's first version wrote it, byte by byte.
    fn version_1_bytes(truncation: &Truncation) -> Vec<u8> {
        let mut bytes = vec![0u8; 48];
        bytes[0..8].copy_from_slice(b"SLCTRUNC");
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        bytes[16..24].copy_from_slice(&truncation.offset.to_le_bytes());
        bytes[24..32].copy_from_slice(&truncation.segment_base_offset.to_le_bytes());
        bytes[32..40].copy_from_slice(&truncation.segment_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..40]);
        bytes[40..44].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn a_marker_round_trips_in_its_layout_and_damage_is_detected() {
        let truncation = Truncation {
            offset: 1_234,
            segment_base_offset: 1_000,
            segment_bytes: 8_192,
        };
        let bytes = FORMAT.encode(&payload(&truncation));
        assert_eq!(bytes, version_1_bytes(&truncation));
        assert_eq!(decode(&bytes), Ok(truncation));
        for position in 0..44 {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x01;
            assert!(decode(&damaged).is_err(), "flipped byte {position}");
        }
        assert!(decode(&bytes[..47]).is_err());
    }

    #[test]
    fn a_cut_outside_its_segment_is_refused() {
        let mut bytes = version_1_bytes(&Truncation {
            offset: 999,
            segment_base_offset: 1_000,
            segment_bytes: 0,
        });
        assert_eq!(
            decode(&bytes),
            Err(MarkerError::Payload(
                "the cut is not inside its segment".into(),
            ))
        );
        bytes.truncate(40);
        assert!(matches!(decode(&bytes), Err(MarkerError::Length { .. })));
    }

    /// A marker as the format's first version (its own encoder, before the shared codec) wrote
    /// it.
    const VERSION_1_HEX: &str = "534c435452554e430100000000000000d204000000000000e8030000000000\
        0000200000000000009aae0c1f00000000";

    #[test]
    fn a_marker_of_the_first_version_decodes() {
        let bytes = crate::marker_file::from_hex(VERSION_1_HEX);
        let truncation = Truncation {
            offset: 1_234,
            segment_base_offset: 1_000,
            segment_bytes: 8_192,
        };
        assert_eq!(decode(&bytes), Ok(truncation));
        assert_eq!(FORMAT.encode(&payload(&truncation)), bytes);
    }
}
