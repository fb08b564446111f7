//! Wall-clock time for log append times, `segment_ms` and log rate limits.

use std::time::{SystemTime, UNIX_EPOCH};

pub(super) fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    elapsed.as_millis() as i64
}
