//! The log start checkpoint `<partition dir>/log-start-offset`: the log start offset that
//! `PartitionLog::delete_records` moved past the first segment's base offset. Retention needs no
//! checkpoint (it deletes whole segments, so the first remaining segment's base offset is the log
//! start); DeleteRecords can move the start into the middle of a segment, and that must survive a
//! restart. Written to a temporary file, fdatasync'd, renamed, and the directory fsync'd before the
//! new start is published. The byte layout is documented in the crate docs (`lib.rs`).

use std::path::Path;

use crate::io::LogIo;
use crate::marker_file::{i64_at, MarkerError, MarkerFormat};
use crate::StorageError;

pub(crate) const FORMAT: MarkerFormat =
    MarkerFormat::new("log-start-offset", *b"SLCSTART", 1, 8, 32);

fn parse(payload: &[u8]) -> Result<i64, MarkerError> {
    let log_start_offset = i64_at(payload, 0);
    if log_start_offset < 0 {
        return Err(MarkerError::Payload(
            "the log start offset is negative".into(),
        ));
    }
    Ok(log_start_offset)
}

/// The checkpointed log start offset, `None` if there is no checkpoint. A checkpoint that exists
/// but does not decode is `Corrupt`: guessing a start could serve deleted records.
pub(crate) fn read_blocking(dir: &Path) -> Result<Option<i64>, StorageError> {
    FORMAT.load_blocking(dir, parse)
}

/// Durably replaces the checkpoint, the directory fsync included.
pub(crate) async fn write(
    io: &dyn LogIo,
    dir: &Path,
    log_start_offset: i64,
) -> Result<(), StorageError> {
    assert!(log_start_offset >= 0);
    FORMAT
        .replace(io, dir, &log_start_offset.to_le_bytes())
        .await
}

/// Removes the checkpoint (the caller syncs the directory afterwards): the log then starts at
/// its first segment's base offset.
pub(crate) fn remove(dir: &Path) -> std::io::Result<()> {
    crate::index_file::remove_if_exists(&FORMAT.path(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<i64, MarkerError> {
        FORMAT.decode(bytes).and_then(parse)
    }

    /// A checkpoint as the format's first version wrote it, byte by byte.
    fn version_1_bytes(log_start_offset: i64) -> Vec<u8> {
        let mut bytes = vec![0u8; 32];
        bytes[0..8].copy_from_slice(b"SLCSTART");
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        bytes[16..24].copy_from_slice(&log_start_offset.to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..24]);
        bytes[24..28].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn a_checkpoint_round_trips_in_its_layout_and_damage_is_detected() {
        let bytes = FORMAT.encode(&12_345i64.to_le_bytes());
        assert_eq!(bytes, version_1_bytes(12_345));
        assert_eq!(decode(&bytes), Ok(12_345));
        for position in 0..28 {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x01;
            assert!(decode(&damaged).is_err(), "flipped byte {position}");
        }
        assert!(decode(&bytes[..31]).is_err());
        assert!(matches!(
            decode(&version_1_bytes(-1)),
            Err(MarkerError::Payload(_))
        ));
    }

    /// A checkpoint of 12345 as the format's first version (its own encoder, before the shared
    /// codec) wrote it.
    const VERSION_1_HEX: &str = "534c43535441525401000000000000003930000000000000141bfa6900000000";

    #[test]
    fn a_checkpoint_of_the_first_version_decodes() {
        let bytes = crate::marker_file::from_hex(VERSION_1_HEX);
        assert_eq!(decode(&bytes), Ok(12_345));
        assert_eq!(FORMAT.encode(&12_345i64.to_le_bytes()), bytes);
    }
}
