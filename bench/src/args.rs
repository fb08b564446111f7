//! Command-line arguments and the checks that tie them together.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::value::VALUE_HEADER_BYTES;

/// Bigger records than this are not what a Kafka benchmark measures (and broker limits say 1 MiB).
pub const RECORD_BYTES_MAX: usize = 1 << 20;
/// One produce request carries one batch; keep it well under the broker's frame limit.
pub const BATCH_RECORDS_MAX: u64 = 100_000;
/// Each actor is an OS thread with its own connection.
pub const ACTORS_MAX: u32 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Producers only.
    Produce,
    /// Consumers only: read the topic from its start up to the end offsets seen at start.
    Consume,
    /// Producers and consumers at once; consumers start at the end and report end-to-end latency.
    E2e,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Workload::Produce => "produce",
            Workload::Consume => "consume",
            Workload::E2e => "e2e",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Acks {
    None,
    Leader,
    All,
}

impl Acks {
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl FromStr for Acks {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            _ => Err(format!("acks is 0, 1 or all, not {text:?}")),
        }
    }
}

impl fmt::Display for Acks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        })
    }
}

/// Record value size in bytes: fixed (`1024`) or uniformly drawn from an inclusive range
/// (`100..2000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RecordSize {
    pub bytes_min: usize,
    pub bytes_max: usize,
}

impl FromStr for RecordSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parse = |part: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|_| format!("record size {part:?} is not a number of bytes"))
        };
        let (bytes_min, bytes_max) = match text.split_once("..") {
            Some((min, max)) => (parse(min)?, parse(max.trim_start_matches('='))?),
            None => {
                let bytes = parse(text)?;
                (bytes, bytes)
            }
        };
        if bytes_min > bytes_max {
            return Err(format!("record size range {text:?} is empty"));
        }
        if bytes_min < VALUE_HEADER_BYTES {
            return Err(format!(
                "records are at least {VALUE_HEADER_BYTES} bytes (the bench header), not {bytes_min}"
            ));
        }
        if bytes_max > RECORD_BYTES_MAX {
            return Err(format!(
                "records are at most {RECORD_BYTES_MAX} bytes, not {bytes_max}"
            ));
        }
        Ok(RecordSize {
            bytes_min,
            bytes_max,
        })
    }
}

impl fmt::Display for RecordSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bytes_min == self.bytes_max {
            write!(f, "{}", self.bytes_min)
        } else {
            write!(f, "{}..{}", self.bytes_min, self.bytes_max)
        }
    }
}

/// Which client the producers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// `client::producer::Producer`: per-partition batches (--batch-bytes, --linger-ms),
    /// compression, several requests in flight (--max-in-flight), keys.
    Batching,
    /// One Produce request of --batch-records records at a time, waiting for each answer.
    Simple,
}

impl fmt::Display for ClientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientKind::Batching => "batching",
            ClientKind::Simple => "simple",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionKind {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionKind {
    pub fn codec(self) -> kafka_protocol::records::Compression {
        use kafka_protocol::records::Compression;
        match self {
            CompressionKind::None => Compression::None,
            CompressionKind::Gzip => Compression::Gzip,
            CompressionKind::Snappy => Compression::Snappy,
            CompressionKind::Lz4 => Compression::Lz4,
            CompressionKind::Zstd => Compression::Zstd,
        }
    }
}

impl fmt::Display for CompressionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self
            .to_possible_value()
            .expect("no variant is skipped")
            .get_name()
            .to_owned();
        f.write_str(&name)
    }
}

/// Distinct keys at most; each producer keeps its keys' texts in memory.
pub const KEYS_MAX: u64 = 10_000_000;

/// Record keys: none (the sticky partitioner spreads records), or one of N keys drawn at random
/// or in turn (the Java client's murmur2 partitioner places them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum KeyDistribution {
    None,
    Random(u64),
    Sequential(u64),
}

impl FromStr for KeyDistribution {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let count = |part: &str| match part.parse::<u64>() {
            Ok(count) if (1..=KEYS_MAX).contains(&count) => Ok(count),
            _ => Err(format!("key count {part:?} is not in 1..={KEYS_MAX}")),
        };
        match text.split_once(':') {
            None if text == "none" => Ok(KeyDistribution::None),
            Some(("random", n)) => Ok(KeyDistribution::Random(count(n)?)),
            Some(("sequential", n)) => Ok(KeyDistribution::Sequential(count(n)?)),
            _ => Err(format!(
                "keys are none, random:N or sequential:N, not {text:?}"
            )),
        }
    }
}

impl fmt::Display for KeyDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDistribution::None => f.write_str("none"),
            KeyDistribution::Random(count) => write!(f, "random:{count}"),
            KeyDistribution::Sequential(count) => write!(f, "sequential:{count}"),
        }
    }
}

/// Load generator for Sluice and any Kafka-compatible broker.
///
/// Producers and consumers are OS threads with one connection each. Every record value starts
/// with a 32-byte header (producer id, per-partition sequence number, send time) so consumers can
/// count lost, duplicated and reordered records and measure end-to-end latency.
#[derive(Debug, Clone, Parser)]
#[command(name = "sluice-bench", version)]
pub struct Args {
    /// Broker address (host:port) to connect every actor to.
    #[arg(long, default_value = client::BOOTSTRAP_DEFAULT)]
    pub bootstrap: String,

    /// Topic to produce to and consume from.
    #[arg(long, default_value = "sluice-bench")]
    pub topic: String,

    /// Partitions of the topic when the bench creates it (replication factor 1; default 1); an
    /// existing topic keeps its partition count.
    #[arg(long, value_name = "P")]
    pub partitions: Option<u32>,

    /// What to run: produce, consume (read the topic from its start to the end offsets seen at
    /// start) or e2e (produce and consume at once, measuring end-to-end latency).
    #[arg(long, value_enum, default_value_t = Workload::Produce)]
    pub workload: Workload,

    /// Producer threads (produce and e2e workloads); each sends batches to the partitions in
    /// turn.
    #[arg(long, default_value_t = 1)]
    pub producers: u32,

    /// Consumer threads (consume and e2e workloads); consumer i reads partitions p with
    /// p % consumers == i, so at most one consumer per partition.
    #[arg(long, default_value_t = 1)]
    pub consumers: u32,

    /// Record value size in bytes, fixed (1024) or drawn uniformly from MIN..MAX; at least 32
    /// (the bench header).
    #[arg(long, default_value = "1024", value_name = "BYTES|MIN..MAX")]
    pub record_size: RecordSize,

    /// Producer client: batching (the native batching producer) or simple (one request of
    /// --batch-records records in flight at a time, the client before batching).
    #[arg(long, value_enum, default_value_t = ClientKind::Batching)]
    pub client: ClientKind,

    /// Records per produce request (one RecordBatch); --client simple only.
    #[arg(long, default_value_t = 100)]
    pub batch_records: u64,

    /// A partition's batch is sent once it holds this many bytes (Kafka's batch.size);
    /// --client batching.
    #[arg(long, default_value_t = BATCH_BYTES_DEFAULT, value_name = "BYTES")]
    pub batch_bytes: usize,

    /// ... or once its first record waited this long (linger.ms); --client batching.
    #[arg(long, default_value_t = 1.0, value_name = "MS")]
    pub linger_ms: f64,

    /// Produce requests in flight per connection; --client batching.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub max_in_flight: usize,

    /// Bytes of records a producer holds until they are acknowledged (buffer.memory); sending
    /// blocks beyond it. Records wait in this buffer, so at full speed it adds to the ack
    /// latency; --client batching.
    #[arg(long, default_value_t = BUFFER_BYTES_DEFAULT, value_name = "BYTES")]
    pub buffer_bytes: usize,

    /// Compression of the produced batches: none, gzip, snappy, lz4 or zstd; --client batching.
    #[arg(long, value_enum, default_value_t = CompressionKind::None)]
    pub compression: CompressionKind,

    /// Record keys: none (unkeyed; the sticky partitioner fills one partition's batch, then
    /// moves on), random:N (one of N keys at random) or sequential:N (keys 0..N in turn); keyed
    /// records go to the Java client's murmur2 partition. --client batching.
    #[arg(
        long,
        default_value = "none",
        value_name = "none|random:N|sequential:N"
    )]
    pub keys: KeyDistribution,

    /// Acknowledgements each produce request waits for: 0 (none; latency is the send time only),
    /// 1 (leader) or all.
    #[arg(long, default_value_t = Acks::Leader)]
    pub acks: Acks,

    /// Use idempotent producers (InitProducerId, per-partition sequences); needs --acks all.
    #[arg(long)]
    pub idempotence: bool,

    /// Run for this many seconds (the default when neither --duration nor --records is given:
    /// 10).
    #[arg(long, value_name = "SECS", conflicts_with = "records")]
    pub duration: Option<f64>,

    /// Produce (or, for consume, read) this many records in all, then stop.
    #[arg(long, value_name = "N")]
    pub records: Option<u64>,

    /// Fixed-rate mode: records per second in all, split evenly over the producers. Latency is
    /// measured from each batch's scheduled send time, so stalls are counted in full
    /// (no coordinated omission).
    #[arg(long, value_name = "RECORDS_PER_SEC")]
    pub rate: Option<u64>,

    /// Also write the results as JSON to this file, and the plots next to it
    /// (PATH without .json, then -latency.svg and -throughput.svg) unless --plot-dir is given.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,

    /// Write latency.svg (latency by percentile, log-scaled percentile axis) and throughput.svg
    /// (MB/s over time) to this directory.
    #[arg(long, value_name = "DIR")]
    pub plot_dir: Option<PathBuf>,
}

/// When the run stops.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum Finish {
    #[serde(rename = "duration_secs")]
    Duration(#[serde(serialize_with = "seconds")] Duration),
    #[serde(rename = "records")]
    Records(u64),
}

fn seconds<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

pub const DURATION_DEFAULT: Duration = Duration::from_secs(10);
/// Appends to one partition are written one after another, so with few partitions the batch
/// size sets the size of each disk write; 256 KiB batches run about twice as fast as 64 KiB ones
/// on one partition (bench/README.md). librdkafka's default `batch.size` is 1 MB.
pub const BATCH_BYTES_DEFAULT: usize = 256 * 1024;
pub const BUFFER_BYTES_DEFAULT: usize = 4 << 20;
/// Longest linger; a benchmark that waits longer measures the linger.
pub const LINGER_MS_MAX: f64 = 10_000.0;
pub const PARTITIONS_DEFAULT: u32 = 1;

impl Args {
    /// Cross-argument checks clap cannot express.
    pub fn validate(&self) -> Result<(), String> {
        if self.partitions == Some(0) {
            return Err("--partitions must be at least 1".to_owned());
        }
        if self.batch_records == 0 || self.batch_records > BATCH_RECORDS_MAX {
            return Err(format!("--batch-records is 1..={BATCH_RECORDS_MAX}"));
        }
        let producing = self.workload != Workload::Consume;
        let consuming = self.workload != Workload::Produce;
        if producing && !(1..=ACTORS_MAX).contains(&self.producers) {
            return Err(format!("--producers is 1..={ACTORS_MAX}"));
        }
        if consuming && !(1..=ACTORS_MAX).contains(&self.consumers) {
            return Err(format!("--consumers is 1..={ACTORS_MAX}"));
        }
        if self.idempotence && self.acks != Acks::All {
            return Err("--idempotence needs --acks all".to_owned());
        }
        let batching = self.client == ClientKind::Batching;
        if !batching
            && (self.compression != CompressionKind::None || self.keys != KeyDistribution::None)
        {
            return Err("--compression and --keys need --client batching".to_owned());
        }
        let batch_bytes_max = client::producer::PRODUCER_BATCH_BYTES_MAX;
        if !(1..=batch_bytes_max).contains(&self.batch_bytes) {
            return Err(format!("--batch-bytes is 1..={batch_bytes_max}"));
        }
        if !(0.0..=LINGER_MS_MAX).contains(&self.linger_ms) {
            return Err(format!("--linger-ms is 0..={LINGER_MS_MAX}"));
        }
        let buffer_bytes_max = client::producer::PRODUCER_BUFFER_BYTES_MAX;
        if !(self.batch_bytes..=buffer_bytes_max).contains(&self.buffer_bytes) {
            return Err(format!(
                "--buffer-bytes is --batch-bytes..={buffer_bytes_max}"
            ));
        }
        let in_flight_max = client::producer::PRODUCER_IN_FLIGHT_MAX;
        if !(1..=in_flight_max).contains(&self.max_in_flight) {
            return Err(format!("--max-in-flight is 1..={in_flight_max}"));
        }
        if self.rate == Some(0) {
            return Err("--rate must be at least 1 record per second".to_owned());
        }
        if let Some(seconds) = self.duration {
            if !(seconds.is_finite() && seconds > 0.0) {
                return Err("--duration must be a positive number of seconds".to_owned());
            }
        }
        if self.records == Some(0) {
            return Err("--records must be at least 1".to_owned());
        }
        Ok(())
    }

    /// Partitions to create the topic with when it is missing.
    pub fn partitions_to_create(&self) -> u32 {
        self.partitions.unwrap_or(PARTITIONS_DEFAULT)
    }

    /// Where the plots go: --plot-dir, or next to the JSON file; `None` for no plots.
    pub fn plot_paths(&self) -> Option<(PathBuf, PathBuf)> {
        if let Some(dir) = &self.plot_dir {
            return Some((dir.join("latency.svg"), dir.join("throughput.svg")));
        }
        let json = self.json.as_ref()?;
        let stem = json.with_extension("");
        let with_suffix = |suffix: &str| {
            let mut name = stem.file_name().unwrap_or_default().to_os_string();
            name.push(suffix);
            stem.with_file_name(name)
        };
        Some((with_suffix("-latency.svg"), with_suffix("-throughput.svg")))
    }

    pub fn finish(&self) -> Finish {
        match (self.records, self.duration) {
            (Some(records), _) => Finish::Records(records),
            (None, Some(seconds)) => Finish::Duration(Duration::from_secs_f64(seconds)),
            (None, None) => Finish::Duration(DURATION_DEFAULT),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Args, String> {
        let argv = std::iter::once("sluice-bench").chain(extra.iter().copied());
        let args = Args::try_parse_from(argv).map_err(|error| error.to_string())?;
        args.validate()?;
        Ok(args)
    }

    #[test]
    fn record_size_fixed_and_range() {
        assert_eq!(
            "1024".parse::<RecordSize>(),
            Ok(RecordSize {
                bytes_min: 1024,
                bytes_max: 1024
            })
        );
        assert_eq!(
            "100..2000".parse::<RecordSize>(),
            Ok(RecordSize {
                bytes_min: 100,
                bytes_max: 2000
            })
        );
        assert_eq!(
            "64..=64".parse::<RecordSize>(),
            Ok(RecordSize {
                bytes_min: 64,
                bytes_max: 64
            })
        );
        assert!("2000..100".parse::<RecordSize>().is_err());
        assert!(
            "8".parse::<RecordSize>().is_err(),
            "smaller than the header"
        );
        assert!("64..".parse::<RecordSize>().is_err());
        assert!("x..64".parse::<RecordSize>().is_err());
        assert!(format!("{}", RECORD_BYTES_MAX + 1)
            .parse::<RecordSize>()
            .is_err());
        assert_eq!(
            "100..2000".parse::<RecordSize>().unwrap().to_string(),
            "100..2000"
        );
    }

    #[test]
    fn defaults_and_full_command_line() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.bootstrap, "127.0.0.1:9092");
        assert_eq!(args.topic, "sluice-bench");
        assert_eq!(args.workload, Workload::Produce);
        assert_eq!(args.acks, Acks::Leader);
        assert_eq!(args.finish(), Finish::Duration(DURATION_DEFAULT));

        let args = parse(&[
            "--workload",
            "e2e",
            "--record-size",
            "512..4096",
            "--acks",
            "all",
            "--idempotence",
            "--records",
            "1000",
            "--rate",
            "500",
            "--producers",
            "2",
        ])
        .unwrap();
        assert_eq!(args.workload, Workload::E2e);
        assert_eq!(
            args.record_size,
            RecordSize {
                bytes_min: 512,
                bytes_max: 4096
            }
        );
        assert_eq!(args.acks.wire(), -1);
        assert_eq!(args.finish(), Finish::Records(1000));
        assert_eq!(args.rate, Some(500));
    }

    #[test]
    fn inconsistent_arguments_are_rejected() {
        assert!(parse(&["--idempotence"]).is_err(), "needs acks=all");
        assert!(parse(&["--duration", "5", "--records", "10"]).is_err());
        assert!(parse(&["--acks", "2"]).is_err());
        assert!(parse(&["--record-size", "10..20"]).is_err());
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--batch-records", "0"]).is_err());
        assert!(parse(&["--partitions", "0"]).is_err());
        assert!(parse(&["--duration", "-1"]).is_err());
        assert!(parse(&["--client", "simple", "--compression", "zstd"]).is_err());
        assert!(parse(&["--keys", "random:0"]).is_err());
        assert!(parse(&["--keys", "bogus:3"]).is_err());
        assert!(parse(&["--max-in-flight", "0"]).is_err());
        assert!(parse(&["--batch-bytes", "0"]).is_err());
        assert!(parse(&["--buffer-bytes", "1000"]).is_err());
        assert!(parse(&["--linger-ms", "-1"]).is_err());
    }

    #[test]
    fn producer_options() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.client, ClientKind::Batching);
        assert_eq!(args.compression, CompressionKind::None);
        assert_eq!(args.keys, KeyDistribution::None);
        assert_eq!(args.batch_bytes, BATCH_BYTES_DEFAULT);
        let args = parse(&[
            "--compression",
            "zstd",
            "--keys",
            "random:100",
            "--linger-ms",
            "0.5",
            "--max-in-flight",
            "8",
            "--batch-bytes",
            "1000000",
        ])
        .unwrap();
        assert_eq!(args.compression.to_string(), "zstd");
        assert_eq!(args.keys, KeyDistribution::Random(100));
        assert_eq!(args.keys.to_string(), "random:100");
        assert_eq!(
            "sequential:7".parse::<KeyDistribution>(),
            Ok(KeyDistribution::Sequential(7))
        );
        assert_eq!((args.linger_ms, args.max_in_flight), (0.5, 8));
        assert!(parse(&["--client", "simple", "--batch-records", "10"]).is_ok());
    }

    #[test]
    fn plots_go_next_to_the_json_file_or_into_the_plot_dir() {
        assert_eq!(parse(&[]).unwrap().plot_paths(), None);
        let args = parse(&["--json", "/tmp/r/run.json"]).unwrap();
        assert_eq!(
            args.plot_paths(),
            Some((
                PathBuf::from("/tmp/r/run-latency.svg"),
                PathBuf::from("/tmp/r/run-throughput.svg")
            ))
        );
        let args = parse(&["--json", "/tmp/r/run.json", "--plot-dir", "/p"]).unwrap();
        assert_eq!(
            args.plot_paths(),
            Some((
                PathBuf::from("/p/latency.svg"),
                PathBuf::from("/p/throughput.svg")
            ))
        );
    }
}
