//! The persisted form of a segment's sparse index, `<base_offset:020>.index` next to its
//! segment: a fixed 64-byte header followed by an rkyv archive of the entries. Derived data:
//! an index file that is missing, stale (describes another segment length) or corrupt is
//! rebuilt from the segment. The byte layout is documented in the crate docs (`lib.rs`).
//!
//! The header carries everything recovery needs to chain segments without reading the body
//! (next offset, largest timestamp, the segment length it describes) under its own CRC, so
//! opening a sealed segment reads 64 bytes. The body's CRC is checked when the body is loaded.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use rkyv::util::AlignedVec;

use crate::index::{IndexEntry, SparseIndex};
use crate::StorageError;

pub(crate) const INDEX_MAGIC: [u8; 8] = *b"SLCINDEX";
pub(crate) const INDEX_FORMAT_VERSION: u32 = 1;
pub(crate) const INDEX_HEADER_BYTES: usize = 64;
/// Bytes of one archived entry: offset i64, position u64, max_timestamp i64, little-endian.
pub(crate) const INDEX_ENTRY_BYTES: usize = 24;
/// The rkyv root (`ArchivedVec`: relative pointer i32, length u32) after the entries.
pub(crate) const INDEX_ROOT_BYTES: usize = 8;
/// Most entries one index file may claim, checked before its body is allocated: a 2 GiB segment
/// indexed every byte-sized batch would not reach it, a corrupt header claiming more is refused.
pub(crate) const INDEX_ENTRIES_MAX: u32 = 1 << 24;

const INDEX_SUFFIX: &str = ".index";
const TEMPORARY_SUFFIX: &str = ".tmp";

// The body starts at a multiple of rkyv's alignment inside a 16-aligned buffer.
const _: () = assert!(INDEX_HEADER_BYTES.is_multiple_of(16));

/// One entry as archived by rkyv; the archived form is read in place (zero copy).
#[derive(rkyv::Archive, rkyv::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexRecord {
    pub offset: i64,
    pub position: u64,
    pub max_timestamp: i64,
}

/// The header of an index file: what the index describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexHeader {
    pub base_offset: i64,
    /// Length of the segment file the entries describe; the index is stale unless the segment
    /// file is exactly this long.
    pub segment_bytes: u64,
    /// The offset after the last batch of the segment.
    pub next_offset: i64,
    /// Largest batch maxTimestamp in the segment; `i64::MIN` when it holds no batch.
    pub max_timestamp: i64,
    pub entry_count: u32,
    pub body_bytes: u32,
    pub body_crc32c: u32,
}

impl IndexHeader {
    pub fn file_bytes(&self) -> u64 {
        INDEX_HEADER_BYTES as u64 + u64::from(self.body_bytes)
    }

    pub fn max_timestamp(&self) -> Option<i64> {
        (self.entry_count > 0).then_some(self.max_timestamp)
    }

    fn encode(&self) -> [u8; INDEX_HEADER_BYTES] {
        let mut bytes = [0u8; INDEX_HEADER_BYTES];
        bytes[0..8].copy_from_slice(&INDEX_MAGIC);
        bytes[8..12].copy_from_slice(&INDEX_FORMAT_VERSION.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.base_offset.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.segment_bytes.to_le_bytes());
        bytes[32..40].copy_from_slice(&self.next_offset.to_le_bytes());
        bytes[40..48].copy_from_slice(&self.max_timestamp.to_le_bytes());
        bytes[48..52].copy_from_slice(&self.entry_count.to_le_bytes());
        bytes[52..56].copy_from_slice(&self.body_bytes.to_le_bytes());
        bytes[56..60].copy_from_slice(&self.body_crc32c.to_le_bytes());
        let header_crc32c = crc32c::crc32c(&bytes[..60]);
        bytes[60..64].copy_from_slice(&header_crc32c.to_le_bytes());
        bytes
    }

    /// Parses and checks a header: magic, version, header CRC, and the relations between its
    /// fields. The body is not looked at.
    pub fn decode(bytes: &[u8]) -> Result<IndexHeader, String> {
        if bytes.len() < INDEX_HEADER_BYTES {
            return Err(format!("{} bytes, shorter than the header", bytes.len()));
        }
        if bytes[0..8] != INDEX_MAGIC {
            return Err("bad magic".into());
        }
        let version = u32_at(bytes, 8);
        if version != INDEX_FORMAT_VERSION {
            return Err(format!("unknown format version {version}"));
        }
        if u32_at(bytes, 60) != crc32c::crc32c(&bytes[..60]) {
            return Err("header CRC mismatch".into());
        }
        let header = IndexHeader {
            base_offset: i64_at(bytes, 16),
            segment_bytes: u64::from_le_bytes(bytes[24..32].try_into().unwrap()),
            next_offset: i64_at(bytes, 32),
            max_timestamp: i64_at(bytes, 40),
            entry_count: u32_at(bytes, 48),
            body_bytes: u32_at(bytes, 52),
            body_crc32c: u32_at(bytes, 56),
        };
        header.check()?;
        Ok(header)
    }

    fn check(&self) -> Result<(), String> {
        if self.base_offset < 0 || self.next_offset < self.base_offset {
            return Err("offsets out of order".into());
        }
        if self.entry_count > INDEX_ENTRIES_MAX {
            return Err(format!("{} entries", self.entry_count));
        }
        if u64::from(self.body_bytes) != expected_body_bytes(self.entry_count) {
            return Err("body length does not match the entry count".into());
        }
        let empty = self.entry_count == 0;
        if empty != (self.segment_bytes == 0) || empty != (self.next_offset == self.base_offset) {
            return Err("an empty index must describe an empty segment".into());
        }
        Ok(())
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
}

fn i64_at(bytes: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

fn expected_body_bytes(entry_count: u32) -> u64 {
    entry_count as u64 * INDEX_ENTRY_BYTES as u64 + INDEX_ROOT_BYTES as u64
}

/// The index file next to `segment_path` (`<base>.log` → `<base>.index`).
pub(crate) fn index_path(segment_path: &Path) -> PathBuf {
    segment_path.with_extension(&INDEX_SUFFIX[1..])
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("a file path").to_os_string();
    name.push(TEMPORARY_SUFFIX);
    path.with_file_name(name)
}

/// The base offset encoded in an index file name, or `None` if `name` is not one.
pub(crate) fn parse_index_file_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(INDEX_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse::<i64>().ok()
}

/// Whether `name` is a temporary file of an interrupted index or marker write.
pub(crate) fn is_temporary_file_name(name: &str) -> bool {
    name.ends_with(TEMPORARY_SUFFIX)
}

/// Serializes the complete index of a segment that is `index.end_position()` bytes long.
pub(crate) fn encode(index: &SparseIndex) -> (IndexHeader, Vec<u8>) {
    let records: Vec<IndexRecord> = index
        .entries()
        .iter()
        .map(|entry| IndexRecord {
            offset: entry.offset,
            position: entry.position,
            max_timestamp: entry.max_timestamp,
        })
        .collect();
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(&records).expect("serializing to memory");
    let entry_count = u32::try_from(records.len()).expect("entry count fits u32");
    assert!(entry_count <= INDEX_ENTRIES_MAX);
    assert_eq!(body.len() as u64, expected_body_bytes(entry_count));
    let header = IndexHeader {
        base_offset: index.base_offset(),
        segment_bytes: index.end_position(),
        next_offset: index.next_offset(),
        max_timestamp: index.max_timestamp().unwrap_or(i64::MIN),
        entry_count,
        body_bytes: body.len() as u32,
        body_crc32c: crc32c::crc32c(&body),
    };
    header.check().expect("a consistent header");
    let mut file_bytes = Vec::with_capacity(header.file_bytes() as usize);
    file_bytes.extend_from_slice(&header.encode());
    file_bytes.extend_from_slice(&body);
    (header, file_bytes)
}

/// A verified index body held in memory; lookups read the rkyv archive in place.
pub(crate) struct LoadedIndex {
    /// The whole index file; the archive starts at `INDEX_HEADER_BYTES` (16-aligned).
    file_bytes: AlignedVec,
    header: IndexHeader,
}

impl LoadedIndex {
    /// Checks the whole file: header, body length, body CRC, the rkyv archive, and that the
    /// entries are ordered and lie inside the segment the header describes.
    pub fn from_file_bytes(bytes: &[u8]) -> Result<LoadedIndex, String> {
        let header = IndexHeader::decode(bytes)?;
        if bytes.len() as u64 != header.file_bytes() {
            return Err(format!(
                "{} bytes, the header says {}",
                bytes.len(),
                header.file_bytes()
            ));
        }
        let body = &bytes[INDEX_HEADER_BYTES..];
        if crc32c::crc32c(body) != header.body_crc32c {
            return Err("body CRC mismatch".into());
        }
        let mut file_bytes = AlignedVec::<16>::with_capacity(bytes.len());
        file_bytes.extend_from_slice(bytes);
        let archived = rkyv::access::<rkyv::Archived<Vec<IndexRecord>>, rkyv::rancor::Error>(
            &file_bytes[INDEX_HEADER_BYTES..],
        )
        .map_err(|error| format!("invalid archive: {error}"))?;
        check_entries(archived.as_slice(), &header)?;
        Ok(LoadedIndex { file_bytes, header })
    }

    pub fn header(&self) -> &IndexHeader {
        &self.header
    }

    fn entries(&self) -> &[ArchivedIndexRecord] {
        // SAFETY: `from_file_bytes` validated exactly these bytes with `rkyv::access`, and they
        // are owned by `self` and never mutated.
        let archived = unsafe {
            rkyv::access_unchecked::<rkyv::Archived<Vec<IndexRecord>>>(
                &self.file_bytes[INDEX_HEADER_BYTES..],
            )
        };
        archived.as_slice()
    }

    /// Bytes held in memory, for the cache budget.
    pub fn memory_bytes(&self) -> usize {
        self.file_bytes.capacity()
    }

    pub fn entry(&self, number: usize) -> Option<IndexEntry> {
        self.entries().get(number).map(native_entry)
    }

    /// Number of the last entry whose offset is at most `offset`.
    pub fn floor(&self, offset: i64) -> Option<usize> {
        let after = self
            .entries()
            .partition_point(|entry| entry.offset.to_native() <= offset);
        after.checked_sub(1)
    }

    /// The entries as an in-memory index that appends can extend (the active segment).
    pub fn to_sparse_index(&self, interval_bytes: u64) -> SparseIndex {
        let entries = self.entries().iter().map(native_entry).collect();
        SparseIndex::restore(
            self.header.base_offset,
            interval_bytes,
            entries,
            self.header.next_offset,
            self.header.segment_bytes,
        )
    }
}

fn native_entry(entry: &ArchivedIndexRecord) -> IndexEntry {
    IndexEntry {
        offset: entry.offset.to_native(),
        position: entry.position.to_native(),
        max_timestamp: entry.max_timestamp.to_native(),
    }
}

fn check_entries(entries: &[ArchivedIndexRecord], header: &IndexHeader) -> Result<(), String> {
    if entries.len() != header.entry_count as usize {
        return Err("entry count mismatch".into());
    }
    let mut previous: Option<IndexEntry> = None;
    let mut max_timestamp = i64::MIN;
    for entry in entries.iter().map(native_entry) {
        let ordered = match previous {
            None => entry.offset == header.base_offset && entry.position == 0,
            Some(previous) => entry.offset > previous.offset && entry.position > previous.position,
        };
        if !ordered || entry.offset >= header.next_offset || entry.position >= header.segment_bytes
        {
            return Err(format!("entry {entry:?} out of order or out of range"));
        }
        max_timestamp = max_timestamp.max(entry.max_timestamp);
        previous = Some(entry);
    }
    if max_timestamp != header.max_timestamp {
        return Err("largest timestamp mismatch".into());
    }
    Ok(())
}

/// Reads and checks only the header of `path`; `Ok(None)` if there is no such file, `Err` with
/// the reason if it is not a usable index (it is then rebuilt).
pub(crate) fn read_header_blocking(path: &Path) -> io::Result<Result<IndexHeader, String>> {
    let mut file = match fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Err("missing".into())),
        Err(error) => return Err(error),
    };
    let file_bytes = file.metadata()?.len();
    let mut bytes = [0u8; INDEX_HEADER_BYTES];
    if file_bytes < INDEX_HEADER_BYTES as u64 {
        return Ok(Err(format!("{file_bytes} bytes, shorter than the header")));
    }
    file.read_exact(&mut bytes)?;
    Ok(IndexHeader::decode(&bytes).and_then(|header| {
        if header.file_bytes() != file_bytes {
            return Err(format!(
                "{file_bytes} bytes, the header says {}",
                header.file_bytes()
            ));
        }
        Ok(header)
    }))
}

/// Reads and checks a whole index file with blocking I/O (start-up).
pub(crate) fn read_blocking(path: &Path) -> io::Result<Result<LoadedIndex, String>> {
    let header = match read_header_blocking(path)? {
        Ok(header) => header,
        Err(reason) => return Ok(Err(reason)),
    };
    // The length was checked against the header's bounded entry count before this allocation.
    let bytes = fs::read(path)?;
    if bytes.len() as u64 != header.file_bytes() {
        return Ok(Err("changed while being read".into()));
    }
    Ok(LoadedIndex::from_file_bytes(&bytes))
}

/// Reads and checks a whole index file on the executor, expecting `expected` as its header.
pub(crate) async fn read(
    path: &Path,
    expected: &IndexHeader,
) -> Result<Result<LoadedIndex, String>, StorageError> {
    let file = match glommio::io::BufferedFile::open(path).await {
        Ok(file) => file,
        Err(error) => {
            let error = io::Error::from(error);
            if error.kind() == io::ErrorKind::NotFound {
                return Ok(Err("missing".into()));
            }
            return Err(error.into());
        }
    };
    let file_bytes = file.file_size().await;
    let result = match file_bytes {
        Ok(bytes) if bytes != expected.file_bytes() => Ok(Err(format!(
            "{bytes} bytes, expected {}",
            expected.file_bytes()
        ))),
        Ok(bytes) => file
            .read_at(0, bytes as usize)
            .await
            .map(|read| LoadedIndex::from_file_bytes(&read))
            .map_err(StorageError::from),
        Err(error) => Err(error.into()),
    };
    file.close().await?;
    Ok(result?.and_then(|loaded| {
        if loaded.header() != expected {
            return Err("header differs from the one read at open".into());
        }
        Ok(loaded)
    }))
}

/// Writes `bytes` to `path` durably with blocking I/O: a temporary file, fdatasync, rename. The
/// caller syncs the directory.
pub(crate) fn write_blocking(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temporary = temporary_path(path);
    let mut file = fs::File::create(&temporary)?;
    io::Write::write_all(&mut file, bytes)?;
    file.sync_data()?;
    drop(file);
    fs::rename(&temporary, path)
}

/// Writes `bytes` to `path` durably on the executor: a temporary file, fdatasync, rename. The
/// caller syncs the directory.
pub(crate) async fn write(path: &Path, bytes: Vec<u8>) -> Result<(), StorageError> {
    let temporary = temporary_path(path);
    let file = glommio::io::BufferedFile::create(&temporary).await?;
    let len = bytes.len();
    let written = file.write_at(bytes, 0).await;
    let synced = match written {
        Ok(written) if written == len => file.fdatasync().await.map_err(StorageError::from),
        Ok(written) => Err(StorageError::Io(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "short write of {written} of {len} bytes to {}",
                temporary.display()
            ),
        ))),
        Err(error) => Err(error.into()),
    };
    file.close().await?;
    synced?;
    glommio::io::rename(&temporary, path).await?;
    Ok(())
}

/// Removes `path`; a file that is already gone is not an error.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_index() -> SparseIndex {
        let mut index = SparseIndex::new(1000, 250);
        for batch in 0..10u64 {
            index.observe(
                1000 + 3 * batch as i64,
                batch * 100,
                100,
                3,
                7 * batch as i64,
            );
        }
        index
    }

    #[test]
    fn round_trip_reads_the_archive_in_place() {
        let index = sample_index();
        let (header, bytes) = encode(&index);
        assert_eq!(bytes.len(), INDEX_HEADER_BYTES + 4 * 24 + 8);
        assert_eq!(header.entry_count, 4);
        assert_eq!(header.segment_bytes, 1000);
        assert_eq!(header.next_offset, 1030);
        assert_eq!(header.max_timestamp, 63);
        let loaded = LoadedIndex::from_file_bytes(&bytes).unwrap();
        assert_eq!(loaded.header(), &header);
        assert_eq!(loaded.header().entry_count, 4);
        for number in 0..4 {
            assert_eq!(loaded.entry(number), index.entry(number));
        }
        assert_eq!(loaded.entry(4), None);
        for offset in [999, 1000, 1008, 1009, 1029, 5000] {
            assert_eq!(loaded.floor(offset), index.floor(offset), "offset {offset}");
        }
        // The archive is the documented layout: entries of 24 little-endian bytes.
        let first = &bytes[INDEX_HEADER_BYTES + 24..INDEX_HEADER_BYTES + 48];
        assert_eq!(i64::from_le_bytes(first[0..8].try_into().unwrap()), 1009);
        assert_eq!(u64::from_le_bytes(first[8..16].try_into().unwrap()), 300);
        let root = &bytes[INDEX_HEADER_BYTES + 96..];
        assert_eq!(i32::from_le_bytes(root[0..4].try_into().unwrap()), -96);
        assert_eq!(u32::from_le_bytes(root[4..8].try_into().unwrap()), 4);
        let restored = loaded.to_sparse_index(250);
        assert_eq!(encode(&restored).1, bytes);
    }

    #[test]
    fn empty_index_round_trips() {
        let index = SparseIndex::new(42, 4096);
        let (header, bytes) = encode(&index);
        assert_eq!(header.max_timestamp(), None);
        let loaded = LoadedIndex::from_file_bytes(&bytes).unwrap();
        assert_eq!(loaded.header().entry_count, 0);
        assert_eq!(loaded.floor(42), None);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let (_, bytes) = encode(&sample_index());
        for at in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(
                LoadedIndex::from_file_bytes(&damaged).is_err(),
                "flip at {at} not detected"
            );
        }
        assert!(LoadedIndex::from_file_bytes(&bytes[..bytes.len() - 1]).is_err());
        assert!(LoadedIndex::from_file_bytes(&bytes[..40]).is_err());
    }

    #[test]
    fn file_names() {
        assert_eq!(
            parse_index_file_name("00000000000000000042.index"),
            Some(42)
        );
        assert_eq!(parse_index_file_name("00000000000000000042.log"), None);
        assert_eq!(
            index_path(Path::new("/d/00000000000000000042.log")),
            Path::new("/d/00000000000000000042.index")
        );
        assert!(is_temporary_file_name("00000000000000000042.index.tmp"));
    }
}
