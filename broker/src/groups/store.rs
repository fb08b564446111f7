//! Group records in `__consumer_offsets`: their keys, values and how the log replays into state.
//!
//! Each record is keyed so that the latest record per key wins when the log is replayed
//! (compaction-style); a record without a value deletes its key. Formats (big-endian):
//!
//! | record  | key                                             | value                                                   |
//! |---------|-------------------------------------------------|---------------------------------------------------------|
//! | offset  | `0x01`, group (u16 len + bytes), topic (u16 len + bytes), partition i32 | offset i64, leader epoch i32, commit time ms i64, metadata (i32 len or -1 + bytes) |
//! | group   | `0x02`, group (u16 len + bytes)                 | generation i32, protocol type (u16 len + bytes)         |

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Partitions of `__consumer_offsets` (Kafka's `offsets.topic.num.partitions` default).
pub const OFFSETS_TOPIC_PARTITIONS: i32 = 50;
pub use crate::cluster::metadata::OFFSETS_TOPIC;

/// Longest commit metadata kept (Kafka's `offset.metadata.max.bytes`).
pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;

const KEY_OFFSET: u8 = 1;
const KEY_GROUP: u8 = 2;

/// The `__consumer_offsets` partition of a group: Java's `String.hashCode`, made non-negative,
/// modulo the partition count, as Kafka computes it.
pub fn offsets_partition(group: &str) -> i32 {
    let mut hash: i32 = 0;
    for unit in group.encode_utf16() {
        hash = hash.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs maps i32::MIN to 0.
    let non_negative = if hash == i32::MIN { 0 } else { hash.abs() };
    non_negative % OFFSETS_TOPIC_PARTITIONS
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub commit_time_ms: i64,
    pub metadata: Option<String>,
}

/// One replayed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<CommittedOffset>,
    },
    Group {
        group: String,
        value: Option<(i32, String)>,
    },
}

fn put_str(out: &mut BytesMut, s: &str) {
    assert!(
        s.len() <= u16::MAX as usize,
        "names are bounded by the protocol"
    );
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

fn get_str(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = buf.get_u16() as usize;
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

pub fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(KEY_OFFSET);
    put_str(&mut out, group);
    put_str(&mut out, topic);
    out.put_i32(partition);
    out.freeze()
}

pub fn offset_value(value: &CommittedOffset) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i64(value.offset);
    out.put_i32(value.leader_epoch);
    out.put_i64(value.commit_time_ms);
    match &value.metadata {
        Some(m) => {
            out.put_i32(m.len() as i32);
            out.put_slice(m.as_bytes());
        }
        None => out.put_i32(-1),
    }
    out.freeze()
}

pub fn group_key(group: &str) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(KEY_GROUP);
    put_str(&mut out, group);
    out.freeze()
}

pub fn group_value(generation: i32, protocol_type: &str) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i32(generation);
    put_str(&mut out, protocol_type);
    out.freeze()
}

/// Decodes a stored record; None for a record this version does not know (skipped on replay).
pub fn decode(mut key: Bytes, value: Option<Bytes>) -> Option<GroupRecord> {
    if !key.has_remaining() {
        return None;
    }
    match key.get_u8() {
        KEY_OFFSET => {
            let group = get_str(&mut key)?;
            let topic = get_str(&mut key)?;
            if key.remaining() < 4 {
                return None;
            }
            let partition = key.get_i32();
            let value = match value {
                None => None,
                Some(mut v) => {
                    if v.remaining() < 24 {
                        return None;
                    }
                    let (offset, leader_epoch, commit_time_ms) =
                        (v.get_i64(), v.get_i32(), v.get_i64());
                    let len = v.get_i32();
                    let metadata = if len < 0 {
                        None
                    } else if v.remaining() >= len as usize {
                        Some(String::from_utf8(v.split_to(len as usize).to_vec()).ok()?)
                    } else {
                        return None;
                    };
                    Some(CommittedOffset {
                        offset,
                        leader_epoch,
                        commit_time_ms,
                        metadata,
                    })
                }
            };
            Some(GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            })
        }
        KEY_GROUP => {
            let group = get_str(&mut key)?;
            let value = match value {
                None => None,
                Some(mut v) => {
                    if v.remaining() < 4 {
                        return None;
                    }
                    let generation = v.get_i32();
                    Some((generation, get_str(&mut v)?))
                }
            };
            Some(GroupRecord::Group { group, value })
        }
        _ => None,
    }
}

/// One RecordBatch v2 holding `records` (key, value or tombstone).
pub fn encode_batch(records: &[(Bytes, Option<Bytes>)], timestamp_ms: i64) -> Bytes {
    let mut encoded = Vec::new();
    for (index, (key, value)) in records.iter().enumerate() {
        let offset_delta = i32::try_from(index).expect("group batches hold few records");
        record_batch::encode_record(
            &mut encoded,
            offset_delta,
            0,
            Some(key),
            value.as_deref(),
            &[],
        );
    }
    let record_count = i32::try_from(records.len()).expect("group batches hold few records");
    record_batch::encode_batch(
        &record_batch::BatchFields::plain(timestamp_ms),
        record_count,
        &encoded,
    )
}

/// Every group record in stored batch bytes, in log order.
pub fn decode_batches(mut bytes: Bytes) -> Vec<GroupRecord> {
    let mut out = Vec::new();
    while bytes.has_remaining() {
        let Ok(set) = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes) else {
            // Stored batches passed CRC checks; a batch the codec cannot read ends the replay.
            log::error!("undecodable batch in {OFFSETS_TOPIC}; replay stops there");
            break;
        };
        out.extend(
            set.records
                .into_iter()
                .filter_map(|r| decode(r.key?, r.value)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_kafka() {
        // Kafka's placement, Utils.abs(groupId.hashCode()) % 50: "my-group" hashes to
        // -1906497762 and lands in partition 12. Groups whose Java hashCode is
        // Integer.MIN_VALUE (Math.abs would keep it negative) land in partition 0.
        assert_eq!(offsets_partition("my-group"), 12);
        for min_value_hash in ["polygenelubricants", "GydZG_", "DESIGNING WORKHOUSES"] {
            assert_eq!(offsets_partition(min_value_hash), 0, "{min_value_hash}");
        }
        assert_eq!(offsets_partition(""), 0);
    }

    #[test]
    fn records_round_trip_through_a_batch() {
        let committed = CommittedOffset {
            offset: 42,
            leader_epoch: 3,
            commit_time_ms: 99,
            metadata: Some("m".into()),
        };
        let batch = encode_batch(
            &[
                (offset_key("g", "t", 1), Some(offset_value(&committed))),
                (group_key("g"), Some(group_value(7, "consumer"))),
                (offset_key("g", "t", 2), None),
            ],
            5,
        );
        assert_eq!(
            decode_batches(batch),
            vec![
                GroupRecord::Offset {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 1,
                    value: Some(committed)
                },
                GroupRecord::Group {
                    group: "g".into(),
                    value: Some((7, "consumer".into()))
                },
                GroupRecord::Offset {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 2,
                    value: None
                },
            ]
        );
    }

    #[test]
    fn truncated_records_are_skipped() {
        assert_eq!(decode(Bytes::from_static(&[1, 0, 5, b'a']), None), None);
        assert_eq!(decode(Bytes::new(), None), None);
        assert_eq!(
            decode(offset_key("g", "t", 0), Some(Bytes::from_static(&[0; 5]))),
            None
        );
    }
}
