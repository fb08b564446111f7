//! RecordBatch v2 encoding for Produce and tolerant decoding of Fetch `records` bytes.

use bytes::Bytes;
use kafka_protocol::records::{Compression, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE};
use record_batch::records::{Codec, DecodedRecord};
use record_batch::{BatchFields, RecordHeader};

use super::error::{ClientError, Result};
use super::types::{ConsumedRecord, ProduceRecord};

/// Bytes before a batch's length field ends: baseOffset (8) + batchLength (4).
pub const BATCH_LOG_OVERHEAD_BYTES: usize = record_batch::BATCH_LENGTH_PREFIX_BYTES;
/// Size of the fixed RecordBatch v2 header (up to and including recordCount).
pub const BATCH_HEADER_BYTES: usize = record_batch::BATCH_HEADER_BYTES;
/// Records per produced batch; bounds the encoder's work and the request size per call.
pub const BATCH_RECORDS_MAX: usize = 1 << 20;
/// Bound on the decompressed records of one fetched batch: a broker refuses a produced batch
/// past its topic's `max.message.bytes` once decompressed, and no topic's limit may pass
/// `record_batch::BATCH_BYTES_MAX` (16 MiB); four times that leaves room for a broker with a
/// larger limit while a "bomb" still cannot inflate without bound.
pub const FETCHED_BATCH_DECOMPRESSED_BYTES_MAX: usize = 4 * record_batch::BATCH_BYTES_MAX;

/// The idempotence fields of a batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl BatchProducer {
    /// A batch of a producer that is not idempotent.
    pub const NONE: BatchProducer = BatchProducer {
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        base_sequence: NO_SEQUENCE,
    };
}

/// Encodes `records` as one RecordBatch v2 with offsets 0..n (the broker assigns the real base
/// offset) and no producer id (not idempotent).
pub fn encode_record_batch(records: &[ProduceRecord], compression: Compression) -> Result<Bytes> {
    encode_record_batch_as(records, compression, BatchProducer::NONE)
}

/// Encodes `records` as one RecordBatch v2 whose header carries `producer`'s id, epoch and base
/// sequence.
pub fn encode_record_batch_as(
    records: &[ProduceRecord],
    compression: Compression,
    producer: BatchProducer,
) -> Result<Bytes> {
    assert!(
        !records.is_empty(),
        "a record batch holds at least one record"
    );
    if records.len() > BATCH_RECORDS_MAX {
        return Err(ClientError::protocol(format!(
            "{} records exceed the batch limit of {BATCH_RECORDS_MAX}",
            records.len()
        )));
    }
    let codec = codec_of(compression);
    // As kafka-protocol's encoder (whose bytes these are): the batch's base timestamp is the
    // smallest record timestamp, and each record's delta is taken from it.
    let base_timestamp = records
        .iter()
        .map(|r| r.timestamp_ms)
        .min()
        .expect("not empty");
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp_ms)
        .max()
        .expect("not empty");
    let mut section = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let headers = distinct_headers(&record.headers);
        record_batch::encode_record(
            &mut section,
            index as i32,
            record.timestamp_ms.wrapping_sub(base_timestamp),
            record.key.as_deref(),
            record.value.as_deref(),
            &headers,
        );
    }
    let section = record_batch::records::compress(codec, &section)
        .map_err(|error| ClientError::protocol(format!("compressing record batch: {error}")))?;
    let fields = BatchFields {
        attributes: codec as i16,
        base_timestamp,
        max_timestamp,
        producer_id: producer.producer_id,
        producer_epoch: producer.producer_epoch,
        base_sequence: producer.base_sequence,
    };
    Ok(record_batch::encode_batch(
        &fields,
        records.len() as i32,
        &section,
    ))
}

fn codec_of(compression: Compression) -> Codec {
    match compression {
        Compression::None => Codec::None,
        Compression::Gzip => Codec::Gzip,
        Compression::Snappy => Codec::Snappy,
        Compression::Lz4 => Codec::Lz4,
        Compression::Zstd => Codec::Zstd,
    }
}

/// A record's headers with a repeated name kept once, at its first place with its last value:
/// the client has always sent headers this way (through an ordered map).
fn distinct_headers(headers: &[(String, Option<Bytes>)]) -> Vec<RecordHeader<'_>> {
    let mut distinct: Vec<RecordHeader<'_>> = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let value = value.as_deref();
        match distinct
            .iter_mut()
            .find(|header| header.key == name.as_bytes())
        {
            Some(header) => header.value = value,
            None => distinct.push(RecordHeader {
                key: name.as_bytes(),
                value,
            }),
        }
    }
    distinct
}

/// Records decoded from a Fetch partition's `records` bytes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DecodedRecords {
    pub records: Vec<ConsumedRecord>,
    /// One past the last offset of the last complete batch, if any batch was complete.
    pub next_offset: Option<i64>,
}

/// Decodes every complete batch in `bytes`, keeping records with `offset >= offset_min` that are
/// not control records. A partial batch at the end is ignored: brokers may cut the records bytes
/// at the fetch size limit. Corrupt or unsupported complete batches are errors.
pub fn decode_record_batches(mut bytes: Bytes, offset_min: i64) -> Result<DecodedRecords> {
    let mut decoded = DecodedRecords::default();
    while bytes.len() >= BATCH_LOG_OVERHEAD_BYTES {
        let batch_bytes = match record_batch::total_bytes_from_length(&bytes) {
            Some(batch_bytes) if batch_bytes >= BATCH_HEADER_BYTES => batch_bytes,
            _ => {
                return Err(ClientError::protocol(
                    "record batch length is shorter than a batch header",
                ))
            }
        };
        if bytes.len() < batch_bytes {
            break; // Truncated tail.
        }
        let batch = bytes.split_to(batch_bytes);
        let header = record_batch::check_integrity(&batch)
            .map_err(|error| ClientError::protocol(format!("record batch: {error}")))?;
        decoded.next_offset = Some(header.next_offset());
        if header.is_control() {
            continue; // Transaction markers: no records for the application.
        }
        let records = record_batch::records::decode_records(
            &batch,
            &header,
            FETCHED_BATCH_DECOMPRESSED_BYTES_MAX,
        )
        .map_err(|error| ClientError::protocol(format!("decoding record batch: {error}")))?;
        for record in records.into_iter().filter(|r| r.offset >= offset_min) {
            decoded.records.push(to_consumed_record(record)?);
        }
    }
    Ok(decoded)
}

fn to_consumed_record(record: DecodedRecord) -> Result<ConsumedRecord> {
    let headers = (record.headers.into_iter())
        .map(|(name, value)| {
            let name = String::from_utf8(name)
                .map_err(|_| ClientError::protocol("a record header name is not UTF-8"))?;
            Ok((name, value.map(Bytes::from)))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ConsumedRecord {
        offset: record.offset,
        timestamp: record.timestamp_ms,
        key: record.key.map(Bytes::from),
        value: record.value.map(Bytes::from),
        headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn record(key: Option<&'static str>, value: &'static str, timestamp_ms: i64) -> ProduceRecord {
        ProduceRecord {
            key: key.map(|key| Bytes::from_static(key.as_bytes())),
            value: Some(Bytes::from_static(value.as_bytes())),
            headers: vec![("h".into(), Some(Bytes::from_static(b"v")))],
            timestamp_ms,
        }
    }

    /// A batch as a broker would store it: the client's batch with baseOffset rewritten. The CRC
    /// does not cover baseOffset, so the batch stays valid.
    pub(crate) fn batch_at(base_offset: i64, records: &[ProduceRecord]) -> Bytes {
        let mut batch =
            BytesMut::from(&encode_record_batch(records, Compression::None).unwrap()[..]);
        record_batch::set_base_offset(&mut batch, base_offset);
        batch.freeze()
    }

    /// The batch kafka-protocol's encoder makes of `records`, as the client sent them before it
    /// encoded through `record_batch`.
    fn kafka_protocol_batch(
        records: &[ProduceRecord],
        compression: Compression,
        producer: BatchProducer,
    ) -> Bytes {
        use kafka_protocol::indexmap::IndexMap;
        use kafka_protocol::protocol::StrBytes;
        use kafka_protocol::records::{
            Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
            NO_PARTITION_LEADER_EPOCH,
        };
        let records: Vec<Record> = (records.iter().enumerate())
            .map(|(index, record)| {
                let mut headers = IndexMap::new();
                for (name, value) in &record.headers {
                    headers.insert(StrBytes::from_string(name.clone()), value.clone());
                }
                Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
                    producer_id: producer.producer_id,
                    producer_epoch: producer.producer_epoch,
                    timestamp_type: TimestampType::Creation,
                    offset: index as i64,
                    sequence: producer.base_sequence.wrapping_add(index as i32),
                    timestamp: record.timestamp_ms,
                    key: record.key.clone(),
                    value: record.value.clone(),
                    headers,
                }
            })
            .collect();
        let mut buffer = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut buffer, records.iter(), &options).unwrap();
        buffer.freeze()
    }

    #[test]
    fn batches_are_kafka_protocols_byte_for_byte_for_every_codec() {
        let value = Bytes::from(b"a record value that compresses well. ".repeat(3000));
        let mut records = vec![
            record(Some("k1"), "a", 1000),
            record(None, "b", 1005),
            record(Some("k3"), "c", 999),
            ProduceRecord {
                key: None,
                value: None,
                headers: vec![
                    ("x".into(), None),
                    ("y".into(), Some(Bytes::from_static(b"1"))),
                    ("x".into(), Some(Bytes::from_static(b"2"))),
                ],
                timestamp_ms: 1001,
            },
        ];
        records.push(ProduceRecord {
            value: Some(value),
            ..record(Some("big"), "", 1002)
        });
        let producers = [
            BatchProducer::NONE,
            BatchProducer {
                producer_id: 7,
                producer_epoch: 2,
                base_sequence: i32::MAX - 1,
            },
        ];
        let codecs = [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ];
        for compression in codecs {
            for producer in producers {
                for count in [1, records.len()] {
                    let ours =
                        encode_record_batch_as(&records[..count], compression, producer).unwrap();
                    let theirs = kafka_protocol_batch(&records[..count], compression, producer);
                    assert_eq!(
                        ours, theirs,
                        "{compression:?}, {producer:?}, {count} records"
                    );
                }
            }
        }
    }

    #[test]
    fn encoded_batch_is_one_v2_batch_without_producer_id() {
        let records = vec![
            record(Some("k1"), "a", 1000),
            record(None, "b", 1005),
            record(Some("k3"), "c", 999),
        ];
        let bytes = encode_record_batch(&records, Compression::None).unwrap();
        let infos =
            kafka_protocol::records::RecordBatchDecoder::decode_batch_info(&mut bytes.clone())
                .unwrap();
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0].record_count, 3);
        assert_eq!(infos[0].min_offset, 0);
        assert_eq!(infos[0].min_timestamp, 999);
        assert_eq!(infos[0].producer_id, -1);
        assert_eq!(infos[0].base_sequence, -1);
        assert_eq!(infos[0].compression, Compression::None);
        let decoded = decode_record_batches(bytes, 0).unwrap();
        assert_eq!(decoded.next_offset, Some(3));
        let values: Vec<_> = decoded
            .records
            .iter()
            .map(|r| r.value.clone().unwrap())
            .collect();
        assert_eq!(values, vec!["a", "b", "c"]);
        assert_eq!(decoded.records[0].key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(decoded.records[1].key, None);
        assert_eq!(decoded.records[1].timestamp, 1005);
        assert_eq!(
            decoded.records[2].headers,
            vec![("h".to_string(), Some(Bytes::from_static(b"v")))]
        );
    }

    #[test]
    fn decode_skips_records_before_offset_and_ignores_truncated_tail() {
        let first = batch_at(10, &[record(None, "a", 1), record(None, "b", 2)]);
        let second = batch_at(12, &[record(None, "c", 3)]);
        let third = batch_at(13, &[record(None, "d", 4), record(None, "e", 5)]);
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&first);
        bytes.extend_from_slice(&second);
        for cut in [0, 5, BATCH_LOG_OVERHEAD_BYTES, third.len() - 1] {
            let mut with_tail = bytes.clone();
            with_tail.extend_from_slice(&third[..cut]);
            let decoded = decode_record_batches(with_tail.freeze(), 11).unwrap();
            let offsets: Vec<_> = decoded.records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![11, 12], "cut at {cut}");
            assert_eq!(decoded.next_offset, Some(13));
        }
        let empty = decode_record_batches(Bytes::new(), 0).unwrap();
        assert_eq!(empty, DecodedRecords::default());
    }

    #[test]
    fn decode_rejects_corrupt_complete_batch() {
        let mut batch = BytesMut::from(&batch_at(0, &[record(None, "abc", 1)])[..]);
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        assert!(decode_record_batches(batch.freeze(), 0).is_err());
    }

    #[test]
    fn decode_rejects_legacy_magic_and_bad_length() {
        let mut batch = BytesMut::from(&batch_at(0, &[record(None, "abc", 1)])[..]);
        record_batch::overwrite_field(&mut batch, record_batch::HeaderField::Magic, 1);
        assert!(decode_record_batches(batch.freeze(), 0).is_err());
        let mut bad = BytesMut::from(&batch_at(0, &[record(None, "abc", 1)])[..]);
        record_batch::overwrite_field(&mut bad, record_batch::HeaderField::BatchLength, -5);
        bad.truncate(20);
        assert!(decode_record_batches(bad.freeze(), 0).is_err());
    }
}
