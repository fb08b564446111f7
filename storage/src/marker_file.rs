//! The one codec of storage's small fixed-layout files (the log start checkpoint, the
//! clean-shutdown marker and the truncation marker): 8 magic bytes, a u32 format version, 4
//! reserved bytes, the file's payload, the CRC-32C of everything before it, and zeros up to the
//! file's fixed size, all little-endian. A file is replaced atomically (a temporary file,
//! fdatasync, rename, directory fsync), so one that exists but does not decode was changed outside
//! this code. The layouts are tabled in the crate docs (`lib.rs`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::index_file;
use crate::io::LogIo;
use crate::StorageError;

/// Magic, version and reserved bytes before the payload.
const HEADER_BYTES: usize = 16;
const CRC_BYTES: usize = 4;

/// One kind of fixed-layout file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MarkerFormat {
    /// The file's name in the partition directory.
    pub file_name: &'static str,
    pub magic: [u8; 8],
    pub version: u32,
    pub payload_bytes: usize,
    /// The whole file: header, payload, CRC and the zero padding after it.
    pub file_bytes: usize,
}

/// Why a marker file's bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MarkerError {
    #[error("{found} bytes where the format has {expected}")]
    Length { found: usize, expected: usize },
    #[error("magic {found:?} is not {expected:?}")]
    Magic { found: Vec<u8>, expected: [u8; 8] },
    #[error("format version {found}, this build reads {expected}")]
    Version { found: u32, expected: u32 },
    #[error("CRC-32C {found:#010x} does not match its bytes ({computed:#010x})")]
    Checksum { found: u32, computed: u32 },
    #[error("{0}")]
    Payload(&'static str),
}

impl MarkerFormat {
    /// A format; fails to compile (in a const) when the payload and CRC do not fit the file.
    pub const fn new(
        file_name: &'static str,
        magic: [u8; 8],
        version: u32,
        payload_bytes: usize,
        file_bytes: usize,
    ) -> MarkerFormat {
        assert!(HEADER_BYTES + payload_bytes + CRC_BYTES <= file_bytes);
        MarkerFormat {
            file_name,
            magic,
            version,
            payload_bytes,
            file_bytes,
        }
    }

    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.file_name)
    }

    fn crc_at(&self) -> usize {
        HEADER_BYTES + self.payload_bytes
    }

    pub fn encode(&self, payload: &[u8]) -> Vec<u8> {
        assert_eq!(payload.len(), self.payload_bytes);
        let mut bytes = vec![0u8; self.file_bytes];
        bytes[0..8].copy_from_slice(&self.magic);
        bytes[8..12].copy_from_slice(&self.version.to_le_bytes());
        bytes[HEADER_BYTES..self.crc_at()].copy_from_slice(payload);
        let crc = crc32c::crc32c(&bytes[..self.crc_at()]);
        bytes[self.crc_at()..self.crc_at() + CRC_BYTES].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// The payload of a whole, intact file of this format.
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], MarkerError> {
        if bytes.len() != self.file_bytes {
            return Err(MarkerError::Length {
                found: bytes.len(),
                expected: self.file_bytes,
            });
        }
        if bytes[0..8] != self.magic {
            return Err(MarkerError::Magic {
                found: bytes[0..8].to_vec(),
                expected: self.magic,
            });
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != self.version {
            return Err(MarkerError::Version {
                found: version,
                expected: self.version,
            });
        }
        let crc_at = self.crc_at();
        let found = u32::from_le_bytes(
            bytes[crc_at..crc_at + CRC_BYTES]
                .try_into()
                .expect("4 bytes"),
        );
        let computed = crc32c::crc32c(&bytes[..crc_at]);
        if found != computed {
            return Err(MarkerError::Checksum { found, computed });
        }
        Ok(&bytes[HEADER_BYTES..crc_at])
    }

    /// The file's bytes in `dir`, `None` if there is none.
    pub fn read_blocking(&self, dir: &Path) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path(dir)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// The decoded file in `dir`, `None` if there is none; one that does not decode (by this
    /// codec or by `parse`) is `Corrupt`, naming the file and the reason.
    pub fn load_blocking<T>(
        &self,
        dir: &Path,
        parse: impl FnOnce(&[u8]) -> Result<T, MarkerError>,
    ) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self.read_blocking(dir)? else {
            return Ok(None);
        };
        match self.decode(&bytes).and_then(parse) {
            Ok(value) => Ok(Some(value)),
            Err(error) => Err(StorageError::Corrupt(format!(
                "{} is damaged: {error}",
                self.path(dir).display()
            ))),
        }
    }

    /// Durably replaces the file in `dir`: a temporary file, fdatasync, rename, then the
    /// directory fsync'd through `io`.
    pub async fn replace(
        &self,
        io: &dyn LogIo,
        dir: &Path,
        payload: &[u8],
    ) -> Result<(), StorageError> {
        index_file::write(&self.path(dir), self.encode(payload)).await?;
        Ok(io.sync_dir(dir).await?)
    }
}

/// The little-endian i64 at `at` in `payload`.
pub(crate) fn i64_at(payload: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(payload[at..at + 8].try_into().expect("8 bytes"))
}

/// The little-endian u64 at `at` in `payload`.
pub(crate) fn u64_at(payload: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(payload[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: MarkerFormat = MarkerFormat::new("test-marker", *b"SLCTESTS", 1, 8, 32);

    #[test]
    fn the_layout_is_header_payload_crc_and_padding() {
        let bytes = FORMAT.encode(&7i64.to_le_bytes());
        assert_eq!(&bytes[0..8], b"SLCTESTS");
        assert_eq!(&bytes[8..16], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[16..24], &7i64.to_le_bytes());
        assert_eq!(&bytes[24..28], &crc32c::crc32c(&bytes[..24]).to_le_bytes());
        assert_eq!(&bytes[28..32], &[0, 0, 0, 0]);
        assert_eq!(FORMAT.decode(&bytes), Ok(&7i64.to_le_bytes()[..]));
    }

    #[test]
    fn damage_is_refused_with_its_reason() {
        let bytes = FORMAT.encode(&7i64.to_le_bytes());
        for position in 0..28 {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x01;
            let error = FORMAT
                .decode(&damaged)
                .expect_err("a flipped byte is refused");
            let expected = match position {
                0..8 => matches!(error, MarkerError::Magic { .. }),
                8..12 => matches!(error, MarkerError::Version { .. }),
                _ => matches!(error, MarkerError::Checksum { .. }),
            };
            assert!(expected, "byte {position}: {error}");
        }
        for len in [0, 31, 33] {
            let mut cut = bytes.clone();
            cut.resize(len, 0);
            assert!(matches!(
                FORMAT.decode(&cut),
                Err(MarkerError::Length { .. })
            ));
        }
    }
}
