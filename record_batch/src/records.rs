//! The records inside a RecordBatch v2: record-level validation of produced batches and the
//! bounded, streaming decompression it and timestamp lookups share.
//!
//! A record (Kafka's `DefaultRecord`), all varints zigzag-encoded:
//!
//! | field          | type          | rule checked here                                   |
//! |----------------|---------------|-----------------------------------------------------|
//! | length         | varint        | >= [`RECORD_BODY_BYTES_MIN`]; the fields fill it exactly |
//! | attributes     | i8            | unused                                              |
//! | timestampDelta | varlong       | added to the batch's baseTimestamp                  |
//! | offsetDelta    | varint        | record `i` of the batch has offsetDelta `i`         |
//! | keyLength      | varint        | >= -1 (-1 is a null key)                            |
//! | key            | bytes         | inside the record                                   |
//! | valueLength    | varint        | >= -1                                               |
//! | value          | bytes         | inside the record                                   |
//! | headerCount    | varint        | >= 0                                                |
//! | headers        | per header: keyLength varint >= 0, key, valueLength varint >= -1, value |
//!
//! Compressed batches are read through the codec's streaming decoder and a buffer of
//! [`DECOMPRESS_BUFFER_BYTES`]; decoding stops as soon as the decompressed records pass the
//! caller's bound, so a small "bomb" never inflates into memory. Validation only reads: the
//! batch is stored as produced, except that a LogAppendTime topic gets the broker's timestamp
//! (attributes bit 3 and maxTimestamp, then the CRC).

use std::io::{self, BufRead, BufReader, Read};

use crate::{records_of, BatchError, BatchHeader, ATTRIBUTE_COMPRESSION_MASK};

/// Buffer between a streaming decompressor and the record parser. Small, because the parser
/// only ever needs a few bytes at a time; it is the whole per-batch memory cost of gzip, zstd
/// and lz4 besides the codec's own window.
pub const DECOMPRESS_BUFFER_BYTES: usize = 16 << 10;

/// Largest zstd window (log2) a produced batch may use: 8 MiB. zstd's decoder allocates the
/// window the frame header asks for, so without this bound a 30-byte frame could make us
/// allocate 2 GiB. Producers compress batches of at most a few MiB at low levels, whose windows
/// are at most 2^21 bytes; level 19 uses 2^23.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;

/// Bound on the decompressed records of a stored compressed batch that a timestamp lookup
/// decodes. Produce already refused batches decompressing past their topic's
/// `max.message.bytes`; this only keeps a lookup over data stored before that check (or under a
/// larger limit) from running unbounded.
pub const LOOKUP_DECOMPRESSED_BYTES_MAX: usize = 64 << 20;

/// The smallest record body: attributes, timestampDelta, offsetDelta, keyLength, valueLength and
/// headerCount, one byte each.
pub const RECORD_BODY_BYTES_MIN: i64 = 6;

/// Kafka's snappy framing (snappy-java's `SnappyOutputStream`): this magic, a version and a
/// compatible version (4 bytes each), then blocks of `[length: u32 BE][raw snappy block]`.
/// librdkafka sends plain raw snappy instead; both are read.
const SNAPPY_XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const SNAPPY_XERIAL_HEADER_BYTES: usize = 16;

/// The compression codec of a batch: attributes bits 0-2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Codec {
    pub const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];

    pub fn of_attributes(attributes: i16) -> Result<Codec, BatchError> {
        match attributes & ATTRIBUTE_COMPRESSION_MASK {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Gzip),
            2 => Ok(Codec::Snappy),
            3 => Ok(Codec::Lz4),
            4 => Ok(Codec::Zstd),
            id => Err(BatchError::UnknownCodec(id)),
        }
    }
}

/// What a topic and a request require of produced records.
#[derive(Debug, Clone, Copy)]
pub struct RecordPolicy {
    /// Bound on the records of one batch once decompressed: the topic's `max.message.bytes`.
    pub decompressed_bytes_max: usize,
    /// zstd batches need Produce v7 or later, as in Kafka.
    pub zstd_allowed: bool,
    /// The topic's `cleanup.policy` includes `compact`: every record needs a key.
    pub key_required: bool,
    /// The topic's `message.timestamp.type` is LogAppendTime: the broker's time to stamp.
    pub log_append_time_ms: Option<i64>,
    /// CreateTime topics with a bounded window: the record timestamps accepted.
    pub create_time_window: Option<TimestampWindow>,
}

/// The record timestamps a CreateTime topic accepts, as Kafka's `LogValidator` checks them
/// (KIP-937): `[now_ms - before_max_ms, now_ms + after_max_ms]`, from the topic's
/// `message.timestamp.before.max.ms` and `message.timestamp.after.max.ms`. A record without a
/// timestamp (-1) is always accepted.
#[derive(Debug, Clone, Copy)]
pub struct TimestampWindow {
    pub now_ms: i64,
    pub before_max_ms: i64,
    pub after_max_ms: i64,
}

/// A record's timestamp when its producer gave none (Kafka's `RecordBatch.NO_TIMESTAMP`).
const NO_TIMESTAMP: i64 = -1;

impl TimestampWindow {
    /// Whether `timestamp_ms` lies inside the window; exact for every i64 (no overflow).
    pub fn holds(&self, timestamp_ms: i64) -> bool {
        let behind = i128::from(self.now_ms) - i128::from(timestamp_ms);
        timestamp_ms == NO_TIMESTAMP
            || (behind <= i128::from(self.before_max_ms)
                && -behind <= i128::from(self.after_max_ms))
    }

    fn low_ms(&self) -> i64 {
        self.now_ms.saturating_sub(self.before_max_ms)
    }

    fn high_ms(&self) -> i64 {
        self.now_ms.saturating_add(self.after_max_ms)
    }
}

/// One record's fields that callers look at; `fields` only when the walk captures them.
#[derive(Debug, Clone)]
struct RecordInfo {
    index: i32,
    timestamp_delta: i64,
    has_key: bool,
    fields: Option<RecordFields>,
}

/// A record's key, value and headers (name, value), each `None` where it is null.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct RecordFields {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// One record of a batch, decoded whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// Header names and values, in the record's order (names may repeat).
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Every record of a whole batch whose integrity was checked ([`crate::check_integrity`]),
/// decoded through its codec by the rules of the module table, with at most
/// `decompressed_bytes_max` bytes of decompressed records. What a consumer reads; the records
/// of a control batch are decoded like any other (the caller decides to skip them).
pub fn decode_records(
    batch: &[u8],
    header: &BatchHeader,
    decompressed_bytes_max: usize,
) -> Result<Vec<DecodedRecord>, BatchError> {
    // No capacity from recordCount: it is read from the wire.
    let mut records = Vec::new();
    let walk = Walk {
        decompressed_bytes_max,
        capture: true,
    };
    walk_records(batch, header, walk, &mut |record| {
        let fields = record.fields.expect("a capturing walk gives the fields");
        records.push(DecodedRecord {
            offset: header.base_offset.wrapping_add(i64::from(record.index)),
            timestamp_ms: header.base_timestamp.wrapping_add(record.timestamp_delta),
            key: fields.key,
            value: fields.value,
            headers: fields.headers,
        });
        true
    })?;
    Ok(records)
}

/// How a walk reads the records: its bound on decompressed bytes, and whether it copies each
/// record's key, value and headers out (only a consumer's decode does).
#[derive(Debug, Clone, Copy)]
struct Walk {
    decompressed_bytes_max: usize,
    capture: bool,
}

impl Walk {
    fn check(decompressed_bytes_max: usize) -> Walk {
        Walk {
            decompressed_bytes_max,
            capture: false,
        }
    }
}

/// Checks one produced batch (header and CRC already checked) record by record.
pub fn check_produced_batch(batch: &[u8], policy: &RecordPolicy) -> Result<(), BatchError> {
    let header = BatchHeader::parse(batch)?;
    let codec = Codec::of_attributes(header.attributes)?;
    if codec == Codec::Zstd && !policy.zstd_allowed {
        return Err(BatchError::ZstdNeedsProduceV7);
    }
    if header.is_control() {
        return Err(BatchError::ControlBatchFromClient);
    }
    if header.is_log_append_time() {
        return Err(BatchError::LogAppendTimeFromClient);
    }
    // `validate` already walked an uncompressed batch's records (`check_batch`); walk them again
    // only for what the topic asks of each record.
    if !header.is_compressed() && !policy.key_required && policy.create_time_window.is_none() {
        return Ok(());
    }
    let mut keyless = Vec::new();
    let mut out_of_window = Vec::new();
    walk_records(
        batch,
        &header,
        Walk::check(policy.decompressed_bytes_max),
        &mut |record| {
            // One error per record, the key's first, as Kafka's `validateRecord`.
            if policy.key_required && !record.has_key {
                keyless.push(record.index);
            } else if let Some(window) = &policy.create_time_window {
                let timestamp = header.base_timestamp.wrapping_add(record.timestamp_delta);
                if !window.holds(timestamp) {
                    out_of_window.push((record.index, timestamp));
                }
            }
            true
        },
    )?;
    // As in Kafka, any timestamp error makes the batch's error INVALID_TIMESTAMP.
    if let Some(window) = policy
        .create_time_window
        .filter(|_| !out_of_window.is_empty())
    {
        return Err(BatchError::TimestampOutOfRange {
            records: out_of_window,
            low_ms: window.low_ms(),
            high_ms: window.high_ms(),
        });
    }
    if !keyless.is_empty() {
        return Err(BatchError::KeylessRecordsInCompactedTopic(keyless));
    }
    Ok(())
}

/// Checks every record of a whole uncompressed batch by the rules of the module table. The one
/// record walk that produce, fence searches and recovery share (through `batch::check_batch`), so that
/// recovery never accepts a batch produce would refuse.
pub fn check_uncompressed_records(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    assert!(!header.is_compressed());
    walk_records(batch, header, Walk::check(batch.len()), &mut |_| true)
}

/// The first record of a whole, checked batch whose timestamp is at least `timestamp_ms`, as
/// `(offset, timestamp)`, decoding at most [`LOOKUP_DECOMPRESSED_BYTES_MAX`] of a compressed one.
pub fn first_record_at_or_after(
    batch: &[u8],
    header: &BatchHeader,
    timestamp_ms: i64,
) -> Result<Option<(i64, i64)>, BatchError> {
    let mut found = None;
    walk_records(
        batch,
        header,
        Walk::check(LOOKUP_DECOMPRESSED_BYTES_MAX),
        &mut |record| {
            let record_timestamp = header.base_timestamp.wrapping_add(record.timestamp_delta);
            if record_timestamp >= timestamp_ms {
                found = Some((
                    header.base_offset + i64::from(record.index),
                    record_timestamp,
                ));
                return false;
            }
            true
        },
    )?;
    Ok(found)
}

/// Decodes the records of a whole batch through its codec, calling `visit` for each until it
/// returns false. Checks every rule in the module table, that exactly `recordCount` records
/// fill the (decompressed) records, and that they decompress to at most `decompressed_bytes_max`.
fn walk_records(
    batch: &[u8],
    header: &BatchHeader,
    walk: Walk,
    visit: &mut dyn FnMut(RecordInfo) -> bool,
) -> Result<(), BatchError> {
    let decompressed_bytes_max = walk.decompressed_bytes_max;
    let payload = records_of(batch, header);
    // `take` stops the decoder one byte past the bound, so a bomb costs no more than the bound.
    let limit = decompressed_bytes_max as u64 + 1;
    match Codec::of_attributes(header.attributes)? {
        Codec::None => {
            let walk = Walk {
                decompressed_bytes_max: payload.len(),
                ..walk
            };
            walk_stream(payload, header, walk, visit)
        }
        Codec::Gzip => {
            let decoder = flate2::bufread::GzDecoder::new(payload).take(limit);
            walk_stream(buffered(decoder), header, walk, visit)
        }
        Codec::Snappy => {
            let decoder = SnappyReader::new(payload, decompressed_bytes_max).take(limit);
            walk_stream(buffered(decoder), header, walk, visit)
        }
        Codec::Lz4 => {
            let decoder = lz4::Decoder::new(payload).map_err(|e| decompress_error(&e))?;
            walk_stream(buffered(decoder.take(limit)), header, walk, visit)
        }
        Codec::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(payload)
                .map_err(|e| decompress_error(&e))?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| decompress_error(&e))?;
            walk_stream(buffered(decoder.take(limit)), header, walk, visit)
        }
    }
}

fn walk_stream(
    reader: impl BufRead,
    header: &BatchHeader,
    walk: Walk,
    visit: &mut dyn FnMut(RecordInfo) -> bool,
) -> Result<(), BatchError> {
    let mut source = RecordSource {
        reader,
        consumed: 0,
        record_end: u64::MAX,
        bytes_max: walk.decompressed_bytes_max as u64,
    };
    for index in 0..header.record_count {
        let record = read_record(&mut source, index, walk.capture)?;
        if !visit(record) {
            return Ok(());
        }
    }
    if !source.at_end()? {
        return Err(BatchError::BadRecords("bytes after the last record"));
    }
    Ok(())
}

fn buffered<'a>(decoder: impl Read + 'a) -> impl BufRead + 'a {
    BufReader::with_capacity(DECOMPRESS_BUFFER_BYTES, decoder)
}

/// Reads record `index`, checking its framing and its offsetDelta.
fn read_record(
    source: &mut RecordSource<impl BufRead>,
    index: i32,
    capture: bool,
) -> Result<RecordInfo, BatchError> {
    let length = source.varint()?;
    if length < RECORD_BODY_BYTES_MIN {
        return Err(BatchError::BadRecords("record length out of range"));
    }
    source.record_end = source.consumed + length as u64;
    source.skip(1)?; // attributes
    let timestamp_delta = source.varlong()?;
    if source.varint()? != i64::from(index) {
        return Err(BatchError::OffsetDeltaNotConsecutive { index });
    }
    let mut fields = capture.then(RecordFields::default);
    let key_length = source.varint()?;
    let key = source.bytes_field(key_length, "key length", capture)?;
    let value_length = source.varint()?;
    let value = source.bytes_field(value_length, "value length", capture)?;
    if let Some(fields) = &mut fields {
        (fields.key, fields.value) = (key, value);
    }
    let header_count = source.varint()?;
    if header_count < 0 {
        return Err(BatchError::BadRecords("negative header count"));
    }
    for _ in 0..header_count {
        let header_key_length = source.varint()?;
        if header_key_length < 0 {
            return Err(BatchError::BadRecords("null header key"));
        }
        let name = source.bytes_field(header_key_length, "header key length", capture)?;
        let header_value_length = source.varint()?;
        let value = source.bytes_field(header_value_length, "header value length", capture)?;
        if let Some(fields) = &mut fields {
            fields.headers.push((name.unwrap_or_default(), value));
        }
    }
    if source.consumed != source.record_end {
        return Err(BatchError::BadRecords(
            "record length does not match its fields",
        ));
    }
    source.record_end = u64::MAX;
    Ok(RecordInfo {
        index,
        timestamp_delta,
        has_key: key_length >= 0,
        fields,
    })
}

/// A byte stream of records with a position, the end of the record being read (no field may
/// cross it) and the decompressed-size bound.
struct RecordSource<R: BufRead> {
    reader: R,
    consumed: u64,
    record_end: u64,
    bytes_max: u64,
}

impl<R: BufRead> RecordSource<R> {
    fn byte(&mut self) -> Result<u8, BatchError> {
        if self.consumed >= self.record_end {
            return Err(BatchError::BadRecords("field crosses the record's end"));
        }
        let available = self.reader.fill_buf().map_err(|e| decompress_error(&e))?;
        let Some(&byte) = available.first() else {
            return Err(self.end_of_stream());
        };
        self.reader.consume(1);
        self.consumed += 1;
        Ok(byte)
    }

    /// Skips `count` bytes of the current record.
    fn skip(&mut self, count: u64) -> Result<(), BatchError> {
        if count > self.record_end - self.consumed {
            return Err(BatchError::BadRecords("field crosses the record's end"));
        }
        let mut remaining = count;
        while remaining > 0 {
            let available = self
                .reader
                .fill_buf()
                .map_err(|e| decompress_error(&e))?
                .len();
            if available == 0 {
                return Err(self.end_of_stream());
            }
            let step = remaining.min(available as u64);
            self.reader.consume(step as usize);
            self.consumed += step;
            remaining -= step;
        }
        Ok(())
    }

    /// Skips a key, value or header field of `length` bytes (-1: null), or with `capture`
    /// reads it (`None` when null, and always without `capture`).
    fn bytes_field(
        &mut self,
        length: i64,
        what: &'static str,
        capture: bool,
    ) -> Result<Option<Vec<u8>>, BatchError> {
        if length < -1 {
            return Err(BatchError::BadRecords(what));
        }
        if !capture || length == -1 {
            self.skip(length.max(0) as u64)?;
            return Ok(None);
        }
        self.read(length as u64).map(Some)
    }

    /// Reads `count` bytes of the current record. The buffer grows with the bytes that
    /// arrive, never by `count` up front: `count` comes from the data.
    fn read(&mut self, count: u64) -> Result<Vec<u8>, BatchError> {
        if count > self.record_end - self.consumed {
            return Err(BatchError::BadRecords("field crosses the record's end"));
        }
        let mut out = Vec::new();
        while (out.len() as u64) < count {
            let available = self.reader.fill_buf().map_err(|e| decompress_error(&e))?;
            if available.is_empty() {
                return Err(self.end_of_stream());
            }
            let step = (count - out.len() as u64).min(available.len() as u64) as usize;
            out.extend_from_slice(&available[..step]);
            self.reader.consume(step);
            self.consumed += step as u64;
        }
        Ok(out)
    }

    fn end_of_stream(&self) -> BatchError {
        if self.consumed > self.bytes_max {
            BatchError::DecompressedTooLarge {
                limit: self.bytes_max as usize,
            }
        } else {
            BatchError::BadRecords("records end early")
        }
    }

    fn at_end(&mut self) -> Result<bool, BatchError> {
        let available = self.reader.fill_buf().map_err(|e| decompress_error(&e))?;
        if self.consumed > self.bytes_max {
            return Err(self.end_of_stream());
        }
        Ok(available.is_empty())
    }

    /// A zigzag varint of at most 5 bytes whose value fits 32 bits.
    fn varint(&mut self) -> Result<i64, BatchError> {
        let raw = self.unsigned_varint(5)?;
        if raw > u64::from(u32::MAX) {
            return Err(BatchError::BadRecords("varint overflows 32 bits"));
        }
        Ok(zigzag(raw))
    }

    /// A zigzag varlong of at most 10 bytes whose value fits 64 bits.
    fn varlong(&mut self) -> Result<i64, BatchError> {
        self.unsigned_varint(10).map(zigzag)
    }

    fn unsigned_varint(&mut self, bytes_max: u32) -> Result<u64, BatchError> {
        let mut value = 0u64;
        for index in 0..bytes_max {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if index == 9 && bits > 1 {
                return Err(BatchError::BadRecords("varlong overflows 64 bits"));
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(BatchError::BadRecords("varint too long"))
    }
}

fn zigzag(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

/// The typed error a decompressor's I/O error stands for.
fn decompress_error(error: &io::Error) -> BatchError {
    let too_large = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<DeclaredTooLarge>());
    match too_large {
        Some(declared) => BatchError::DecompressedTooLarge {
            limit: declared.limit,
        },
        None => BatchError::BadCompressedData,
    }
}

/// A snappy block that says it decompresses past the bound; refused before allocating.
#[derive(Debug)]
struct DeclaredTooLarge {
    limit: usize,
}

impl std::fmt::Display for DeclaredTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "snappy block decompresses past {} bytes", self.limit)
    }
}

impl std::error::Error for DeclaredTooLarge {}

/// Streams raw or xerial-framed snappy one block at a time. A block's decompressed length is in
/// its first bytes, so a block larger than the bound is refused before anything is allocated.
struct SnappyReader<'a> {
    /// Blocks not yet decoded: xerial `[length][block]...`, or the one raw block.
    input: &'a [u8],
    framed: bool,
    block: Vec<u8>,
    block_position: usize,
    block_bytes_max: usize,
}

impl<'a> SnappyReader<'a> {
    fn new(payload: &'a [u8], block_bytes_max: usize) -> SnappyReader<'a> {
        let framed =
            payload.len() >= SNAPPY_XERIAL_HEADER_BYTES && payload.starts_with(SNAPPY_XERIAL_MAGIC);
        let input = if framed {
            &payload[SNAPPY_XERIAL_HEADER_BYTES..]
        } else {
            payload
        };
        SnappyReader {
            input,
            framed,
            block: Vec::new(),
            block_position: 0,
            block_bytes_max,
        }
    }

    /// Decodes the next block into `self.block`; false at the end of the input.
    fn next_block(&mut self) -> io::Result<bool> {
        if self.input.is_empty() {
            return Ok(false);
        }
        let compressed = if self.framed {
            let invalid = || io::Error::new(io::ErrorKind::InvalidData, "truncated snappy block");
            let length_bytes = self.input.get(..4).ok_or_else(invalid)?;
            let length = u32::from_be_bytes(length_bytes.try_into().unwrap()) as usize;
            let block = self.input.get(4..4 + length).ok_or_else(invalid)?;
            self.input = &self.input[4 + length..];
            block
        } else {
            std::mem::take(&mut self.input)
        };
        let decompressed_bytes = snap::raw::decompress_len(compressed).map_err(io::Error::other)?;
        if decompressed_bytes > self.block_bytes_max {
            let limit = self.block_bytes_max;
            return Err(io::Error::other(DeclaredTooLarge { limit }));
        }
        self.block.resize(decompressed_bytes, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut self.block)
            .map_err(io::Error::other)?;
        self.block_position = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.block_position == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let count = out.len().min(self.block.len() - self.block_position);
        out[..count].copy_from_slice(&self.block[self.block_position..self.block_position + count]);
        self.block_position += count;
        Ok(count)
    }
}

/// Snappy blocks of the xerial framing hold at most this many uncompressed bytes (snappy-java's
/// default block size).
const SNAPPY_XERIAL_BLOCK_BYTES: usize = 32 << 10;

/// Compresses a records section with `codec` as the Java client and kafka-protocol do: gzip at
/// the default level, snappy in xerial framing (version 1, compatible 1, 32 KiB blocks), lz4
/// frames of independent blocks at level 4, zstd at level 3. The client encodes produced batches
/// with it; the bytes are kafka-protocol's, byte for byte (a client test checks every codec).
pub fn compress(codec: Codec, records: &[u8]) -> io::Result<Vec<u8>> {
    use std::io::Write;
    match codec {
        Codec::None => Ok(records.to_vec()),
        Codec::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(records)?;
            encoder.finish()
        }
        Codec::Snappy => {
            let mut out = Vec::with_capacity(SNAPPY_XERIAL_HEADER_BYTES + records.len());
            out.extend_from_slice(SNAPPY_XERIAL_MAGIC);
            out.extend_from_slice(&1u32.to_be_bytes()); // version
            out.extend_from_slice(&1u32.to_be_bytes()); // compatible version
            let mut encoder = snap::raw::Encoder::new();
            for chunk in records.chunks(SNAPPY_XERIAL_BLOCK_BYTES) {
                let block = encoder.compress_vec(chunk).map_err(io::Error::other)?;
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            Ok(out)
        }
        Codec::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .level(4)
                .block_mode(lz4::BlockMode::Independent)
                .build(Vec::new())?;
            encoder.write_all(records)?;
            let (out, result) = encoder.finish();
            result.map(|()| out)
        }
        Codec::Zstd => zstd::stream::encode_all(records, 3),
    }
}
