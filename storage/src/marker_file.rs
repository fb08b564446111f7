//! The one codec of storage's small files (the log start checkpoint, the clean-shutdown marker,
//! the truncation and reset markers, the leader-epoch checkpoint): 8 magic bytes, a u32 format
//! version, a u32 header word, the file's payload, the CRC-32C of everything before it, all
//! little-endian. Two shapes share it: a fixed-size file (the header word is reserved, 0; zeros
//! pad the file after the CRC up to its size) and a list of fixed-size entries (the header word
//! counts them; the CRC ends the file). A file is replaced atomically (a temporary file,
//! fdatasync, rename, directory fsync), so one that exists but does not decode was changed
//! outside this code. Reads are bounded by the shape's largest file. The layouts are tabled in
//! the crate docs (`lib.rs`).

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::index_file;
use crate::io::LogIo;
use crate::StorageError;

/// Magic, version and header word before the payload.
const HEADER_BYTES: usize = 16;
const CRC_BYTES: usize = 4;

/// How a format's payload is sized.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MarkerShape {
    /// `payload_bytes` always; the file is `file_bytes` long (header, payload, CRC, zeros).
    Fixed {
        payload_bytes: usize,
        file_bytes: usize,
    },
    /// Up to `entries_max` entries of `entry_bytes`, counted by the header word; the file ends
    /// with the CRC.
    Entries {
        entry_bytes: usize,
        entries_max: usize,
    },
}

/// One kind of small file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MarkerFormat {
    /// The file's name in the partition directory.
    pub file_name: &'static str,
    pub magic: [u8; 8],
    pub version: u32,
    pub shape: MarkerShape,
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
    #[error("{found} entries, at most {max}")]
    Count { found: usize, max: usize },
    #[error("CRC-32C {found:#010x} does not match its bytes ({computed:#010x})")]
    Checksum { found: u32, computed: u32 },
    #[error("{0}")]
    Payload(String),
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

impl MarkerFormat {
    /// A fixed-size format; fails to compile (in a const) when the payload and CRC do not fit
    /// the file.
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
            shape: MarkerShape::Fixed {
                payload_bytes,
                file_bytes,
            },
        }
    }

    /// A format holding a counted list of entries.
    pub const fn entries(
        file_name: &'static str,
        magic: [u8; 8],
        version: u32,
        entry_bytes: usize,
        entries_max: usize,
    ) -> MarkerFormat {
        assert!(entry_bytes > 0 && entries_max <= u32::MAX as usize);
        MarkerFormat {
            file_name,
            magic,
            version,
            shape: MarkerShape::Entries {
                entry_bytes,
                entries_max,
            },
        }
    }

    pub fn path(&self, dir: &Path) -> PathBuf {
        dir.join(self.file_name)
    }

    /// The longest file of this format.
    pub const fn file_bytes_max(&self) -> usize {
        match self.shape {
            MarkerShape::Fixed { file_bytes, .. } => file_bytes,
            MarkerShape::Entries {
                entry_bytes,
                entries_max,
            } => HEADER_BYTES + entry_bytes * entries_max + CRC_BYTES,
        }
    }

    /// The file's header word and total length for a payload of `payload_len` bytes.
    fn frame(&self, payload_len: usize) -> (u32, usize) {
        match self.shape {
            MarkerShape::Fixed {
                payload_bytes,
                file_bytes,
            } => {
                assert_eq!(payload_len, payload_bytes);
                (0, file_bytes)
            }
            MarkerShape::Entries {
                entry_bytes,
                entries_max,
            } => {
                assert_eq!(payload_len % entry_bytes, 0);
                let count = payload_len / entry_bytes;
                assert!(count <= entries_max);
                (count as u32, HEADER_BYTES + payload_len + CRC_BYTES)
            }
        }
    }

    pub fn encode(&self, payload: &[u8]) -> Vec<u8> {
        let (word, file_bytes) = self.frame(payload.len());
        let crc_at = HEADER_BYTES + payload.len();
        let mut bytes = vec![0u8; file_bytes];
        bytes[0..8].copy_from_slice(&self.magic);
        bytes[8..12].copy_from_slice(&self.version.to_le_bytes());
        bytes[12..16].copy_from_slice(&word.to_le_bytes());
        bytes[HEADER_BYTES..crc_at].copy_from_slice(payload);
        let crc = crc32c::crc32c(&bytes[..crc_at]);
        bytes[crc_at..crc_at + CRC_BYTES].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// The payload length the header of `bytes` (at least `HEADER_BYTES` long) announces.
    fn payload_len(&self, bytes: &[u8]) -> Result<usize, MarkerError> {
        match self.shape {
            MarkerShape::Fixed { payload_bytes, .. } => Ok(payload_bytes),
            MarkerShape::Entries {
                entry_bytes,
                entries_max,
            } => {
                let count = u32_at(bytes, 12) as usize;
                if count > entries_max {
                    return Err(MarkerError::Count {
                        found: count,
                        max: entries_max,
                    });
                }
                Ok(count * entry_bytes)
            }
        }
    }

    /// The payload of a whole, intact file of this format.
    pub fn decode<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], MarkerError> {
        let length = |expected| MarkerError::Length {
            found: bytes.len(),
            expected,
        };
        if bytes.len() < HEADER_BYTES + CRC_BYTES || bytes.len() > self.file_bytes_max() {
            return Err(length(self.file_bytes_max()));
        }
        if bytes[0..8] != self.magic {
            return Err(MarkerError::Magic {
                found: bytes[0..8].to_vec(),
                expected: self.magic,
            });
        }
        let version = u32_at(bytes, 8);
        if version != self.version {
            return Err(MarkerError::Version {
                found: version,
                expected: self.version,
            });
        }
        let payload_len = self.payload_len(bytes)?;
        let expected = match self.shape {
            MarkerShape::Fixed { file_bytes, .. } => file_bytes,
            MarkerShape::Entries { .. } => HEADER_BYTES + payload_len + CRC_BYTES,
        };
        if bytes.len() != expected {
            return Err(length(expected));
        }
        let crc_at = HEADER_BYTES + payload_len;
        let found = u32_at(bytes, crc_at);
        let computed = crc32c::crc32c(&bytes[..crc_at]);
        if found != computed {
            return Err(MarkerError::Checksum { found, computed });
        }
        Ok(&bytes[HEADER_BYTES..crc_at])
    }

    /// The file's bytes in `dir`, `None` if there is none. At most one byte more than the
    /// format's longest file is read, so a file grown outside this code is refused by its
    /// length without being read whole.
    pub fn read_blocking(&self, dir: &Path) -> io::Result<Option<Vec<u8>>> {
        let file = match File::open(self.path(dir)) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let mut bytes = Vec::with_capacity(self.file_bytes_max() + 1);
        file.take(self.file_bytes_max() as u64 + 1)
            .read_to_end(&mut bytes)?;
        Ok(Some(bytes))
    }

    /// The decoded file in `dir`: `Ok(None)` if there is none, the reason if it does not decode
    /// (by this codec or by `parse`).
    pub fn try_load_blocking<T>(
        &self,
        dir: &Path,
        parse: impl FnOnce(&[u8]) -> Result<T, MarkerError>,
    ) -> io::Result<Result<Option<T>, MarkerError>> {
        let Some(bytes) = self.read_blocking(dir)? else {
            return Ok(Ok(None));
        };
        Ok(self.decode(&bytes).and_then(parse).map(Some))
    }

    /// The decoded file in `dir`, `None` if there is none; one that does not decode (by this
    /// codec or by `parse`) is `Corrupt`, naming the file and the reason.
    pub fn load_blocking<T>(
        &self,
        dir: &Path,
        parse: impl FnOnce(&[u8]) -> Result<T, MarkerError>,
    ) -> Result<Option<T>, StorageError> {
        self.try_load_blocking(dir, parse)?.map_err(|error| {
            StorageError::Corrupt(format!("{} is damaged: {error}", self.path(dir).display()))
        })
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

/// The bytes a hex fixture spells (whitespace ignored).
#[cfg(test)]
pub(crate) fn from_hex(hex: &str) -> Vec<u8> {
    let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert_eq!(digits.len() % 2, 0);
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex"))
        .collect()
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

    const ENTRIES: MarkerFormat = MarkerFormat::entries("test-entries", *b"SLCTESTE", 2, 4, 3);

    #[test]
    fn an_entry_list_is_counted_and_bounded() {
        assert_eq!(ENTRIES.file_bytes_max(), 16 + 12 + 4);
        let bytes = ENTRIES.encode(&[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(bytes.len(), 16 + 8 + 4);
        assert_eq!(&bytes[8..16], &[2, 0, 0, 0, 2, 0, 0, 0]);
        assert_eq!(&bytes[24..28], &crc32c::crc32c(&bytes[..24]).to_le_bytes());
        assert_eq!(ENTRIES.decode(&bytes), Ok(&[1, 2, 3, 4, 5, 6, 7, 8][..]));
        assert_eq!(ENTRIES.decode(&ENTRIES.encode(&[])), Ok(&[][..]));
        // A count past the bound, a count the length does not match, a cut file.
        let mut too_many = bytes.clone();
        too_many[12] = 4;
        assert!(matches!(
            ENTRIES.decode(&too_many),
            Err(MarkerError::Count { found: 4, max: 3 })
        ));
        let mut miscounted = bytes.clone();
        miscounted[12] = 1;
        assert!(matches!(
            ENTRIES.decode(&miscounted),
            Err(MarkerError::Length { .. })
        ));
        for len in [0, 19, 27, 33] {
            let mut cut = bytes.clone();
            cut.resize(len, 0);
            assert!(ENTRIES.decode(&cut).is_err(), "{len} bytes");
        }
    }

    #[test]
    fn a_file_longer_than_the_format_is_read_only_to_one_byte_past_its_bound() {
        let dir = std::env::temp_dir().join(format!("sluice-marker-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        assert_eq!(ENTRIES.read_blocking(&dir).expect("read"), None);
        std::fs::write(ENTRIES.path(&dir), vec![0u8; 1 << 20]).expect("write");
        let bytes = ENTRIES.read_blocking(&dir).expect("read").expect("a file");
        assert_eq!(bytes.len(), ENTRIES.file_bytes_max() + 1);
        let loaded = ENTRIES.load_blocking(&dir, |payload| Ok(payload.len()));
        assert!(matches!(loaded, Err(StorageError::Corrupt(_))));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
