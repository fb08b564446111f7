//! Fences: byte ranges of a segment whose batches fail their checks (bit rot, a foreign writer)
//! while valid batches follow them. A fence takes the offsets `[offset, next_offset)` out of
//! service; reads of them fail with `StorageError::CorruptRange`, reads before and after them
//! work, and nothing is truncated. The pure search for where the valid batches resume lives here;
//! recovery and `segment` read the bytes it looks at.

use crate::batch::{self, BatchHeader, BATCH_BYTES_MAX, BATCH_HEADER_BYTES};

/// Most bytes after the start of a bad batch searched for the next valid one: the bad batch was
/// at most `BATCH_BYTES_MAX` long when it was written, so the batch after it starts within this,
/// whatever its damaged length field says. Bounds the memory and time one corruption costs.
pub(crate) const RESUME_SEARCH_BYTES_MAX: usize = BATCH_BYTES_MAX + BATCH_HEADER_BYTES;

/// Bytes of the blocks a direct write lands whole or not at all: a block of zeros inside a batch
/// at the end of the active segment is a write that did not land (a torn tail), not corruption.
const TORN_BLOCK_BYTES: usize = 512;

/// The index entry a fence is recorded with (`maxTimestamp` -1, Kafka's "no timestamp"), so
/// timestamp lookups and retention never pick it.
pub(crate) const FENCE_MAX_TIMESTAMP: i64 = -1;

/// A damaged range of one segment: bytes `[position, end_position)` should hold the offsets
/// `[offset, next_offset)`, and the batch at `end_position` (or the segment end) is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fence {
    pub position: u64,
    pub end_position: u64,
    pub offset: i64,
    pub next_offset: i64,
}

impl Fence {
    pub fn new(position: u64, offset: i64, resume: Resume) -> Fence {
        assert!(resume.position > 0 && resume.offset > offset);
        Fence {
            position,
            end_position: position + resume.position as u64,
            offset,
            next_offset: resume.offset,
        }
    }

    pub fn bytes(&self) -> u64 {
        self.end_position - self.position
    }

    pub fn holds_offset(&self, offset: i64) -> bool {
        (self.offset..self.next_offset).contains(&offset)
    }
}

/// Where valid batches start again, relative to the start of the bad batch, with their offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resume {
    pub position: usize,
    pub offset: i64,
}

/// How the bytes after the searched region are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RegionEnd {
    /// A batch boundary known from elsewhere (an index entry, the segment end and the next
    /// segment's base offset) at the region's end.
    pub anchor: Option<Resume>,
    /// Zeros after a candidate end the valid batches (the active segment's preallocated tail).
    pub zeros_end_batches: bool,
}

/// Whether the bad batch at the start of `region` (of the active segment, found at recovery) is
/// a write that did not land: its header, or a whole block that starts inside it, holds only
/// zeros. The block may reach past the batch's end: a torn write whose last block did not land
/// leaves the batch's tail and the rest of that block zero, and valid batches never follow a
/// gap of zeros, so only a torn write explains it. `position` is the region's position in the
/// file, for block alignment.
pub(crate) fn looks_unwritten(region: &[u8], position: u64) -> bool {
    let header_len = region.len().min(BATCH_HEADER_BYTES);
    if region[..header_len].iter().all(|byte| *byte == 0) {
        return true;
    }
    let Ok(header) = BatchHeader::parse(region) else {
        return false;
    };
    let batch_end = header.total_bytes().min(region.len());
    let first_block =
        (TORN_BLOCK_BYTES - (position as usize % TORN_BLOCK_BYTES)) % TORN_BLOCK_BYTES;
    (first_block..batch_end)
        .step_by(TORN_BLOCK_BYTES)
        .take_while(|start| start + TORN_BLOCK_BYTES <= region.len())
        .any(|start| {
            region[start..start + TORN_BLOCK_BYTES]
                .iter()
                .all(|byte| *byte == 0)
        })
}

/// The first place after the bad batch at the start of `region` (expected to hold
/// `expected_offset`) where valid batches resume: a batch that passes every check, has a larger
/// base offset, and is followed by a batch that continues it, by the anchor, or (if
/// `zeros_end_batches`) by zeros only. Failing that, the anchor. `None` if neither exists.
pub(crate) fn find_resume(region: &[u8], expected_offset: i64, end: RegionEnd) -> Option<Resume> {
    let last_candidate = region.len().saturating_sub(BATCH_HEADER_BYTES);
    (1..=last_candidate)
        .find_map(|position| resume_at(region, position, expected_offset, end))
        .or(end.anchor)
}

fn resume_at(
    region: &[u8],
    position: usize,
    expected_offset: i64,
    end: RegionEnd,
) -> Option<Resume> {
    // The cheap header checks first: most positions fail on the magic byte or the length.
    let header = BatchHeader::parse(&region[position..]).ok()?;
    if header.base_offset <= expected_offset
        || header
            .base_offset
            .checked_add(header.offset_count())
            .is_none()
    {
        return None;
    }
    if let Some(anchor) = end.anchor {
        if header.next_offset() > anchor.offset {
            return None;
        }
    }
    let checked = batch::check_batch(&region[position..]).ok()?;
    let after = position + checked.total_bytes();
    let followed = match end.anchor {
        Some(anchor) if anchor.position == after => anchor.offset == checked.next_offset(),
        _ => continues(
            &region[after..],
            checked.next_offset(),
            end.zeros_end_batches,
        ),
    };
    followed.then_some(Resume {
        position,
        offset: header.base_offset,
    })
}

/// Whether `rest` (the bytes after a candidate batch) starts with the batch at `next_offset`,
/// checked whole if it is there whole, or (with `zeros_end_batches`) holds only zeros.
fn continues(rest: &[u8], next_offset: i64, zeros_end_batches: bool) -> bool {
    if zeros_end_batches && rest.iter().all(|byte| *byte == 0) {
        return true;
    }
    let Ok(header) = BatchHeader::parse(rest) else {
        return false;
    };
    if header.base_offset != next_offset {
        return false;
    }
    rest.len() < header.total_bytes() || batch::check_batch(rest).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip-flagged batch of one offset whose (opaque) records are `records_len` bytes of
    /// `fill`; storage never decompresses, so only the CRC covers them.
    fn batch(base_offset: i64, records_len: usize, fill: u8) -> Vec<u8> {
        let fields = record_batch::BatchFields {
            attributes: 1,
            ..record_batch::BatchFields::plain(0)
        };
        let mut bytes = record_batch::encode_batch(&fields, 1, &vec![fill; records_len]).to_vec();
        record_batch::set_base_offset(&mut bytes, base_offset);
        record_batch::set_partition_leader_epoch(&mut bytes, 0);
        bytes
    }

    fn resume(position: usize, offset: i64) -> Resume {
        Resume { position, offset }
    }

    fn open_end() -> RegionEnd {
        RegionEnd {
            anchor: None,
            zeros_end_batches: true,
        }
    }

    #[test]
    fn resumes_at_the_batch_after_a_flipped_byte_or_a_damaged_length() {
        let (first, second, third) = (batch(10, 300, 7), batch(11, 200, 8), batch(12, 100, 9));
        let mut region = [first.clone(), second.clone(), third].concat();
        region[100] ^= 0x40;
        let found = find_resume(&region, 10, open_end()).unwrap();
        assert_eq!(found, resume(first.len(), 11));
        // A damaged length field is not covered by the CRC: the search does not trust it.
        let mut region = [first.clone(), second.clone()].concat();
        region[9] ^= 0x01;
        let found = find_resume(&region, 10, open_end()).unwrap();
        assert_eq!(found, resume(first.len(), 11));
        // The last batch before zeros: resumed only where zeros end the batches.
        let mut region = [first.clone(), second.clone(), vec![0; 700]].concat();
        region[100] ^= 0x40;
        assert_eq!(
            find_resume(&region, 10, open_end()).unwrap().position,
            first.len()
        );
        let sealed = RegionEnd {
            anchor: None,
            zeros_end_batches: false,
        };
        assert_eq!(find_resume(&region, 10, sealed), None);
    }

    #[test]
    fn a_batch_inside_the_bad_one_is_not_taken_unless_continued() {
        // The bad batch's value holds a whole valid batch with a later offset.
        let inner = batch(50, 40, 3);
        let mut outer = batch(10, 400, 5);
        outer[120..120 + inner.len()].copy_from_slice(&inner);
        outer[70] ^= 0x01;
        let next = batch(11, 100, 6);
        let region = [outer.clone(), next].concat();
        let found = find_resume(&region, 10, open_end()).unwrap();
        assert_eq!(found, resume(outer.len(), 11));
    }

    #[test]
    fn falls_back_to_the_anchor_and_checks_offsets_against_it() {
        let (first, second) = (batch(10, 300, 7), batch(11, 200, 8));
        let mut region = [first.clone(), second.clone()].concat();
        region[100] ^= 0x40;
        region[first.len() + 100] ^= 0x40;
        let anchor = resume(region.len(), 12);
        let end = RegionEnd {
            anchor: Some(anchor),
            zeros_end_batches: false,
        };
        assert_eq!(find_resume(&region, 10, end), Some(anchor));
        let mut region = [first.clone(), second].concat();
        region[100] ^= 0x40;
        let anchor = resume(region.len(), 12);
        let end = RegionEnd {
            anchor: Some(anchor),
            zeros_end_batches: false,
        };
        assert_eq!(find_resume(&region, 10, end), Some(resume(first.len(), 11)));
    }

    #[test]
    fn zeros_inside_a_batch_look_unwritten() {
        let whole = batch(10, 3000, 7);
        assert!(!looks_unwritten(&whole, 0));
        assert!(looks_unwritten(&[0; 100], 4096));
        let mut torn = whole.clone();
        torn[1024..2048].fill(0);
        assert!(looks_unwritten(&torn, 0));
        let mut flipped = whole;
        flipped[1500] ^= 0x01;
        assert!(!looks_unwritten(&flipped, 0));
    }

    #[test]
    fn a_torn_last_block_reaching_past_the_batch_looks_unwritten() {
        // A 456-byte batch 47 bytes before a block boundary (as a pipeline seed left it): its
        // first block landed, the block holding the rest of it did not.
        let whole = batch(87, 456 - 61, 7);
        assert_eq!(whole.len(), 456);
        let position = 41_937;
        let boundary = TORN_BLOCK_BYTES - position % TORN_BLOCK_BYTES;
        let mut region = [whole.clone(), vec![0; 1000]].concat();
        region[boundary..whole.len()].fill(0);
        assert!(looks_unwritten(&region, position as u64));
        // Not when anything of that block landed after the batch (a batch that follows).
        region[whole.len() + 10] = 1;
        assert!(!looks_unwritten(&region, position as u64));
        // Nor when the region ends before the block does: it cannot be seen whole.
        let short = [&whole[..boundary], &vec![0; whole.len() - boundary][..]].concat();
        assert!(!looks_unwritten(&short, position as u64));
    }
}
