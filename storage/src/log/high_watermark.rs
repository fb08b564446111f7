//! The high watermark: the offset below which records are committed and may be served to
//! consumers. It is its own value, separate from the log end offset, because a follower's log
//! holds records the leader has not committed yet. On one node the broker advances it to the log
//! end right after each append, so the two stay equal there.
//!
//! **Invariant:** `log_start_offset <= high_watermark <= log_end_offset`, and it never moves
//! back (retention and DeleteRecords can only pull it up to the new log start), except when
//! `truncate_to` cuts the log below it.

use super::{LogInner, PartitionLog};
use crate::StorageError;
use bytes::Bytes;

impl PartitionLog {
    pub fn high_watermark(&self) -> i64 {
        self.inner.high_watermark.get()
    }

    /// Moves the high watermark up to `offset` (no-op if it is already there or past it) and
    /// wakes [`PartitionLog::wait_for_append`] waiters when it moves. `offset` may not pass the
    /// log end: only published records can be committed.
    pub fn advance_high_watermark(&self, offset: i64) {
        let inner = &self.inner;
        assert!(
            offset <= inner.log_end_offset.get(),
            "high watermark {offset} past the log end {}",
            inner.log_end_offset.get()
        );
        if offset > inner.high_watermark.get() {
            inner.high_watermark.set(offset);
            inner.appended.notify_all();
        }
        inner.assert_high_watermark_bounds();
    }

    /// [`PartitionLog::read`] for consumers: only whole batches below the high watermark. Empty
    /// at or above it (up to the log end); `OffsetOutOfRange` outside
    /// `[log_start_offset, log_end_offset]`.
    pub async fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<Bytes, StorageError> {
        let high_watermark = self.high_watermark();
        if offset >= high_watermark && offset <= self.log_end_offset() {
            return Ok(Bytes::new());
        }
        let mut bytes = self.read(offset, max_bytes).await?;
        let committed = committed_prefix_bytes(&bytes, high_watermark);
        bytes.truncate(committed);
        Ok(bytes)
    }
}

impl LogInner {
    /// After the log start moved: a high watermark below it rises to it.
    pub(super) fn raise_high_watermark_to_log_start(&self) {
        let log_start_offset = self.log_start_offset.get();
        if self.high_watermark.get() < log_start_offset {
            self.high_watermark.set(log_start_offset);
            self.appended.notify_all();
        }
        self.assert_high_watermark_bounds();
    }

    fn assert_high_watermark_bounds(&self) {
        let high_watermark = self.high_watermark.get();
        assert!(self.log_start_offset.get() <= high_watermark);
        assert!(high_watermark <= self.log_end_offset.get());
    }
}

/// Bytes of the whole batches at the start of `bytes` (stored batches, as `read` returns them)
/// that begin below `high_watermark`. A batch straddling it is kept whole: the high watermark
/// only ever stops at a batch boundary, since it advances to an append's end.
fn committed_prefix_bytes(bytes: &[u8], high_watermark: i64) -> usize {
    let mut position = 0;
    while position < bytes.len() {
        let header = record_batch::BatchHeader::parse(&bytes[position..])
            .expect("reads return whole stored batches");
        if header.base_offset >= high_watermark {
            break;
        }
        position += header.total_bytes();
    }
    position
}
