//! The bench's RecordBatch: a valid v2 batch of an exact size, built by the `record_batch`
//! encoder (storage's validator checks every byte of it like any produced batch).

use anyhow::{bail, Result};
use bytes::Bytes;
use storage::{ValidatedBatches, BATCH_HEADER_BYTES};

/// Room for at least one small record after the batch header.
const BATCH_RECORD_BYTES_MIN: usize = 16;
/// Record counts tried below the estimate before giving up.
const RECORD_COUNT_RETRIES_MAX: usize = 64;
/// Rounds of resizing the last record before giving up; a varint length can shift the total
/// by a byte, so two or three rounds always settle.
const RESIZE_ROUNDS_MAX: usize = 8;

/// One batch of exactly `batch_bytes` bytes: records of `record_bytes` value bytes, the last one
/// sized to fill the batch.
pub fn encode_batch(batch_bytes: usize, record_bytes: usize) -> Result<ValidatedBatches> {
    let batch_bytes_range = BATCH_HEADER_BYTES + BATCH_RECORD_BYTES_MIN..=storage::BATCH_BYTES_MAX;
    if !batch_bytes_range.contains(&batch_bytes) {
        bail!("--batch-bytes is {batch_bytes_range:?}");
    }
    if record_bytes == 0 || record_bytes >= batch_bytes {
        bail!("--record-bytes is 1..{batch_bytes}");
    }
    // A record adds its value and about 8 bytes of framing; with small records the estimate can
    // be a few records too many, and then the last record has no room left: try one fewer.
    let estimate = ((batch_bytes - BATCH_HEADER_BYTES) / (record_bytes + 8)).max(1);
    for record_count in (estimate.saturating_sub(RECORD_COUNT_RETRIES_MAX).max(1)..=estimate).rev()
    {
        if let Some(batch) = fill_exactly(batch_bytes, record_count, record_bytes)? {
            return Ok(ValidatedBatches::validate(batch)?);
        }
    }
    bail!("no batch of exactly {batch_bytes} bytes with records of {record_bytes} bytes")
}

/// `record_count` records of `record_bytes`, the last one resized until the batch is exactly
/// `batch_bytes`; `None` if the other records leave the last one no room.
fn fill_exactly(
    batch_bytes: usize,
    record_count: usize,
    record_bytes: usize,
) -> Result<Option<Bytes>> {
    let mut last_value_bytes = record_bytes;
    for _ in 0..RESIZE_ROUNDS_MAX {
        let bytes = encode(record_count, record_bytes, last_value_bytes)?;
        if bytes.len() == batch_bytes {
            return Ok(Some(bytes));
        }
        let resized = last_value_bytes as i64 + batch_bytes as i64 - bytes.len() as i64;
        if resized < 0 {
            return Ok(None);
        }
        last_value_bytes = resized as usize;
    }
    Ok(None)
}

fn encode(record_count: usize, record_bytes: usize, last_value_bytes: usize) -> Result<Bytes> {
    let timestamp_ms = 1_700_000_000_000;
    let mut records = Vec::new();
    for index in 0..record_count {
        let value_bytes = if index + 1 == record_count {
            last_value_bytes
        } else {
            record_bytes
        };
        let value = vec![(index % 251) as u8; value_bytes];
        record_batch::encode_record(&mut records, index as i32, 0, None, Some(&value), &[]);
    }
    let fields = record_batch::BatchFields::plain(timestamp_ms);
    Ok(record_batch::encode_batch(
        &fields,
        record_count as i32,
        &records,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_have_the_exact_size_and_validate() {
        for (batch_bytes, record_bytes) in [(64 * 1024, 1024), (65_536, 100), (4096, 1000)] {
            let batch = encode_batch(batch_bytes, record_bytes).unwrap();
            assert_eq!(batch.len_bytes(), batch_bytes);
            assert_eq!(batch.batch_count(), 1);
            // Every record but the last has record_bytes of value and some framing.
            let records_max = (batch_bytes - BATCH_HEADER_BYTES) / record_bytes;
            assert!((1..=records_max as i64).contains(&batch.record_count()));
        }
        // The bench's default: 1 KiB records fill a 64 KiB batch with 63 records.
        assert_eq!(encode_batch(64 * 1024, 1024).unwrap().record_count(), 63);
    }

    #[test]
    fn impossible_sizes_are_refused() {
        assert!(encode_batch(10, 1).is_err());
        assert!(encode_batch(4096, 4096).is_err());
        assert!(encode_batch(storage::BATCH_BYTES_MAX + 1, 1024).is_err());
    }
}
