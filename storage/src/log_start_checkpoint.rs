//! The log start checkpoint `<partition dir>/log-start-offset`: the log start offset that
//! `PartitionLog::delete_records` moved past the first segment's base offset. Retention needs no
//! checkpoint (it deletes whole segments, so the first remaining segment's base offset is the log
//! start); DeleteRecords can move the start into the middle of a segment, and that must survive a
//! restart. Written to a temporary file, fdatasync'd, renamed, and the directory fsync'd before the
//! new start is published. The byte layout is documented in the crate docs (`lib.rs`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::index_file;
use crate::StorageError;

pub(crate) const CHECKPOINT_FILE_NAME: &str = "log-start-offset";
const CHECKPOINT_MAGIC: [u8; 8] = *b"SLCSTART";
const CHECKPOINT_FORMAT_VERSION: u32 = 1;
const CHECKPOINT_BYTES: usize = 32;

fn checkpoint_path(dir: &Path) -> PathBuf {
    dir.join(CHECKPOINT_FILE_NAME)
}

fn encode(log_start_offset: i64) -> [u8; CHECKPOINT_BYTES] {
    assert!(log_start_offset >= 0);
    let mut bytes = [0u8; CHECKPOINT_BYTES];
    bytes[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
    bytes[8..12].copy_from_slice(&CHECKPOINT_FORMAT_VERSION.to_le_bytes());
    bytes[16..24].copy_from_slice(&log_start_offset.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn decode(bytes: &[u8]) -> Option<i64> {
    if bytes.len() != CHECKPOINT_BYTES || bytes[0..8] != CHECKPOINT_MAGIC {
        return None;
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    let crc = u32::from_le_bytes(bytes[24..28].try_into().unwrap());
    if version != CHECKPOINT_FORMAT_VERSION || crc != crc32c::crc32c(&bytes[..24]) {
        return None;
    }
    let log_start_offset = i64::from_le_bytes(bytes[16..24].try_into().unwrap());
    (log_start_offset >= 0).then_some(log_start_offset)
}

/// The checkpointed log start offset, `None` if there is no checkpoint. A checkpoint that exists
/// but does not decode is `Corrupt`: it is written atomically (rename), so damage means the
/// files were changed outside this code, and guessing a start could serve deleted records.
pub(crate) fn read_blocking(dir: &Path) -> Result<Option<i64>, StorageError> {
    let path = checkpoint_path(dir);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    match decode(&bytes) {
        Some(offset) => Ok(Some(offset)),
        None => Err(StorageError::Corrupt(format!(
            "{} is damaged",
            path.display()
        ))),
    }
}

/// Durably replaces the checkpoint (the caller syncs the directory afterwards).
pub(crate) async fn write(dir: &Path, log_start_offset: i64) -> Result<(), StorageError> {
    index_file::write(&checkpoint_path(dir), encode(log_start_offset).to_vec()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_and_damage_is_detected() {
        let bytes = encode(12_345);
        assert_eq!(decode(&bytes), Some(12_345));
        for position in 0..28 {
            let mut damaged = bytes;
            damaged[position] ^= 0x01;
            assert_eq!(decode(&damaged), None, "flipped byte {position}");
        }
        assert_eq!(decode(&bytes[..31]), None);
    }
}
