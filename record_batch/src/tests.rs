use bytes::BytesMut;
use kafka_protocol::records::RecordBatchDecoder;

use super::*;

fn batch_of(values: &[&[u8]], timestamp_ms: i64) -> bytes::Bytes {
    let mut records = Vec::new();
    for (index, value) in values.iter().enumerate() {
        let header = RecordHeader {
            key: b"h",
            value: Some(b"v"),
        };
        encode_record(
            &mut records,
            index as i32,
            0,
            Some(b"k"),
            Some(value),
            &[header],
        );
    }
    encode_batch(
        &BatchFields::plain(timestamp_ms),
        values.len() as i32,
        &records,
    )
}

#[test]
fn header_rejects_short_length_and_bad_magic() {
    let mut bytes = vec![0u8; BATCH_HEADER_BYTES];
    bytes[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4].copy_from_slice(&10i32.to_be_bytes());
    assert_eq!(BatchHeader::parse(&bytes), Err(BatchError::BadLength(10)));
    bytes[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4].copy_from_slice(&49i32.to_be_bytes());
    assert_eq!(BatchHeader::parse(&bytes), Err(BatchError::BadMagic(0)));
    bytes[OFFSET_MAGIC] = 2;
    assert!(BatchHeader::parse(&bytes).is_ok());
    bytes[OFFSET_BATCH_LENGTH..OFFSET_BATCH_LENGTH + 4]
        .copy_from_slice(&(BATCH_BYTES_MAX as i32).to_be_bytes());
    assert!(matches!(
        BatchHeader::parse(&bytes),
        Err(BatchError::TooLarge { .. })
    ));
}

#[test]
fn header_fields_are_read_from_their_places() {
    let mut bytes = vec![0u8; BATCH_HEADER_BYTES];
    bytes[8..12].copy_from_slice(&49i32.to_be_bytes());
    bytes[12..16].copy_from_slice(&7i32.to_be_bytes());
    bytes[16] = 2;
    bytes[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    bytes[23..27].copy_from_slice(&4i32.to_be_bytes());
    bytes[43..51].copy_from_slice(&77i64.to_be_bytes());
    bytes[51..53].copy_from_slice(&3i16.to_be_bytes());
    bytes[53..57].copy_from_slice(&12i32.to_be_bytes());
    bytes[57..61].copy_from_slice(&5i32.to_be_bytes());
    let header = BatchHeader::parse(&bytes).unwrap();
    assert_eq!(header.partition_leader_epoch, 7);
    assert!(header.is_transactional() && !header.is_control());
    assert_eq!(header.last_offset_delta, 4);
    assert_eq!(header.producer_id, 77);
    assert_eq!(header.producer_epoch, 3);
    assert_eq!(header.base_sequence, 12);
    assert_eq!(header.record_count, 5);
}

#[test]
fn encoded_batches_check_and_decode_with_kafkas_codec() {
    let batch = batch_of(&[b"a", b"bcd", &[7u8; 300]], 1_000);
    let header = check_integrity(&batch).unwrap();
    assert_eq!(header.total_bytes(), batch.len());
    assert_eq!(header.record_count, 3);
    assert_eq!(header.producer_id, NO_PRODUCER_ID);
    let decoded = RecordBatchDecoder::decode(&mut batch.clone()).unwrap();
    let values: Vec<_> = decoded
        .records
        .iter()
        .map(|r| r.value.clone().unwrap())
        .collect();
    assert_eq!(values, vec![&b"a"[..], b"bcd", &[7u8; 300]]);
    assert!(decoded.records.iter().all(|r| r.timestamp == 1_000));
    assert_eq!(decoded.records[2].offset, 2);
    assert_eq!(decoded.records[0].headers.len(), 1);
}

#[test]
fn stamping_keeps_a_batch_valid() {
    let mut batch = BytesMut::from(&batch_of(&[b"a", b"b"], 5)[..]);
    set_base_offset(&mut batch, 40);
    set_partition_leader_epoch(&mut batch, 7);
    let header = check_integrity(&batch).unwrap();
    assert_eq!((header.base_offset, header.partition_leader_epoch), (40, 7));
    assert_eq!(header.next_offset(), 42);
    set_log_append_time(&mut batch, 99);
    let header = check_integrity(&batch).unwrap();
    assert!(header.is_log_append_time());
    assert_eq!(header.max_timestamp, 99);
    let last = batch.len() - 1;
    batch[last] ^= 1;
    assert!(matches!(
        check_integrity(&batch),
        Err(BatchError::CrcMismatch { .. })
    ));
    assert!(matches!(
        check_integrity(&batch[..batch.len() - 1]),
        Err(BatchError::Truncated { .. })
    ));
}

#[test]
fn overwriting_a_field_changes_only_its_bytes() {
    let batch = encode_batch(&BatchFields::plain(5), 1, &[0u8; 7]);
    let mut changed = batch.to_vec();
    overwrite_field(&mut changed, HeaderField::RecordCount, -2);
    let range = HeaderField::RecordCount.range();
    assert_eq!(&changed[range.clone()], &(-2i32).to_be_bytes());
    assert_eq!(changed[..range.start], batch[..range.start]);
    assert!(
        check_integrity(&changed).is_err(),
        "the CRC no longer matches"
    );
    set_crc(&mut changed);
    assert_eq!(
        BatchHeader::parse(&changed),
        Err(BatchError::BadRecordCount(-2))
    );
}

/// The records of a batch of every codec, with null keys and values and repeated header names,
/// decoded as kafka-protocol's decoder decodes them.
#[test]
fn decoded_records_match_kafkas_decoder_for_every_codec() {
    use records::{compress, decode_records, Codec};
    let headers = [
        RecordHeader {
            key: b"x",
            value: None,
        },
        RecordHeader {
            key: b"y",
            value: Some(b"1"),
        },
    ];
    let mut section = Vec::new();
    encode_record(&mut section, 0, 0, Some(b"k"), Some(b"a"), &headers);
    encode_record(&mut section, 1, 5, None, None, &[]);
    encode_record(
        &mut section,
        2,
        -3,
        Some(b""),
        Some(&[9u8; 5000]),
        &headers[..1],
    );
    for codec in [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ] {
        let fields = BatchFields {
            attributes: codec as i16,
            ..BatchFields::plain(1_000)
        };
        let mut batch =
            BytesMut::from(&encode_batch(&fields, 3, &compress(codec, &section).unwrap())[..]);
        set_base_offset(&mut batch, 70);
        let header = check_integrity(&batch).unwrap();
        let ours = decode_records(&batch, &header, 1 << 20).unwrap();
        let theirs = RecordBatchDecoder::decode(&mut batch.clone().freeze()).unwrap();
        assert_eq!(ours.len(), theirs.records.len(), "{codec:?}");
        for (ours, theirs) in ours.iter().zip(&theirs.records) {
            assert_eq!(ours.offset, theirs.offset, "{codec:?}");
            assert_eq!(ours.timestamp_ms, theirs.timestamp, "{codec:?}");
            assert_eq!(ours.key.as_deref(), theirs.key.as_deref(), "{codec:?}");
            assert_eq!(ours.value.as_deref(), theirs.value.as_deref(), "{codec:?}");
            let their_headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = (theirs.headers.iter())
                .map(|(name, value)| (name.as_bytes().to_vec(), value.as_ref().map(|v| v.to_vec())))
                .collect();
            assert_eq!(ours.headers, their_headers, "{codec:?}");
        }
        if codec != Codec::None {
            assert!(matches!(
                decode_records(&batch, &header, 1000),
                Err(BatchError::DecompressedTooLarge { .. })
            ));
        }
    }
}
