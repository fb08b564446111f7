//! The header every benchmark record value starts with, so a consumer can tell who sent a record,
//! where it sits in its partition's sequence, and when it was (meant to be) sent.
//!
//! Layout, little-endian, then zero padding up to the record size:
//!
//! | bytes | field                                                |
//! |-------|------------------------------------------------------|
//! | 0..4  | magic `SLBV`                                         |
//! | 4..8  | run id (tells this run's records from older ones)    |
//! | 8..12 | producer id (0-based actor index)                    |
//! | 12..16| partition                                            |
//! | 16..24| sequence number within (run, producer, partition)    |
//! | 24..32| send timestamp, ns since the Unix epoch              |

pub const VALUE_MAGIC: [u8; 4] = *b"SLBV";
pub const VALUE_HEADER_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueHeader {
    pub run_id: u32,
    pub producer_id: u32,
    pub partition: u32,
    pub sequence: u64,
    pub send_timestamp_ns: u64,
}

impl ValueHeader {
    /// Writes the header at the start of `value`; the rest of `value` is left as is (padding).
    pub fn encode(&self, value: &mut [u8]) {
        assert!(
            value.len() >= VALUE_HEADER_BYTES,
            "value shorter than its header"
        );
        value[0..4].copy_from_slice(&VALUE_MAGIC);
        value[4..8].copy_from_slice(&self.run_id.to_le_bytes());
        value[8..12].copy_from_slice(&self.producer_id.to_le_bytes());
        value[12..16].copy_from_slice(&self.partition.to_le_bytes());
        value[16..24].copy_from_slice(&self.sequence.to_le_bytes());
        value[24..32].copy_from_slice(&self.send_timestamp_ns.to_le_bytes());
    }

    /// `None` when `value` was not written by sluice-bench (too short or wrong magic).
    pub fn decode(value: &[u8]) -> Option<ValueHeader> {
        if value.len() < VALUE_HEADER_BYTES || value[0..4] != VALUE_MAGIC {
            return None;
        }
        let u32_at = |at: usize| u32::from_le_bytes(value[at..at + 4].try_into().expect("4 bytes"));
        let u64_at = |at: usize| u64::from_le_bytes(value[at..at + 8].try_into().expect("8 bytes"));
        Some(ValueHeader {
            run_id: u32_at(4),
            producer_id: u32_at(8),
            partition: u32_at(12),
            sequence: u64_at(16),
            send_timestamp_ns: u64_at(24),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_with_padding() {
        let header = ValueHeader {
            run_id: 0xdead_beef,
            producer_id: 7,
            partition: 3,
            sequence: u64::MAX - 1,
            send_timestamp_ns: 1_700_000_000_123_456_789,
        };
        let mut value = vec![0xaa; 1024];
        header.encode(&mut value);
        assert_eq!(ValueHeader::decode(&value), Some(header));
        assert!(value[VALUE_HEADER_BYTES..].iter().all(|&byte| byte == 0xaa));

        let mut exact = vec![0; VALUE_HEADER_BYTES];
        header.encode(&mut exact);
        assert_eq!(ValueHeader::decode(&exact), Some(header));
    }

    #[test]
    fn foreign_values_are_rejected() {
        assert_eq!(ValueHeader::decode(b"hello"), None);
        assert_eq!(ValueHeader::decode(&[0; 64]), None);
        let mut value = vec![0; 64];
        ValueHeader {
            run_id: 1,
            producer_id: 0,
            partition: 0,
            sequence: 0,
            send_timestamp_ns: 0,
        }
        .encode(&mut value);
        assert_eq!(ValueHeader::decode(&value[..VALUE_HEADER_BYTES - 1]), None);
    }
}
