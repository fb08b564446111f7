//! Record-level validation of produced batches (`ValidatedBatches::validate_produced`): each
//! rule on its own, then a seeded mutation fuzzer over batches of every codec, checked against an
//! independent reference decoder. More fuzz cases: `STORAGE_RECORDS_FUZZ_CASES=N`; replay one:
//! `STORAGE_RECORDS_FUZZ_SEED=S`.

mod common;

use std::io::Read;

use bytes::Bytes;
use common::*;
use storage::records::{RecordPolicy, TimestampWindow};
use storage::{BatchError, ValidatedBatches};

const POLICY: RecordPolicy = RecordPolicy {
    decompressed_bytes_max: 1 << 20,
    zstd_allowed: true,
    key_required: false,
    log_append_time_ms: None,
    create_time_window: None,
};

/// One record to encode, fields as raw integers so that tests can make them wrong.
#[derive(Clone, Debug)]
struct Fields {
    timestamp_delta: i64,
    offset_delta: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

fn fields(offset_delta: i64) -> Fields {
    Fields {
        timestamp_delta: offset_delta * 10,
        offset_delta,
        key: Some(format!("key-{offset_delta}").into_bytes()),
        value: Some(vec![b'v'; 20 + offset_delta as usize]),
        headers: vec![(b"h".to_vec(), Some(b"x".to_vec()))],
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &Option<Vec<u8>>) {
    match bytes {
        Some(bytes) => {
            put_varint(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
        None => put_varint(out, -1),
    }
}

fn record_body(record: &Fields) -> Vec<u8> {
    let mut body = vec![0u8];
    put_varint(&mut body, record.timestamp_delta);
    put_varint(&mut body, record.offset_delta);
    put_bytes(&mut body, &record.key);
    put_bytes(&mut body, &record.value);
    put_varint(&mut body, record.headers.len() as i64);
    for (key, value) in &record.headers {
        put_bytes(&mut body, &Some(key.clone()));
        put_bytes(&mut body, value);
    }
    body
}

/// A length-prefixed record around `body`.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_varint(&mut out, body.len() as i64);
    out.extend_from_slice(body);
    out
}

fn records_section(records: &[Fields]) -> Vec<u8> {
    records
        .iter()
        .flat_map(|r| framed(&record_body(r)))
        .collect()
}

/// A batch of `record_count` records claimed in the header around the given records section.
fn batch(codec: Codec, record_count: i32, section: &[u8]) -> Bytes {
    Bytes::from(build_batch(
        codec as i16,
        record_count - 1,
        1_000,
        1_000 + 10 * i64::from(record_count),
        record_count,
        &compress(codec, section).expect("compressing in memory"),
    ))
}

fn good_batch(codec: Codec, count: i64) -> Bytes {
    let records: Vec<Fields> = (0..count).map(fields).collect();
    batch(codec, count as i32, &records_section(&records))
}

fn check(bytes: Bytes) -> Result<ValidatedBatches, BatchError> {
    ValidatedBatches::validate_produced(bytes, &POLICY)
}

fn bad_records(reason: &str) -> Result<(), BatchError> {
    Err(BatchError::BadRecords(Box::leak(
        reason.to_string().into_boxed_str(),
    )))
}

fn verdict(bytes: Bytes) -> Result<(), BatchError> {
    check(bytes).map(|_| ())
}

#[test]
fn well_formed_batches_of_every_codec_pass_untouched() {
    for codec in Codec::ALL {
        let bytes = good_batch(codec, 7);
        let validated = check(bytes.clone()).unwrap();
        assert_eq!(validated.bytes(), &bytes, "{codec:?}");
    }
    let mut nulls = fields(0);
    nulls.key = None;
    nulls.value = None;
    nulls.headers = vec![(Vec::new(), None)];
    assert!(check(batch(Codec::None, 1, &records_section(&[nulls]))).is_ok());
}

#[test]
fn malformed_record_fields_are_refused() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("key length -5", raw_body(0, -5, &[]), "key length"),
        (
            "value length 2^30",
            raw_body_value(1 << 30),
            "field crosses the record's end",
        ),
        (
            "header count -4",
            raw_body_headers(-4, &[]),
            "negative header count",
        ),
        (
            "null header key",
            raw_body_headers(1, &[0x01, 0x00]),
            "null header key",
        ),
        (
            "header key past the end",
            raw_body_headers(1, &[0x7e]),
            "field crosses the record's end",
        ),
        ("bad value length", raw_body_value(-3), "value length"),
    ];
    for (name, body, reason) in cases {
        assert_eq!(
            verdict(batch(Codec::None, 1, &framed(&body))),
            bad_records(reason),
            "{name}"
        );
    }
}

/// A record body with offsetDelta 0, the given key length and key bytes, an empty value and no
/// headers.
fn raw_body(offset_delta: i64, key_length: i64, key: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8];
    put_varint(&mut body, 0);
    put_varint(&mut body, offset_delta);
    put_varint(&mut body, key_length);
    body.extend_from_slice(key);
    put_varint(&mut body, 0);
    put_varint(&mut body, 0);
    body
}

fn raw_body_value(value_length: i64) -> Vec<u8> {
    let mut body = vec![0u8, 0, 0, 0];
    put_varint(&mut body, value_length);
    body.extend_from_slice(b"abc");
    put_varint(&mut body, 0);
    body
}

fn raw_body_headers(header_count: i64, headers: &[u8]) -> Vec<u8> {
    let mut body = vec![0u8, 0, 0, 0, 0];
    put_varint(&mut body, header_count);
    body.extend_from_slice(headers);
    body
}

#[test]
fn framing_errors_are_refused() {
    // Compressed, so that the record walk of `ValidatedBatches::validate` (uncompressed batches
    // only) does not answer first.
    let good = records_section(&[fields(0), fields(1)]);
    let truncated = &good[..good.len() - 3];
    assert!(matches!(
        verdict(batch(Codec::None, 2, truncated)),
        Err(BatchError::BadRecords(_))
    ));
    assert_eq!(
        verdict(batch(Codec::Lz4, 2, truncated)),
        bad_records("records end early")
    );
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 0]);
    assert_eq!(
        verdict(batch(Codec::Lz4, 2, &trailing)),
        bad_records("bytes after the last record")
    );
    let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    assert_eq!(
        verdict(batch(Codec::Lz4, 1, &overflow)),
        bad_records("varint too long")
    );
    let overflow_32 = [0xff, 0xff, 0xff, 0xff, 0x7f];
    assert_eq!(
        verdict(batch(Codec::Lz4, 1, &overflow_32)),
        bad_records("varint overflows 32 bits")
    );
    let mut short = Vec::new();
    put_varint(&mut short, 3);
    short.extend_from_slice(&[0, 0, 0]);
    assert_eq!(
        verdict(batch(Codec::Lz4, 1, &short)),
        bad_records("record length out of range")
    );
    // The record claims more bytes than its fields use.
    let mut body = record_body(&fields(0));
    body.push(0);
    assert_eq!(
        verdict(batch(Codec::Lz4, 1, &framed(&body))),
        bad_records("record length does not match its fields")
    );
}

#[test]
fn offsets_and_counts_must_agree() {
    let gap = records_section(&[fields(0), fields(2)]);
    assert_eq!(
        verdict(batch(Codec::Lz4, 2, &gap)),
        Err(BatchError::OffsetDeltaNotConsecutive { index: 1 })
    );
    // One record claiming lastOffsetDelta 2^31-1 would move the log end by 2^31 offsets.
    let one = records_section(&[fields(0)]);
    let huge_delta = build_batch(0, i32::MAX, 1_000, 1_000, 1, &one);
    assert_eq!(
        verdict(Bytes::from(huge_delta)),
        Err(BatchError::RecordCountMismatch {
            record_count: 1,
            last_offset_delta: i32::MAX
        })
    );
    let fewer = build_batch(0, 1, 1_000, 1_000, 1, &one);
    assert!(matches!(
        verdict(Bytes::from(fewer)),
        Err(BatchError::RecordCountMismatch { .. })
    ));
}

#[test]
fn attributes_are_checked() {
    let section = records_section(&[fields(0)]);
    for codec_id in [5i16, 6, 7] {
        let bytes = build_batch(codec_id, 0, 1_000, 1_000, 1, &section);
        assert_eq!(
            verdict(Bytes::from(bytes)),
            Err(BatchError::UnknownCodec(codec_id))
        );
    }
    let control = build_batch(0x20, 0, 1_000, 1_000, 1, &section);
    assert_eq!(
        verdict(Bytes::from(control)),
        Err(BatchError::ControlBatchFromClient)
    );
    let log_append_time = build_batch(0x08, 0, 1_000, 1_000, 1, &section);
    assert_eq!(
        verdict(Bytes::from(log_append_time)),
        Err(BatchError::LogAppendTimeFromClient)
    );
    let old_request = RecordPolicy {
        zstd_allowed: false,
        ..POLICY
    };
    assert_eq!(
        ValidatedBatches::validate_produced(good_batch(Codec::Zstd, 2), &old_request).unwrap_err(),
        BatchError::ZstdNeedsProduceV7
    );
}

#[test]
fn garbage_compressed_payloads_are_refused() {
    let garbage = b"this is not compressed at all, not in any codec".repeat(3);
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let bytes = build_batch(codec as i16, 0, 1_000, 1_000, 1, &garbage);
        let error = verdict(Bytes::from(bytes)).unwrap_err();
        assert!(
            matches!(
                error,
                BatchError::BadCompressedData | BatchError::BadRecords(_)
            ),
            "{codec:?}: {error:?}"
        );
    }
}

#[test]
fn decompression_stops_at_the_bound() {
    // One record whose value is 16 MiB of zeros: a few KiB compressed in every codec.
    let mut body = vec![0u8, 0, 0, 1]; // null key
    let value_bytes = 16usize << 20;
    put_varint(&mut body, value_bytes as i64);
    body.resize(body.len() + value_bytes, 0);
    body.push(0);
    let section = framed(&body);
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let bytes = batch(codec, 1, &section);
        assert!(bytes.len() < value_bytes / 16, "{codec:?} is not a bomb");
        assert_eq!(
            verdict(bytes.clone()),
            Err(BatchError::DecompressedTooLarge {
                limit: POLICY.decompressed_bytes_max
            }),
            "{codec:?}"
        );
        let roomy = RecordPolicy {
            decompressed_bytes_max: 32 << 20,
            ..POLICY
        };
        let roomy_verdict = ValidatedBatches::validate_produced(bytes, &roomy).map(|_| ());
        assert_eq!(roomy_verdict, Ok(()), "{codec:?}");
    }
}

#[test]
fn compacted_topics_refuse_records_without_a_key() {
    let mut records: Vec<Fields> = (0..5).map(fields).collect();
    records[1].key = None;
    records[4].key = None;
    let compacted = RecordPolicy {
        key_required: true,
        ..POLICY
    };
    for codec in [Codec::None, Codec::Zstd] {
        let bytes = batch(codec, 5, &records_section(&records));
        assert_eq!(
            ValidatedBatches::validate_produced(bytes.clone(), &compacted).unwrap_err(),
            BatchError::KeylessRecordsInCompactedTopic(vec![1, 4])
        );
        assert!(check(bytes).is_ok());
    }
}

#[test]
fn log_append_time_stamps_the_batch_and_keeps_the_records() {
    let policy = RecordPolicy {
        log_append_time_ms: Some(1_700_000_000_000),
        ..POLICY
    };
    for codec in [Codec::None, Codec::Lz4] {
        let produced = good_batch(codec, 3);
        let stamped = ValidatedBatches::validate_produced(produced.clone(), &policy).unwrap();
        let stored = stamped.bytes();
        assert_eq!(stored.len(), produced.len());
        let header = record_batch::BatchHeader::parse(stored).unwrap();
        assert_eq!(header.attributes, codec as i16 | 0x08);
        assert_eq!(header.max_timestamp, 1_700_000_000_000);
        let records = record_batch::BATCH_HEADER_BYTES..;
        assert_eq!(
            stored[records.clone()],
            produced[records],
            "records as produced"
        );
        // The CRC was recomputed: the stamped batch validates on its own.
        assert!(ValidatedBatches::validate(stored.clone()).is_ok());
    }
}

// ---- Fuzzer ----

const FUZZ_CASES_DEFAULT: u64 = 5_000;
const FUZZ_CASES_VARIABLE: &str = "STORAGE_RECORDS_FUZZ_CASES";
const FUZZ_SEED_VARIABLE: &str = "STORAGE_RECORDS_FUZZ_SEED";

#[test]
fn mutated_batches_never_panic_and_only_well_formed_ones_pass() {
    let cases = std::env::var(FUZZ_CASES_VARIABLE)
        .map(|cases| cases.parse().expect("a case count"))
        .unwrap_or(FUZZ_CASES_DEFAULT);
    let mut accepted = 0u64;
    for seed in model_seeds(FUZZ_SEED_VARIABLE, cases) {
        let _reporter = SeedReporter::start(seed, FUZZ_SEED_VARIABLE);
        accepted += u64::from(fuzz_case(seed));
    }
    // The mutations must leave some batches valid, or the "accepts" half tests nothing.
    assert!(cases < 100 || accepted > 0, "no mutated batch was accepted");
}

/// One case: a random valid batch, mutated in its records (then compressed), in its compressed
/// payload or in its header, with a correct CRC. Returns whether the validator accepted it.
fn fuzz_case(seed: u64) -> bool {
    let mut rng = Rng::new(seed);
    let codec = Codec::ALL[rng.range(0, 5) as usize];
    let count = rng.range(1, 6) as i64;
    let records: Vec<Fields> = (0..count)
        .map(|delta| random_fields(&mut rng, delta))
        .collect();
    let mut section = records_section(&records);
    let mut record_count = count as i32;
    let mut attributes = codec as i16;
    let mut payload = None;
    match rng.range(0, 3) {
        0 => mutate(&mut rng, &mut section),
        1 => {
            let mut compressed = compress(codec, &section).expect("compressing in memory");
            mutate(&mut rng, &mut compressed);
            payload = Some(compressed);
        }
        _ => match rng.range(0, 3) {
            0 => record_count = rng.range(0, 8) as i32,
            1 => attributes ^= 1 << rng.range(0, 6),
            _ => attributes = rng.range(0, 8) as i16,
        },
    }
    let payload =
        payload.unwrap_or_else(|| compress(codec, &section).expect("compressing in memory"));
    let last_offset_delta = count as i32 - 1;
    let bytes = build_batch(
        attributes,
        last_offset_delta,
        1_000,
        2_000,
        record_count,
        &payload,
    );
    let verdict = check(Bytes::from(bytes.clone()));
    let expected = reference_accepts(attributes, last_offset_delta, record_count, &payload);
    assert_eq!(
        verdict.is_ok(),
        expected,
        "validator says {verdict:?}, the reference decoder says {expected}"
    );
    expected
}

fn random_fields(rng: &mut Rng, offset_delta: i64) -> Fields {
    let bytes = |rng: &mut Rng, chance: u64| {
        (!rng.chance(chance)).then(|| vec![rng.range(0, 256) as u8; rng.range(0, 40) as usize])
    };
    Fields {
        timestamp_delta: rng.range(0, 1 << 40) as i64 - (1 << 39),
        offset_delta,
        key: bytes(rng, 20),
        value: bytes(rng, 10),
        headers: (0..rng.range(0, 3))
            .map(|_| (vec![b'k'; rng.range(0, 5) as usize], bytes(rng, 30)))
            .collect(),
    }
}

/// Flips, overwrites, inserts or removes a few bytes.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.range(1, 4) {
        if bytes.is_empty() {
            bytes.push(rng.range(0, 256) as u8);
            continue;
        }
        let at = rng.range(0, bytes.len() as u64) as usize;
        match rng.range(0, 5) {
            0 => bytes[at] ^= 1 << rng.range(0, 8),
            1 => bytes[at] = rng.range(0, 256) as u8,
            2 => bytes.insert(at, rng.range(0, 256) as u8),
            3 => {
                bytes.remove(at);
            }
            _ => bytes.truncate(at),
        }
    }
}

/// An independent, whole-buffer decoder: does the batch follow every rule?
fn reference_accepts(attributes: i16, last_offset_delta: i32, count: i32, payload: &[u8]) -> bool {
    if attributes & 0x7 > 4 || attributes & 0x28 != 0 {
        return false;
    }
    if i64::from(count) != i64::from(last_offset_delta) + 1 {
        return false;
    }
    let Some(section) = reference_decompress(attributes & 0x7, payload) else {
        return false;
    };
    let mut at = 0usize;
    for index in 0..count {
        match reference_record(&section[at..], i64::from(index)) {
            Some(used) => at += used,
            None => return false,
        }
    }
    at == section.len()
}

/// The records section, decompressed whole (at most the policy's bound).
fn reference_decompress(codec: i16, payload: &[u8]) -> Option<Vec<u8>> {
    let bound = POLICY.decompressed_bytes_max as u64 + 1;
    let mut out = Vec::new();
    let read = match codec {
        0 => return Some(payload.to_vec()),
        1 => flate2::read::GzDecoder::new(payload)
            .take(bound)
            .read_to_end(&mut out),
        2 => return reference_snappy(payload),
        3 => lz4::Decoder::new(payload).and_then(|d| d.take(bound).read_to_end(&mut out)),
        _ => zstd::stream::read::Decoder::new(payload).and_then(|mut decoder| {
            // The broker's bound on zstd windows (8 MiB), part of the rules.
            decoder.window_log_max(23)?;
            decoder.take(bound).read_to_end(&mut out)
        }),
    };
    (read.is_ok() && out.len() < bound as usize).then_some(out)
}

fn reference_snappy(payload: &[u8]) -> Option<Vec<u8>> {
    let magic = b"\x82SNAPPY\x00";
    let block = |compressed: &[u8]| {
        let length = snap::raw::decompress_len(compressed).ok()?;
        if length > POLICY.decompressed_bytes_max {
            return None;
        }
        snap::raw::Decoder::new().decompress_vec(compressed).ok()
    };
    if payload.len() < 16 || &payload[..8] != magic {
        return block(payload);
    }
    let mut rest = &payload[16..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let length = u32::from_be_bytes(rest.get(..4)?.try_into().unwrap()) as usize;
        rest.get(4..4 + length)?;
        out.extend(block(&rest[4..4 + length])?);
        rest = &rest[4 + length..];
    }
    Some(out)
}

/// Parses one record at the start of `bytes`; the bytes it used, if it follows every rule.
fn reference_record(bytes: &[u8], index: i64) -> Option<usize> {
    let mut at = 0usize;
    let length = reference_varint(bytes, &mut at, 5)?;
    if length < 6 || length as usize > bytes.len() - at {
        return None;
    }
    let record = &bytes[at..at + length as usize];
    let mut field = 1usize;
    reference_varint(record, &mut field, 10)?;
    if reference_varint(record, &mut field, 5)? != index {
        return None;
    }
    let skip = |field: &mut usize, allow_null: bool| -> Option<()> {
        let length = reference_varint(record, field, 5)?;
        if length < -1 || (length == -1 && !allow_null) {
            return None;
        }
        *field = field.checked_add(length.max(0) as usize)?;
        (*field <= record.len()).then_some(())
    };
    skip(&mut field, true)?;
    skip(&mut field, true)?;
    let headers = reference_varint(record, &mut field, 5)?;
    if headers < 0 {
        return None;
    }
    for _ in 0..headers {
        skip(&mut field, false)?;
        skip(&mut field, true)?;
    }
    (field == record.len()).then_some(at + length as usize)
}

fn reference_varint(bytes: &[u8], at: &mut usize, bytes_max: usize) -> Option<i64> {
    let mut value: u128 = 0;
    for index in 0..bytes_max {
        let byte = *bytes.get(*at)?;
        *at += 1;
        value |= u128::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            let fits = if bytes_max == 5 {
                u128::from(u32::MAX)
            } else {
                u128::from(u64::MAX)
            };
            if value > fits {
                return None;
            }
            let value = value as u64;
            return Some(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    None
}

#[test]
fn the_timestamp_window_is_inclusive_exempts_no_timestamp_and_never_overflows() {
    let window = TimestampWindow {
        now_ms: 10_000,
        before_max_ms: 1_000,
        after_max_ms: 100,
    };
    assert!(window.holds(9_000) && window.holds(10_100) && window.holds(10_000));
    assert!(!window.holds(8_999) && !window.holds(10_101));
    assert!(
        window.holds(-1),
        "a record without a timestamp is not checked"
    );
    assert!(!window.holds(i64::MIN) && !window.holds(i64::MAX));
    let unbounded_past = TimestampWindow {
        before_max_ms: i64::MAX,
        ..window
    };
    assert!(unbounded_past.holds(10_000 - i64::MAX) && !unbounded_past.holds(i64::MAX));
}
