//! The results: a summary on stdout, a progress line on stderr, and the same figures as JSON.

use std::io::Write;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::args::{Acks, ClientKind, CompressionKind, Finish, RecordSize, Workload};
use crate::plot::{latency_chart, throughput_chart, Sample};
use crate::stats::ProgressSnapshot;
use crate::verify::VerifyCounts;

const BYTES_PER_MB: f64 = 1_000_000.0;

#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    pub count: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p99_9_us: f64,
    pub p99_99_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl Latencies {
    pub fn from_histogram(histogram: &Histogram<u64>) -> Option<Latencies> {
        if histogram.is_empty() {
            return None;
        }
        let us = |nanos: u64| nanos as f64 / 1_000.0;
        Some(Latencies {
            count: histogram.len(),
            p50_us: us(histogram.value_at_quantile(0.50)),
            p90_us: us(histogram.value_at_quantile(0.90)),
            p99_us: us(histogram.value_at_quantile(0.99)),
            p99_9_us: us(histogram.value_at_quantile(0.999)),
            p99_99_us: us(histogram.value_at_quantile(0.9999)),
            max_us: us(histogram.max()),
            mean_us: histogram.mean() / 1_000.0,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub records_per_sec: f64,
    pub mb_per_sec: f64,
}

impl Throughput {
    pub fn new(records: u64, bytes: u64, elapsed: Duration) -> Throughput {
        let seconds = elapsed.as_secs_f64().max(f64::MIN_POSITIVE);
        Throughput {
            records,
            bytes,
            seconds: elapsed.as_secs_f64(),
            records_per_sec: records as f64 / seconds,
            mb_per_sec: bytes as f64 / BYTES_PER_MB / seconds,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub bootstrap: String,
    pub topic: String,
    pub partitions: u32,
    pub workload: Workload,
    pub producers: u32,
    pub consumers: u32,
    pub record_size: String,
    pub batch_records: u64,
    pub client: ClientKind,
    pub compression: CompressionKind,
    pub keys: String,
    pub batch_bytes: usize,
    pub buffer_bytes: usize,
    pub linger_ms: f64,
    pub max_in_flight: usize,
    pub acks: String,
    pub idempotence: bool,
    pub finish: Finish,
    pub rate_records_per_sec: Option<u64>,
}

impl Settings {
    pub fn record_size_text(size: RecordSize) -> String {
        size.to_string()
    }

    pub fn acks_text(acks: Acks) -> String {
        acks.to_string()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ProduceReport {
    pub throughput: Throughput,
    pub requests: u64,
    pub batches: u64,
    /// Batches sent again after an error (batching client).
    pub resends: u64,
    /// From the (scheduled) send to the acknowledgement: per record with the batching client,
    /// per request with the simple client.
    pub ack_latency: Option<Latencies>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConsumeReport {
    pub throughput: Throughput,
    /// Per record, receive time minus embedded send time; e2e workload only.
    pub e2e_latency: Option<Latencies>,
    pub verify: VerifyCounts,
    pub drain_timed_out: bool,
}

/// What the plots are drawn from; not part of the JSON.
#[derive(Debug, Clone, Default)]
pub struct PlotData {
    pub ack_latency: Option<Histogram<u64>>,
    pub e2e_latency: Option<Histogram<u64>>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub settings: Settings,
    pub produce: Option<ProduceReport>,
    pub consume: Option<ConsumeReport>,
    #[serde(skip)]
    pub plot: PlotData,
}

impl Report {
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        self.print_settings(out)?;
        if let Some(produce) = &self.produce {
            self.print_produce(out, produce)?;
        }
        if let Some(consume) = &self.consume {
            self.print_consume(out, consume)?;
        }
        Ok(())
    }

    /// The first line: the workload, the target and, for producing runs, the client settings.
    fn print_settings(&self, out: &mut impl Write) -> std::io::Result<()> {
        let s = &self.settings;
        write!(
            out,
            "sluice-bench {} against {} topic {} ({} partitions)",
            s.workload, s.bootstrap, s.topic, s.partitions,
        )?;
        if self.produce.is_some() {
            write!(out, ": record size {}, ", s.record_size)?;
            match s.client {
                ClientKind::Simple => write!(
                    out,
                    "simple client, {} records per request",
                    s.batch_records
                )?,
                ClientKind::Batching => write!(
                    out,
                    "batches of {} bytes, linger {} ms, {} in flight, {} compression, keys {}",
                    s.batch_bytes, s.linger_ms, s.max_in_flight, s.compression, s.keys
                )?,
            }
            write!(
                out,
                ", acks {}{}",
                s.acks,
                if s.idempotence { ", idempotent" } else { "" },
            )?;
            if let Some(rate) = s.rate_records_per_sec {
                write!(out, ", fixed rate {rate} records/s")?;
            }
        }
        writeln!(out)
    }

    fn print_produce(&self, out: &mut impl Write, produce: &ProduceReport) -> std::io::Result<()> {
        let s = &self.settings;
        print_throughput(out, "produce", &produce.throughput, s.producers)?;
        writeln!(
            out,
            "  requests {}, batches {}, resent {}",
            produce.requests, produce.batches, produce.resends
        )?;
        let per = match s.client {
            ClientKind::Simple => "produce ack latency (per request)",
            ClientKind::Batching => "produce ack latency (per record)",
        };
        print_latencies(out, per, produce.ack_latency.as_ref())
    }

    fn print_consume(&self, out: &mut impl Write, consume: &ConsumeReport) -> std::io::Result<()> {
        let s = &self.settings;
        print_throughput(out, "consume", &consume.throughput, s.consumers)?;
        if s.workload == Workload::E2e {
            print_latencies(
                out,
                "end-to-end latency (per record)",
                consume.e2e_latency.as_ref(),
            )?;
        }
        let v = &consume.verify;
        writeln!(
            out,
            "verify: lost {} duplicated {} reordered {} (foreign records skipped {}){}",
            v.lost,
            v.duplicated,
            v.reordered,
            v.foreign,
            if consume.drain_timed_out {
                "; DRAIN TIMED OUT"
            } else {
                ""
            },
        )
    }

    /// A short description for the plot titles.
    fn plot_title(&self, what: &str) -> String {
        let s = &self.settings;
        format!(
            "{what}: {} on {} ({} partitions), records {} B, acks {}, {} client",
            s.workload, s.topic, s.partitions, s.record_size, s.acks, s.client
        )
    }

    /// Writes the latency-percentile plot and the throughput-over-time plot.
    pub fn write_plots(
        &self,
        latency: &std::path::Path,
        throughput: &std::path::Path,
    ) -> anyhow::Result<()> {
        let mut histograms = Vec::new();
        if let Some(ack) = &self.plot.ack_latency {
            histograms.push(("produce ack", ack));
        }
        if let Some(e2e) = &self.plot.e2e_latency {
            histograms.push(("end to end", e2e));
        }
        for path in [latency, throughput] {
            if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
        }
        let latency_svg = latency_chart(&self.plot_title("latency by percentile"), &histograms);
        std::fs::write(latency, latency_svg.to_svg())?;
        let throughput_svg = throughput_chart(&self.plot_title("throughput"), &self.plot.samples);
        std::fs::write(throughput, throughput_svg.to_svg())?;
        Ok(())
    }

    pub fn write_json(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")?;
        Ok(())
    }
}

fn print_throughput(
    out: &mut impl Write,
    what: &str,
    t: &Throughput,
    actors: u32,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{what}: {} records, {:.1} MB in {:.2} s by {actors} thread(s): {:.0} records/s, {:.2} MB/s",
        t.records,
        t.bytes as f64 / BYTES_PER_MB,
        t.seconds,
        t.records_per_sec,
        t.mb_per_sec,
    )
}

fn print_latencies(
    out: &mut impl Write,
    what: &str,
    latencies: Option<&Latencies>,
) -> std::io::Result<()> {
    let Some(l) = latencies else {
        return writeln!(out, "{what}: no samples");
    };
    writeln!(
        out,
        "{what}, µs over {} samples: p50 {:.0} p90 {:.0} p99 {:.0} p99.9 {:.0} p99.99 {:.0} max {:.0} (mean {:.0})",
        l.count, l.p50_us, l.p90_us, l.p99_us, l.p99_9_us, l.p99_99_us, l.max_us, l.mean_us,
    )
}

/// One progress line: totals and rates over the last interval.
pub fn progress_line(
    elapsed: Duration,
    now: ProgressSnapshot,
    before: ProgressSnapshot,
    interval: Duration,
) -> String {
    let seconds = interval.as_secs_f64().max(f64::MIN_POSITIVE);
    let rate = |records: u64, bytes: u64| {
        (
            records as f64 / seconds,
            bytes as f64 / BYTES_PER_MB / seconds,
        )
    };
    let (produce_rps, produce_mbps) = rate(
        now.produced_records - before.produced_records,
        now.produced_bytes - before.produced_bytes,
    );
    let (consume_rps, consume_mbps) = rate(
        now.consumed_records - before.consumed_records,
        now.consumed_bytes - before.consumed_bytes,
    );
    format!(
        "[{:6.1}s] produced {} ({:.0} rec/s, {:.1} MB/s)  consumed {} ({:.0} rec/s, {:.1} MB/s)",
        elapsed.as_secs_f64(),
        now.produced_records,
        produce_rps,
        produce_mbps,
        now.consumed_records,
        consume_rps,
        consume_mbps,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{latency_histogram, record_latency};

    #[test]
    fn throughput_arithmetic() {
        let t = Throughput::new(2_000, 2_000_000, Duration::from_secs(2));
        assert_eq!(t.records_per_sec, 1_000.0);
        assert_eq!(t.mb_per_sec, 1.0);
    }

    #[test]
    fn latencies_in_microseconds() {
        assert!(Latencies::from_histogram(&latency_histogram()).is_none());
        let mut histogram = latency_histogram();
        for micros in 1..=100 {
            record_latency(&mut histogram, Duration::from_micros(micros), 1);
        }
        let l = Latencies::from_histogram(&histogram).unwrap();
        assert_eq!(l.count, 100);
        assert!((49.9..=50.1).contains(&l.p50_us), "{}", l.p50_us);
        assert!((99.9..=100.1).contains(&l.max_us), "{}", l.max_us);
    }
}
