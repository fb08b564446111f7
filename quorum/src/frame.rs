//! The byte layout of the Raft log file, as pure functions.
//!
//! | bytes | field                                             |
//! |-------|---------------------------------------------------|
//! | 4     | payload length, u32 little endian (≤ ENTRY_BYTES_MAX) |
//! | 4     | CRC32C of the payload, u32 little endian           |
//! | n     | payload: a prost-encoded raft `Entry`              |

use prost::Message as _;
use raft::prelude::Entry;

pub const FRAME_HEADER_BYTES: usize = 8;

/// The largest encoded entry a log file may hold: a whole Raft message may carry one entry, so
/// the transport's limit bounds it too.
pub const ENTRY_BYTES_MAX: usize = crate::transport::MESSAGE_BYTES_MAX;

/// Appends the frame of `entry` to `out`. Panics if the entry is over `ENTRY_BYTES_MAX`: the
/// driver only persists entries that came through the proposal or message limits.
pub fn encode_entry(entry: &Entry, out: &mut Vec<u8>) {
    let payload = entry.encode_to_vec();
    assert!(
        payload.len() <= ENTRY_BYTES_MAX,
        "entry of {} bytes",
        payload.len()
    );
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

/// Why decoding stopped before the end of the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailProblem {
    /// The last frame is cut short (a write that did not finish).
    Torn,
    /// A length over the limit, a CRC mismatch or a payload that is not an Entry.
    Corrupt(&'static str),
}

/// The entries decoded from a log file's bytes, each with the offset its frame starts at, and
/// `valid_bytes`: the length of the prefix of whole, CRC-checked frames.
#[derive(Debug, Default)]
pub struct Decoded {
    pub entries: Vec<Entry>,
    pub positions: Vec<u64>,
    pub valid_bytes: u64,
    pub tail: Option<TailProblem>,
}

/// Decodes frames from the start of `bytes` and stops at the first one that is not whole and
/// valid. Never panics on any input.
pub fn decode_frames(bytes: &[u8]) -> Decoded {
    let mut decoded = Decoded::default();
    let mut position = 0usize;
    while position < bytes.len() {
        match decode_one(&bytes[position..]) {
            Ok((entry, frame_bytes)) => {
                decoded.entries.push(entry);
                decoded.positions.push(position as u64);
                position += frame_bytes;
            }
            Err(problem) => {
                decoded.tail = Some(problem);
                break;
            }
        }
    }
    decoded.valid_bytes = position as u64;
    decoded
}

fn decode_one(bytes: &[u8]) -> Result<(Entry, usize), TailProblem> {
    if bytes.len() < FRAME_HEADER_BYTES {
        return Err(TailProblem::Torn);
    }
    let length = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
    if length > ENTRY_BYTES_MAX {
        return Err(TailProblem::Corrupt("frame length over the limit"));
    }
    if bytes.len() < FRAME_HEADER_BYTES + length {
        return Err(TailProblem::Torn);
    }
    let payload = &bytes[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + length];
    if crc32c::crc32c(payload) != crc {
        return Err(TailProblem::Corrupt("CRC mismatch"));
    }
    let entry =
        Entry::decode(payload).map_err(|_| TailProblem::Corrupt("payload is not an entry"))?;
    Ok((entry, FRAME_HEADER_BYTES + length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, data: &[u8]) -> Entry {
        Entry {
            index,
            term: 1,
            data: data.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn frames_round_trip_and_every_cut_is_torn_or_whole() {
        let mut bytes = Vec::new();
        for index in 1..=3 {
            encode_entry(&entry(index, b"payload"), &mut bytes);
        }
        let all = decode_frames(&bytes);
        assert_eq!(all.entries.len(), 3);
        assert_eq!(all.valid_bytes, bytes.len() as u64);
        assert_eq!(all.tail, None);
        for cut in 0..bytes.len() {
            let decoded = decode_frames(&bytes[..cut]);
            let whole = all
                .positions
                .iter()
                .skip(1)
                .chain([&(bytes.len() as u64)])
                .filter(|end| **end <= cut as u64)
                .count();
            assert_eq!(decoded.entries.len(), whole, "cut at {cut}");
            assert_eq!(decoded.tail.is_some(), decoded.valid_bytes != cut as u64);
        }
    }

    #[test]
    fn flipped_bytes_and_huge_lengths_stop_decoding() {
        let mut bytes = Vec::new();
        encode_entry(&entry(1, b"a"), &mut bytes);
        let first = bytes.len();
        encode_entry(&entry(2, b"b"), &mut bytes);
        let mut flipped = bytes.clone();
        *flipped.last_mut().expect("bytes") ^= 0xff;
        let decoded = decode_frames(&flipped);
        assert_eq!(
            (decoded.entries.len(), decoded.valid_bytes),
            (1, first as u64)
        );
        assert_eq!(decoded.tail, Some(TailProblem::Corrupt("CRC mismatch")));
        let mut huge = bytes[..first].to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 12]);
        assert_eq!(
            decode_frames(&huge).tail,
            Some(TailProblem::Corrupt("frame length over the limit"))
        );
    }
}
