//! Runs a workload: sets up the topic, starts the actors, shows progress, and gathers their
//! results into a report.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use client::Client;
use hdrhistogram::Histogram;

use crate::actors::consumer::{self, ConsumerConfig, ConsumerMode, ConsumerResult};
use crate::actors::producer;
use crate::actors::producer_config::{ProducerConfig, ProducerResult, Quota};
use crate::actors::{client_config, Shared};
use crate::args::{Args, Finish, Workload};
use crate::clock::Clock;
use crate::plot::Sample;
use crate::report::{
    progress_line, ConsumeReport, Latencies, PlotData, ProduceReport, Report, Settings, Throughput,
};
use crate::schedule::{split_evenly, Schedule};
use crate::stats::{latency_histogram, Progress};
use crate::verify::{StreamKey, Verifier};

const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Throughput samples for the plot: four a second, for up to about seven hours.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
const SAMPLES_MAX: usize = 100_000;
/// How long a created topic may take to get a leader for every partition.
const TOPIC_READY_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(args: &Args) -> anyhow::Result<Report> {
    let partitions = ensure_topic(args)?;
    let clock = Clock::new();
    let shared = Shared {
        bootstrap: args.bootstrap.clone(),
        topic: args.topic.clone(),
        run_id: run_id(&clock),
        clock,
        progress: Arc::new(Progress::default()),
        producers_done: Arc::new(AtomicBool::new(false)),
    };
    let producing = args.workload != Workload::Consume;
    let consuming = args.workload != Workload::Produce;
    let consumer_configs = if consuming {
        consumer_configs(args, partitions)?
    } else {
        Vec::new()
    };
    let producer_configs = if producing {
        producer_configs(args, partitions)?
    } else {
        Vec::new()
    };

    // Consumers connect and find their start offsets before any producer sends.
    let mut prepared = Vec::with_capacity(consumer_configs.len());
    for config in &consumer_configs {
        prepared.push(consumer::prepare(&shared, config)?);
    }
    let start = Instant::now();
    let (consumer_sender, consumer_results) = sync_channel(consumer_configs.len().max(1));
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    for (config, (client, offsets)) in consumer_configs.into_iter().zip(prepared) {
        let (shared, sender) = (shared.clone(), consumer_sender.clone());
        threads.push(std::thread::spawn(move || {
            let _ = sender.send(consumer::run(&shared, &config, client, offsets, start));
        }));
    }
    let (producer_sender, producer_results) = sync_channel(producer_configs.len().max(1));
    let producer_count = producer_configs.len();
    for config in producer_configs {
        let (shared, sender) = (shared.clone(), producer_sender.clone());
        threads.push(std::thread::spawn(move || {
            let _ = sender.send(producer::run(&shared, &config, start));
        }));
    }
    drop((consumer_sender, producer_sender));
    let progress_done = Arc::new(AtomicBool::new(false));
    let progress_thread = spawn_progress(&shared, start, progress_done.clone());

    let produced = gather(&producer_results, producer_count);
    shared.producers_done.store(true, Ordering::Release);
    let consumed = gather(&consumer_results, threads.len() - producer_count);
    progress_done.store(true, Ordering::Release);
    for thread in threads {
        thread.join().expect("actor threads do not panic");
    }
    let samples = progress_thread
        .join()
        .expect("progress thread does not panic");
    let produced = produced.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let consumed = consumed.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let mut plot = PlotData {
        samples,
        ..PlotData::default()
    };
    let produce = producing.then(|| {
        let (report, latency) = produce_report(&produced);
        plot.ack_latency = Some(latency);
        report
    });
    let consume = consuming.then(|| {
        let (report, latency) = consume_report(&produced, consumed, producing);
        plot.e2e_latency = (args.workload == Workload::E2e).then_some(latency);
        report
    });
    Ok(Report {
        settings: settings(args, partitions),
        produce,
        consume,
        plot,
    })
}

fn run_id(clock: &Clock) -> u32 {
    let nanos = clock.unix_ns_now();
    (nanos ^ (nanos >> 32) ^ u64::from(std::process::id()).rotate_left(16)) as u32
}

/// Creates the topic when missing; returns its partition count.
fn ensure_topic(args: &Args) -> anyhow::Result<u32> {
    let mut client = Client::connect_with(&args.bootstrap, client_config("admin", 0))
        .with_context(|| format!("connecting to {}", args.bootstrap))?;
    let topics = [args.topic.as_str()];
    let deadline = Instant::now() + TOPIC_READY_TIMEOUT;
    let mut created = false;
    loop {
        let metadata = client.metadata(Some(&topics))?;
        let topic = metadata
            .topic(&args.topic)
            .filter(|topic| topic.error_code == 0 && !topic.partitions.is_empty());
        match topic {
            Some(topic)
                if topic
                    .partitions
                    .iter()
                    .all(|p| p.error_code == 0 && p.leader_id >= 0) =>
            {
                let partitions = topic.partitions.len() as u32;
                if args.partitions.is_some_and(|asked| asked != partitions) {
                    eprintln!(
                        "sluice-bench: topic {} exists with {partitions} partitions; using them",
                        args.topic
                    );
                }
                return Ok(partitions);
            }
            // It exists; its partitions are still getting leaders.
            Some(_) => {}
            None if args.workload == Workload::Consume => {
                bail!(
                    "topic {} does not exist; run the produce workload first",
                    args.topic
                )
            }
            None if !created => {
                let partitions = i32::try_from(args.partitions_to_create())?;
                match client.create_topic(&args.topic, partitions, 1, &[]) {
                    Ok(()) => {}
                    Err(error)
                        if error.kafka_error()
                            == Some(client::ResponseError::TopicAlreadyExists) => {}
                    Err(error) => return Err(error).context("creating the topic"),
                }
                created = true;
                continue;
            }
            None => {}
        }
        if Instant::now() >= deadline {
            bail!(
                "topic {} has no leader for every partition after {TOPIC_READY_TIMEOUT:?}",
                args.topic
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn producer_configs(args: &Args, partitions: u32) -> anyhow::Result<Vec<ProducerConfig>> {
    let producers = u64::from(args.producers);
    if args.rate.is_some_and(|rate| rate < producers) {
        bail!("--rate must be at least one record per second per producer");
    }
    if let Finish::Records(records) = args.finish() {
        if records < producers {
            bail!("--records must be at least one per producer");
        }
    }
    Ok((0..args.producers)
        .map(|id| ProducerConfig {
            id,
            partitions,
            record_size: args.record_size,
            batch_records: args.batch_records,
            acks: args.acks,
            idempotence: args.idempotence,
            client: args.client,
            compression: args.compression,
            keys: args.keys,
            batch_bytes: args.batch_bytes,
            buffer_bytes: args.buffer_bytes,
            linger: Duration::from_secs_f64(args.linger_ms / 1_000.0),
            max_in_flight: args.max_in_flight,
            quota: match args.finish() {
                Finish::Duration(duration) => Quota::Until(duration),
                Finish::Records(records) => {
                    Quota::Records(split_evenly(records, producers, u64::from(id)))
                }
            },
            schedule: args.rate.map(|rate| {
                Schedule::new(
                    split_evenly(rate, producers, u64::from(id)),
                    args.batch_records,
                )
            }),
        })
        .collect())
}

fn consumer_configs(args: &Args, partitions: u32) -> anyhow::Result<Vec<ConsumerConfig>> {
    if args.consumers > partitions {
        bail!(
            "--consumers {} is more than the topic's {partitions} partitions",
            args.consumers
        );
    }
    let mode = match args.workload {
        Workload::E2e => ConsumerMode::EndToEnd,
        _ => ConsumerMode::Drain {
            deadline: match args.finish() {
                Finish::Duration(duration) => Some(duration),
                Finish::Records(_) => None,
            },
            records_max: args.records,
        },
    };
    Ok((0..args.consumers)
        .map(|id| ConsumerConfig {
            id,
            partitions: (0..partitions as i32)
                .filter(|p| *p as u32 % args.consumers == id)
                .collect(),
            mode,
        })
        .collect())
}

fn gather<T>(results: &Receiver<anyhow::Result<T>>, count: usize) -> Vec<anyhow::Result<T>> {
    (0..count)
        .map(|_| {
            results
                .recv()
                .context("an actor thread died")
                .and_then(|result| result)
        })
        .collect()
}

/// Samples the progress counters every SAMPLE_INTERVAL for the throughput plot and, when stderr
/// is a terminal, prints a progress line every PROGRESS_INTERVAL.
fn spawn_progress(
    shared: &Shared,
    start: Instant,
    done: Arc<AtomicBool>,
) -> JoinHandle<Vec<Sample>> {
    let progress = shared.progress.clone();
    std::thread::spawn(move || {
        let terminal = std::io::stderr().is_terminal();
        let mut samples = vec![Sample {
            seconds: 0.0,
            totals: progress.snapshot(),
        }];
        let mut before = progress.snapshot();
        let mut tick = Instant::now();
        let mut shown = false;
        let mut sampled = start;
        while !done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(10));
            if sampled.elapsed() >= SAMPLE_INTERVAL && samples.len() < SAMPLES_MAX {
                sampled = Instant::now();
                samples.push(Sample {
                    seconds: start.elapsed().as_secs_f64(),
                    totals: progress.snapshot(),
                });
            }
            if !terminal || tick.elapsed() < PROGRESS_INTERVAL {
                continue;
            }
            let now = progress.snapshot();
            eprint!(
                "\r{}\x1b[K",
                progress_line(start.elapsed(), now, before, tick.elapsed())
            );
            (before, tick, shown) = (now, Instant::now(), true);
        }
        if shown {
            eprintln!();
        }
        samples
    })
}

fn settings(args: &Args, partitions: u32) -> Settings {
    Settings {
        bootstrap: args.bootstrap.clone(),
        topic: args.topic.clone(),
        partitions,
        workload: args.workload,
        producers: if args.workload == Workload::Consume {
            0
        } else {
            args.producers
        },
        consumers: if args.workload == Workload::Produce {
            0
        } else {
            args.consumers
        },
        record_size: Settings::record_size_text(args.record_size),
        batch_records: args.batch_records,
        client: args.client,
        compression: args.compression,
        keys: args.keys.to_string(),
        batch_bytes: args.batch_bytes,
        buffer_bytes: args.buffer_bytes,
        linger_ms: args.linger_ms,
        max_in_flight: args.max_in_flight,
        acks: Settings::acks_text(args.acks),
        idempotence: args.idempotence,
        finish: args.finish(),
        rate_records_per_sec: args.rate,
    }
}

fn produce_report(results: &[ProducerResult]) -> (ProduceReport, Histogram<u64>) {
    let mut latency = latency_histogram();
    for result in results {
        latency.add(&result.latency).expect("same histogram bounds");
    }
    let elapsed = results.iter().map(|r| r.elapsed).max().unwrap_or_default();
    let report = ProduceReport {
        throughput: Throughput::new(
            results.iter().map(|r| r.records).sum(),
            results.iter().map(|r| r.bytes).sum(),
            elapsed,
        ),
        requests: results.iter().map(|r| r.requests).sum(),
        batches: results.iter().map(|r| r.batches).sum(),
        resends: results.iter().map(|r| r.resends).sum(),
        ack_latency: Latencies::from_histogram(&latency),
    };
    (report, latency)
}

fn consume_report(
    produced: &[ProducerResult],
    results: Vec<ConsumerResult>,
    producing: bool,
) -> (ConsumeReport, Histogram<u64>) {
    let mut latency = latency_histogram();
    let mut verifier: Option<Verifier> = None;
    let elapsed = results.iter().map(|r| r.elapsed).max().unwrap_or_default();
    let (records, bytes) = (
        results.iter().map(|r| r.records).sum(),
        results.iter().map(|r| r.bytes).sum(),
    );
    let drain_timed_out = results.iter().any(|r| r.drain_timed_out);
    for result in results {
        latency.add(&result.latency).expect("same histogram bounds");
        match &mut verifier {
            Some(verifier) => verifier.merge(result.verifier),
            None => verifier = Some(result.verifier),
        }
    }
    // Only when this run produced do we know how many records each stream should hold.
    let expected: HashMap<StreamKey, u64> = produced
        .iter()
        .flat_map(|r| r.produced.iter().map(|(key, &records)| (*key, records)))
        .collect();
    let verify = verifier
        .map(|verifier| verifier.counts(producing.then_some(&expected)))
        .unwrap_or_default();
    let report = ConsumeReport {
        throughput: Throughput::new(records, bytes, elapsed),
        e2e_latency: Latencies::from_histogram(&latency),
        verify,
        drain_timed_out,
    };
    (report, latency)
}
