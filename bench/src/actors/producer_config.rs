//! What a producer actor is given and what it reports, for both clients (`producer` for the
//! simple one, `batching` for the batching one).

use std::collections::HashMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::args::{Acks, ClientKind, CompressionKind, KeyDistribution, RecordSize};
use crate::schedule::Schedule;
use crate::verify::StreamKey;

/// When a producer stops: after a time, or after its share of the records.
#[derive(Debug, Clone, Copy)]
pub enum Quota {
    Until(Duration),
    Records(u64),
}

#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub id: u32,
    pub partitions: u32,
    pub record_size: RecordSize,
    pub batch_records: u64,
    pub acks: Acks,
    pub idempotence: bool,
    pub client: ClientKind,
    pub compression: CompressionKind,
    pub keys: KeyDistribution,
    pub batch_bytes: usize,
    pub buffer_bytes: usize,
    pub linger: Duration,
    pub max_in_flight: usize,
    pub quota: Quota,
    /// Fixed-rate mode; `None` sends as fast as acknowledgements come back.
    pub schedule: Option<Schedule>,
}

#[derive(Debug)]
pub struct ProducerResult {
    pub records: u64,
    pub bytes: u64,
    pub requests: u64,
    /// Batches sent (one per request with the simple client), and those sent again.
    pub batches: u64,
    pub resends: u64,
    pub elapsed: Duration,
    /// Acknowledgement time minus (scheduled) send time: per request with the simple client,
    /// per record with the batching client.
    pub latency: Histogram<u64>,
    /// Records acknowledged per stream, for the consumers' lost count.
    pub produced: HashMap<StreamKey, u64>,
}

/// A small xorshift generator for record sizes; quality does not matter, speed does.
pub struct SizeDraw {
    state: u64,
    size: RecordSize,
}

impl SizeDraw {
    pub fn new(seed: u64, size: RecordSize) -> SizeDraw {
        SizeDraw {
            state: seed | 1,
            size,
        }
    }

    pub fn next(&mut self) -> usize {
        let span = self.size.bytes_max - self.size.bytes_min;
        if span == 0 {
            return self.size.bytes_min;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.size.bytes_min + (self.state % (span as u64 + 1)) as usize
    }
}
