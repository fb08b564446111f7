//! Reads: fetches (from the tail cache or a segment) and timestamp lookups.

use std::rc::Rc;

use bytes::Bytes;

use super::{LogInner, PartitionLog};
use crate::segment::Segment;
use crate::StorageError;

impl PartitionLog {
    /// Whole batches starting with the one holding `offset`, at most `max_bytes` (capped at
    /// [`crate::READ_BYTES_MAX`]) in total unless
    /// the first batch alone is larger: then exactly that batch (KIP-74). May stop early at a
    /// segment end. Empty at `offset == log_end_offset`; `OffsetOutOfRange` outside
    /// `[log_start_offset, log_end_offset]`. The bytes are the stored batches, unchanged.
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<Bytes, StorageError> {
        let log_start_offset = self.log_start_offset();
        let log_end_offset = self.log_end_offset();
        if offset < log_start_offset || offset > log_end_offset {
            return Err(self.out_of_range(offset));
        }
        if offset == log_end_offset {
            return Ok(Bytes::new());
        }
        let key = self.inner.tail_cache_key;
        let cached = self
            .inner
            .context
            .tail_cache()
            .read(key, offset, max_bytes, log_end_offset);
        if let Some(bytes) = cached {
            return Ok(bytes);
        }
        let segment = self.inner.segment_holding(offset);
        let result = segment.read(offset, max_bytes).await;
        if result.is_err() && offset < self.log_start_offset() {
            // Retention or DeleteRecords took the segment while the read waited: its file may
            // have been unlinked before the read reopened it. The offset is gone, as for a read
            // that came a moment later; the failure says nothing about the disk.
            return Err(self.out_of_range(offset));
        }
        self.inner.read_failures.observe(&self.inner.dir, &result);
        for fence in segment.take_unreported_fences() {
            self.inner.corruption.observe(&segment.path, &fence);
        }
        result
    }

    fn out_of_range(&self, offset: i64) -> StorageError {
        StorageError::OffsetOutOfRange {
            offset,
            log_start_offset: self.log_start_offset(),
            log_end_offset: self.log_end_offset(),
        }
    }

    /// Kafka ListOffsets by timestamp: the earliest offset whose record timestamp is at least
    /// `timestamp_ms`, with that timestamp, or `None` if there is none. Batches are decoded to find
    /// the exact record, compressed ones decompressed (bounded, streamed); LogAppendTime batches
    /// answer with their baseOffset and maxTimestamp, since every record carries that timestamp.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        let segments: Vec<Rc<Segment>> = self.inner.segments.borrow().clone();
        for segment in segments {
            let max_timestamp = segment.max_timestamp();
            if max_timestamp.is_none_or(|max| max < timestamp_ms) {
                continue;
            }
            if segment.next_offset() <= self.log_start_offset() {
                continue;
            }
            let found = segment.offset_for_timestamp(timestamp_ms).await;
            if found.is_err() && segment.next_offset() <= self.log_start_offset() {
                // Retention took the segment during the lookup (see `read`): the answer lies
                // in the segments that remain.
                continue;
            }
            for fence in segment.take_unreported_fences() {
                self.inner.corruption.observe(&segment.path, &fence);
            }
            if let Some((offset, timestamp)) = found? {
                // Records below the log start are deleted; the first one that is not answers.
                return Ok(Some((offset.max(self.log_start_offset()), timestamp)));
            }
        }
        Ok(None)
    }

    /// Kafka ListOffsets MAX_TIMESTAMP (KIP-734): the first record holding the log's largest
    /// timestamp, as `(offset, timestamp)`, or `None` for an empty log. The largest timestamp
    /// comes from the segments' index summaries; the earliest record at or after it is the
    /// first one holding it, since none is larger.
    pub async fn offset_for_max_timestamp(&self) -> Result<Option<(i64, i64)>, StorageError> {
        let log_start = self.log_start_offset();
        let max_timestamp = self
            .inner
            .segments
            .borrow()
            .iter()
            .filter(|segment| segment.next_offset() > log_start)
            .filter_map(|segment| segment.max_timestamp())
            .max();
        match max_timestamp {
            Some(max_timestamp) => self.offset_for_timestamp(max_timestamp).await,
            None => Ok(None),
        }
    }
}

impl LogInner {
    pub(super) fn segment_holding(&self, offset: i64) -> Rc<Segment> {
        let segments = self.segments.borrow();
        let after = segments.partition_point(|segment| segment.base_offset <= offset);
        let segment = Rc::clone(&segments[after.checked_sub(1).expect("offset below log start")]);
        assert!(offset < segment.next_offset());
        segment
    }
}
