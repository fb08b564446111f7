//! The reset marker `<partition dir>/reset-to`: written durably by `PartitionLog::reset_to`
//! before it changes any file, removed once the log on disk is the empty one starting at the
//! marker's offset, so that a crash in between is finished by the next open (see
//! `recovery::finish_reset`) instead of leaving a log that is neither the old one nor the reset
//! one. The log start checkpoint cannot serve as this commit point: it only bounds the start from
//! below, so it cannot say that the records above it go too, and a reset below the log start
//! moves it back. The byte layout is documented in the crate docs (`lib.rs`).

use std::io;
use std::path::Path;

use crate::index_file;
use crate::io::LogIo;
use crate::marker_file::{i64_at, MarkerError, MarkerFormat};
use crate::StorageError;

const FORMAT: MarkerFormat = MarkerFormat::new("reset-to", *b"SLCRESET", 1, 8, 32);

fn parse(payload: &[u8]) -> Result<i64, MarkerError> {
    let offset = i64_at(payload, 0);
    if offset < 0 {
        return Err(MarkerError::Payload("the reset offset is negative".into()));
    }
    Ok(offset)
}

/// The offset of the reset a crash interrupted, `None` if there is no marker. A marker that
/// exists but does not decode is `Corrupt`: guessing could drop a log or keep a dropped one.
pub(crate) fn read_blocking(dir: &Path) -> Result<Option<i64>, StorageError> {
    FORMAT.load_blocking(dir, parse)
}

/// Writes the marker durably, the directory fsync included.
pub(crate) async fn write(io: &dyn LogIo, dir: &Path, offset: i64) -> Result<(), StorageError> {
    assert!(offset >= 0);
    FORMAT.replace(io, dir, &offset.to_le_bytes()).await
}

/// Removes the marker (the caller syncs the directory afterwards).
pub(crate) fn remove(dir: &Path) -> io::Result<()> {
    index_file::remove_if_exists(&FORMAT.path(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<i64, MarkerError> {
        FORMAT.decode(bytes).and_then(parse)
    }

    /// A marker as the format's first version wrote it, byte by byte.
    fn version_1_bytes(offset: i64) -> Vec<u8> {
        let mut bytes = vec![0u8; 32];
        bytes[0..8].copy_from_slice(b"SLCRESET");
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        bytes[16..24].copy_from_slice(&offset.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..24]);
        bytes[24..28].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn a_marker_round_trips_in_its_layout_and_damage_is_detected() {
        let bytes = FORMAT.encode(&4_321i64.to_le_bytes());
        assert_eq!(bytes, version_1_bytes(4_321));
        assert_eq!(decode(&bytes), Ok(4_321));
        for position in 0..28 {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x01;
            assert!(decode(&damaged).is_err(), "flipped byte {position}");
        }
        assert!(decode(&bytes[..31]).is_err());
        assert_eq!(
            decode(&version_1_bytes(-1)),
            Err(MarkerError::Payload("the reset offset is negative".into()))
        );
    }
}
