//! `sluice consume TOPIC`: records to stdout, one per line.

use std::io::{BufWriter, ErrorKind, Write};

use std::time::Duration;

use anyhow::Context;
use client::group::{GroupConsumer, GroupConsumerConfig, OffsetReset};
use client::{
    Client, ConsumedRecord, FetchPosition, FetchResult, ResponseError, FRAME_BYTES_MAX,
    TIMESTAMP_EARLIEST, TIMESTAMP_LATEST,
};

use super::common::{
    is_interrupted, parse_separator, topic_metadata, watch_interrupts, ConnectionArgs,
};

/// How long the broker may hold a fetch waiting for new records.
const FETCH_WAIT_MS: i32 = 500;
/// Response size asked for per fetch; the broker may exceed it by one batch.
const FETCH_BYTES_MAX: i32 = 4 * 1024 * 1024;
/// Records bytes asked for per partition per fetch.
const PARTITION_FETCH_BYTES_MAX: i32 = 1024 * 1024;
/// Fetches in a row that return nothing while records are known to exist before the end offset;
/// past this the broker is not serving them and waiting longer will not help.
const FETCHES_STALLED_MAX: u32 = 20;
/// How long one group poll waits for records; also bounds how late an interrupt is noticed.
const GROUP_POLL_TIMEOUT: Duration = Duration::from_millis(500);
/// Records taken from one group poll.
const GROUP_POLL_RECORDS_MAX: usize = 500;

const _: () = assert!(PARTITION_FETCH_BYTES_MAX <= FETCH_BYTES_MAX);
// Room for one oversized batch on top of the asked-for bytes.
const _: () = assert!((FETCH_BYTES_MAX as usize) * 2 <= FRAME_BYTES_MAX);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    Beginning,
    End,
    Offset(i64),
}

fn parse_start(text: &str) -> Result<StartPosition, String> {
    match text {
        "beginning" | "earliest" => Ok(StartPosition::Beginning),
        "end" | "latest" => Ok(StartPosition::End),
        _ => match text.parse::<i64>() {
            Ok(offset) if offset >= 0 => Ok(StartPosition::Offset(offset)),
            _ => Err(format!(
                "expected beginning, end or a non-negative offset, not {text:?}"
            )),
        },
    }
}

#[derive(clap::Args, Debug)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Read only this partition (default: all partitions).
    #[arg(short = 'p', long)]
    pub partition: Option<i32>,
    /// Where to start: beginning, end, or an offset. With --group: where to start partitions
    /// the group has no committed offset for (beginning or end).
    #[arg(long, default_value = "beginning", value_parser = parse_start)]
    pub from: StartPosition,
    /// Consume as a member of this consumer group: partitions are shared with the group's other
    /// members and consumed offsets are committed.
    #[arg(short = 'g', long, conflicts_with = "partition")]
    pub group: Option<String>,
    /// With --group: do not commit offsets.
    #[arg(long, requires = "group")]
    pub no_commit: bool,
    /// Keep waiting for new records instead of stopping at the end offsets seen at start.
    #[arg(long)]
    pub follow: bool,
    /// Stop after printing this many records.
    #[arg(long)]
    pub max_records: Option<u64>,
    /// Print "key SEP value" instead of only the value.
    #[arg(long)]
    pub print_key: bool,
    /// Separator printed between key and value (escapes like "\t" are understood).
    #[arg(long, value_name = "SEP", default_value = "\\t", value_parser = parse_separator)]
    pub key_separator: String,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Read position of one partition.
#[derive(Debug)]
struct Cursor {
    partition: i32,
    offset_next: i64,
    /// Without --follow: the log end offset when we started; reading stops there.
    offset_end: Option<i64>,
}

impl Cursor {
    fn is_done(&self) -> bool {
        self.offset_end.is_some_and(|end| self.offset_next >= end)
    }
}

pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let mut client = args.connection.connect()?;
    let stdout = std::io::stdout();
    let mut output = BufWriter::new(stdout.lock());
    let mut printer = Printer {
        output: &mut output,
        args: &args,
        records_printed: 0,
    };
    let result = match &args.group {
        Some(group) => {
            topic_metadata(&mut client, &args.topic)?;
            drop(client);
            consume_group(&args, group, &mut printer)
        }
        None => {
            let mut cursors = open_cursors(&mut client, &args)?;
            consume(&mut client, &args, &mut cursors, &mut printer)
        }
    };
    match result {
        Err(error) if is_broken_pipe(&error) => Ok(()),
        Err(error) => Err(error),
        Ok(()) => match output.flush() {
            Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(()),
            result => result.context("writing stdout"),
        },
    }
}

fn open_cursors(client: &mut Client, args: &ConsumeArgs) -> anyhow::Result<Vec<Cursor>> {
    let topic = topic_metadata(client, &args.topic)?;
    let partitions: Vec<i32> = match args.partition {
        None => topic.partitions.iter().map(|p| p.partition).collect(),
        Some(partition) => {
            anyhow::ensure!(
                topic.partitions.iter().any(|p| p.partition == partition),
                "topic {:?} has no partition {partition}",
                args.topic
            );
            vec![partition]
        }
    };
    let mut cursors = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let mut offsets = |timestamp| {
            client
                .list_offsets(&args.topic, partition, timestamp)
                .with_context(|| format!("offsets of {}-{partition}", args.topic))
        };
        let offset_next = match args.from {
            StartPosition::Beginning => offsets(TIMESTAMP_EARLIEST)?,
            StartPosition::End => offsets(TIMESTAMP_LATEST)?,
            StartPosition::Offset(offset) => offset,
        };
        let offset_end = if args.follow {
            None
        } else {
            Some(offsets(TIMESTAMP_LATEST)?)
        };
        cursors.push(Cursor {
            partition,
            offset_next,
            offset_end,
        });
    }
    Ok(cursors)
}

fn consume(
    client: &mut Client,
    args: &ConsumeArgs,
    cursors: &mut [Cursor],
    printer: &mut Printer<'_, impl Write>,
) -> anyhow::Result<()> {
    let mut fetches_stalled: u32 = 0;
    loop {
        if printer.is_full() {
            return Ok(());
        }
        let active: Vec<usize> = (0..cursors.len())
            .filter(|&i| !cursors[i].is_done())
            .collect();
        if active.is_empty() {
            return Ok(());
        }
        let positions: Vec<FetchPosition> = active
            .iter()
            .map(|&index| FetchPosition {
                topic: &args.topic,
                partition: cursors[index].partition,
                offset: cursors[index].offset_next,
            })
            .collect();
        let results = client.fetch_many(
            &positions,
            FETCH_WAIT_MS,
            FETCH_BYTES_MAX,
            PARTITION_FETCH_BYTES_MAX,
        )?;
        let mut progressed = false;
        for (&index, result) in active.iter().zip(results) {
            let cursor = &mut cursors[index];
            let offset_before = cursor.offset_next;
            advance(client, &args.topic, cursor, result, printer)?;
            progressed |= cursor.offset_next != offset_before;
            if printer.is_full() {
                break;
            }
        }
        printer.output.flush()?;
        fetches_stalled = if progressed { 0 } else { fetches_stalled + 1 };
        if !args.follow && fetches_stalled >= FETCHES_STALLED_MAX {
            anyhow::bail!(
                "no records returned in {FETCHES_STALLED_MAX} fetches although the end offsets \
                 at start lie ahead"
            );
        }
    }
}

/// Consumes as a group member until interrupted, until --max-records, or (without --follow)
/// until the assigned partitions are read up to their end; then commits and leaves the group.
fn consume_group(
    args: &ConsumeArgs,
    group: &str,
    printer: &mut Printer<'_, impl Write>,
) -> anyhow::Result<()> {
    let offset_reset = match args.from {
        StartPosition::Beginning => OffsetReset::Earliest,
        StartPosition::End => OffsetReset::Latest,
        StartPosition::Offset(_) => {
            anyhow::bail!("--from takes beginning or end with --group; the group keeps offsets")
        }
    };
    let mut config = GroupConsumerConfig::new(
        &args.connection.bootstrap_server,
        group,
        vec![args.topic.clone()],
    );
    config.client = args.connection.client_config();
    config.offset_reset = offset_reset;
    if args.no_commit {
        config.auto_commit_interval = None;
    }
    watch_interrupts();
    let mut consumer =
        GroupConsumer::new(config).with_context(|| format!("joining group {group:?}"))?;
    while !printer.is_full() && !is_interrupted() {
        let remaining = args
            .max_records
            .map_or(u64::MAX, |max| max - printer.records_printed);
        let records_max = usize::try_from(remaining)
            .unwrap_or(usize::MAX)
            .min(GROUP_POLL_RECORDS_MAX);
        let records = consumer.poll_at_most(GROUP_POLL_TIMEOUT, records_max)?;
        for record in &records {
            printer.print(&record.record)?;
        }
        printer.output.flush()?;
        if !args.follow && records.is_empty() && consumer.is_caught_up() {
            break;
        }
    }
    consumer
        .close()
        .with_context(|| format!("committing offsets and leaving group {group:?}"))
}

/// Prints a partition's fetched records and moves its cursor past them.
fn advance(
    client: &mut Client,
    topic: &str,
    cursor: &mut Cursor,
    result: FetchResult,
    printer: &mut Printer<'_, impl Write>,
) -> anyhow::Result<()> {
    let partition = cursor.partition;
    match result.error {
        None => {}
        Some(ResponseError::OffsetOutOfRange) => {
            let log_start = client.list_offsets(topic, partition, TIMESTAMP_EARLIEST)?;
            anyhow::ensure!(
                cursor.offset_next < log_start,
                "offset {} is beyond the end of {topic}-{partition} (high watermark {})",
                cursor.offset_next,
                result.high_watermark
            );
            eprintln!(
                "offset {} of {topic}-{partition} was deleted; continuing at {log_start}",
                cursor.offset_next
            );
            cursor.offset_next = log_start;
            return Ok(());
        }
        Some(error) => {
            let name = client::error::error_name(error);
            anyhow::bail!("fetch from {topic}-{partition}: {name}");
        }
    }
    for record in &result.records {
        let past_end = cursor.offset_end.is_some_and(|end| record.offset >= end);
        if past_end || printer.is_full() {
            // Stop here; the next fetch (if any) resumes at this record.
            cursor.offset_next = record.offset;
            return Ok(());
        }
        printer.print(record)?;
    }
    cursor.offset_next = result.next_offset;
    Ok(())
}

struct Printer<'a, W: Write> {
    output: &'a mut W,
    args: &'a ConsumeArgs,
    records_printed: u64,
}

impl<W: Write> Printer<'_, W> {
    fn is_full(&self) -> bool {
        self.args
            .max_records
            .is_some_and(|max| self.records_printed >= max)
    }

    fn print(&mut self, record: &ConsumedRecord) -> std::io::Result<()> {
        if self.args.print_key {
            match &record.key {
                Some(key) => self.output.write_all(key)?,
                None => self.output.write_all(b"null")?,
            }
            self.output.write_all(self.args.key_separator.as_bytes())?;
        }
        match &record.value {
            Some(value) => self.output.write_all(value)?,
            None => self.output.write_all(b"null")?,
        }
        self.output.write_all(b"\n")?;
        self.records_printed += 1;
        Ok(())
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|error| error.kind() == ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions_parse() {
        assert_eq!(parse_start("beginning"), Ok(StartPosition::Beginning));
        assert_eq!(parse_start("end"), Ok(StartPosition::End));
        assert_eq!(parse_start("42"), Ok(StartPosition::Offset(42)));
        assert!(parse_start("-3").is_err());
        assert!(parse_start("middle").is_err());
    }
}
