//! sluice-bench: producers and consumers against any Kafka bootstrap address, with hdrhistogram
//! latencies, throughput, delivery verification, a fixed-rate mode and JSON results.
//!
//! Layout: `args` (command line), `workload` (topic setup, actors, gathering), `actors`
//! (producer and consumer threads; `batching` drives the batching producer), finish conditions
//! in `args::Finish` and the actors' quotas, `report` (summary, progress line, JSON), `plot` (SVG
//! latency and throughput plots); `value`, `verify`, `schedule`, `stats` and `clock` are the pure
//! pieces they share.

mod actors;
mod args;
mod clock;
mod plot;
mod report;
mod schedule;
mod stats;
mod value;
mod verify;
mod workload;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::Args;

/// Exit status when the run completed but records were lost, duplicated or reordered.
const EXIT_VERIFY_FAILED: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(message) = args.validate() {
        Args::command()
            .error(clap::error::ErrorKind::ArgumentConflict, message)
            .exit();
    }
    let report = match workload::run(&args) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("sluice-bench: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = report.print(&mut std::io::stdout().lock()) {
        eprintln!("sluice-bench: writing the report: {error}");
        return ExitCode::FAILURE;
    }
    if let Some(path) = &args.json {
        if let Err(error) = report.write_json(path) {
            eprintln!("sluice-bench: writing {}: {error:#}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some((latency, throughput)) = args.plot_paths() {
        if let Err(error) = report.write_plots(&latency, &throughput) {
            eprintln!("sluice-bench: writing the plots: {error:#}");
            return ExitCode::FAILURE;
        }
    }
    let failed = report.consume.as_ref().is_some_and(|consume| {
        let v = consume.verify;
        v.lost + v.duplicated + v.reordered > 0 || consume.drain_timed_out
    });
    if failed {
        return ExitCode::from(EXIT_VERIFY_FAILED);
    }
    ExitCode::SUCCESS
}
