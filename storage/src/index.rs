//! The in-memory sparse index of the active segment: offset → file position, with the largest
//! batch timestamp of each indexed interval for timestamp lookups. Derived data: extended on
//! append, persisted by `index_file` when the segment is sealed or the log closes, and rebuilt
//! from the segment file when that copy is missing or stale.

/// One index entry: the batch starting at `position` has base offset `offset`; `max_timestamp` is
/// the largest `maxTimestamp` of the batches from this entry up to (not including) the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub offset: i64,
    pub position: u64,
    pub max_timestamp: i64,
}

#[derive(Debug)]
pub(crate) struct SparseIndex {
    base_offset: i64,
    entries: Vec<IndexEntry>,
    interval_bytes: u64,
    bytes_since_entry: u64,
    next_offset: i64,
    end_position: u64,
}

impl SparseIndex {
    pub fn new(base_offset: i64, interval_bytes: u64) -> SparseIndex {
        assert!(interval_bytes > 0);
        SparseIndex {
            base_offset,
            entries: Vec::new(),
            interval_bytes,
            bytes_since_entry: 0,
            next_offset: base_offset,
            end_position: 0,
        }
    }

    /// The index a scan of a segment `end_position` bytes long ending at `next_offset` would have
    /// built, from its persisted `entries` (checked by the caller to be ordered and in range).
    pub fn restore(
        base_offset: i64,
        interval_bytes: u64,
        entries: Vec<IndexEntry>,
        next_offset: i64,
        end_position: u64,
    ) -> SparseIndex {
        assert!(interval_bytes > 0);
        assert_eq!(entries.is_empty(), end_position == 0);
        assert_eq!(entries.is_empty(), next_offset == base_offset);
        let bytes_since_entry = entries
            .last()
            .map_or(0, |last| end_position - last.position);
        SparseIndex {
            base_offset,
            entries,
            interval_bytes,
            bytes_since_entry,
            next_offset,
            end_position,
        }
    }

    pub fn base_offset(&self) -> i64 {
        self.base_offset
    }

    pub fn interval_bytes(&self) -> u64 {
        self.interval_bytes
    }

    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Bytes of memory the entries take.
    pub fn memory_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<IndexEntry>()
    }

    /// Records the next batch of the segment. Batches must be observed in file order, each
    /// starting where the previous one ended, with dense offsets.
    pub fn observe(
        &mut self,
        base_offset: i64,
        position: u64,
        bytes: u64,
        offset_count: i64,
        max_timestamp: i64,
    ) {
        assert_eq!(base_offset, self.next_offset, "offsets must be dense");
        assert_eq!(position, self.end_position, "batches must be contiguous");
        assert!(offset_count > 0 && bytes > 0);
        match self.entries.last_mut() {
            Some(last) if self.bytes_since_entry < self.interval_bytes => {
                last.max_timestamp = last.max_timestamp.max(max_timestamp);
            }
            _ => {
                self.entries.push(IndexEntry {
                    offset: base_offset,
                    position,
                    max_timestamp,
                });
                self.bytes_since_entry = 0;
            }
        }
        self.bytes_since_entry += bytes;
        self.next_offset = base_offset + offset_count;
        self.end_position = position + bytes;
    }

    /// Index of the last entry whose offset is at most `offset`; the batch holding `offset` lies
    /// at or after that entry's position and before the next entry's.
    pub fn floor(&self, offset: i64) -> Option<usize> {
        let after = self.entries.partition_point(|entry| entry.offset <= offset);
        after.checked_sub(1)
    }

    pub fn entry(&self, index: usize) -> Option<IndexEntry> {
        self.entries.get(index).copied()
    }

    pub fn max_timestamp(&self) -> Option<i64> {
        self.entries.iter().map(|entry| entry.max_timestamp).max()
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub fn end_position(&self) -> u64 {
        self.end_position
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_every_interval_and_floor_lookup() {
        let mut index = SparseIndex::new(100, 250);
        // Ten batches of 100 bytes and 2 offsets each: entries at 0, 300, 600, 900 bytes.
        for batch in 0..10u64 {
            let timestamp = if batch == 4 { 50 } else { batch as i64 };
            index.observe(100 + 2 * batch as i64, batch * 100, 100, 2, timestamp);
        }
        let positions: Vec<u64> = index.entries.iter().map(|entry| entry.position).collect();
        assert_eq!(positions, vec![0, 300, 600, 900]);
        assert_eq!(index.entries[1].max_timestamp, 50);
        assert_eq!(index.floor(99), None);
        assert_eq!(index.floor(100), Some(0));
        assert_eq!(index.floor(105), Some(0));
        assert_eq!(index.floor(106), Some(1));
        assert_eq!(index.floor(1000), Some(3));
        assert_eq!(index.next_offset(), 120);
        assert_eq!(index.end_position(), 1000);
        assert_eq!(index.max_timestamp(), Some(50));
    }
}
