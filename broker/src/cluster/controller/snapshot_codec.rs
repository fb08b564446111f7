//! The quorum's snapshot of the metadata as bytes: the rkyv archive of [`MetadataSnapshot`],
//! as written before reassignments existed, followed, only while a reassignment is in
//! progress, by a trailing section with each reassigning partition's adding and removing
//! replicas (which [`crate::cluster::metadata::PartitionAssignment`] does not archive).
//!
//! ```text
//! [archive of the snapshot][archive of Vec<StoredReassignment>][section bytes: u64 LE][TRAILER_MAGIC]
//! ```
//!
//! Invariant: a snapshot without reassignments encodes exactly as before, and old bytes decode
//! as before. Old bytes end with the archived root, whose last field is `producer_ids_end`
//! (an i64, little-endian); [`TRAILER_MAGIC`] read as one is above 3.5·10^18, an end of
//! producer ids no cluster reaches (blocks are at most 2^20 ids), so old bytes never look
//! like bytes with a section.

use crate::cluster::metadata::MetadataSnapshot;

/// The last bytes of a snapshot that has a reassignment section.
const TRAILER_MAGIC: [u8; 8] = *b"SLCREAS1";

/// Bytes after the section: its length and the magic.
const TRAILER_BYTES: usize = 16;

/// One reassigning partition's lists, as the trailing section stores them.
#[derive(Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct StoredReassignment {
    topic: String,
    partition: i32,
    adding: Vec<i32>,
    removing: Vec<i32>,
}

fn to_bytes<T>(value: &T) -> Vec<u8>
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<
            rkyv::util::AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rkyv::rancor::Error,
        >,
    >,
{
    rkyv::to_bytes::<rkyv::rancor::Error>(value)
        .expect("serializing to memory")
        .into_vec()
}

/// A snapshot's replicated part as bytes (see the module documentation).
pub fn encode_snapshot(snapshot: &MetadataSnapshot) -> Vec<u8> {
    let mut bytes = to_bytes(snapshot);
    let reassignments: Vec<StoredReassignment> = (snapshot.topics.values())
        .flat_map(|topic| {
            let partitions = (0..topic.partitions).zip(topic.assignments());
            partitions
                .filter(|(_, assignment)| assignment.is_reassigning())
                .map(|(partition, assignment)| StoredReassignment {
                    topic: topic.name.clone(),
                    partition,
                    adding: assignment.adding.clone(),
                    removing: assignment.removing.clone(),
                })
        })
        .collect();
    if reassignments.is_empty() {
        return bytes;
    }
    let section = to_bytes(&reassignments);
    bytes.extend_from_slice(&section);
    bytes.extend_from_slice(&(section.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&TRAILER_MAGIC);
    bytes
}

/// Decodes [`encode_snapshot`]'s bytes, and those written before reassignments existed.
pub fn decode_snapshot(bytes: &[u8]) -> Result<MetadataSnapshot, rkyv::rancor::Error> {
    let Some((archive, section)) = split_section(bytes) else {
        return from_aligned::<MetadataSnapshot>(bytes);
    };
    let mut snapshot = from_aligned::<MetadataSnapshot>(archive)?;
    for stored in from_aligned::<Vec<StoredReassignment>>(section)? {
        let assignment = (snapshot.topics.get_mut(&stored.topic))
            .and_then(|topic| topic.assignment_mut(stored.partition))
            .ok_or_else(|| invalid(format!("a reassignment of {stored:?}, no partition")))?;
        assignment.adding = stored.adding;
        assignment.removing = stored.removing;
    }
    // The lists are checked with the rest, as every decoded topic is.
    for topic in snapshot.topics.values() {
        topic.check().map_err(invalid)?;
    }
    Ok(snapshot)
}

/// (archive, section) of bytes that end with a reassignment section.
fn split_section(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (rest, trailer) = bytes.split_at_checked(bytes.len().checked_sub(TRAILER_BYTES)?)?;
    let (length, magic) = trailer.split_at(8);
    if magic != TRAILER_MAGIC {
        return None;
    }
    let length = u64::from_le_bytes(length.try_into().expect("8 bytes"));
    let start = (rest.len() as u64).checked_sub(length)?;
    Some(rest.split_at(start as usize))
}

fn from_aligned<T>(bytes: &[u8]) -> Result<T, rkyv::rancor::Error>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    // Bytes arrive at any alignment; rkyv reads archives from aligned memory.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    rkyv::from_bytes::<T, rkyv::rancor::Error>(&aligned)
}

fn invalid(message: String) -> rkyv::rancor::Error {
    <rkyv::rancor::Error as rkyv::rancor::Source>::new(InvalidSection(message))
}

/// A reassignment section that does not fit the snapshot before it.
#[derive(Debug)]
struct InvalidSection(String);

impl std::fmt::Display for InvalidSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid reassignment section: {}", self.0)
    }
}

impl std::error::Error for InvalidSection {}

#[cfg(test)]
#[path = "snapshot_codec_tests.rs"]
mod tests;
