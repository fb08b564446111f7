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

/// Load generator for Sluice and any Kafka-compatible broker.
///
/// Producers and consumers are OS threads with one connection each. Every record value starts
/// with a 32-byte header (producer id, per-partition sequence number, send time) so consumers can
/// count lost, duplicated and reordered records and measure end-to-end latency.
#[derive(Debug, Clone, Parser)]
#[command(name = "sluice-bench", version)]
pub struct Args {
    /// Broker address (host:port) to connect every actor to.
    #[arg(long, default_value = net::client::BOOTSTRAP_DEFAULT)]
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

    /// Records per produce request (one RecordBatch).
    #[arg(long, default_value_t = 100)]
    pub batch_records: u64,

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

    /// Also write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
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
    }
}
