//! `sluice produce TOPIC`: stdin lines to records.

use std::io::{BufRead, Read};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use client::{partition_for_key, Client, IdempotentProducer, ProduceRecord};

use super::common::{parse_key_value, parse_separator, topic_metadata, ConnectionArgs};

/// Records per produce request per partition: large enough to amortise a round trip when a file
/// is piped in, small enough to keep the request well under the broker's frame limit.
const BATCH_RECORDS_MAX: usize = 1000;
/// Estimated record bytes per produce request per partition (Kafka's default message.max.bytes).
const BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Longest input line; a longer record could never fit in a batch.
const LINE_BYTES_MAX: usize = BATCH_BYTES_MAX;
/// Lines read ahead of the producer; bounds memory when the broker is slower than stdin.
const LINES_QUEUED_MAX: usize = 10_000;
/// How long a partly filled batch waits for more input, so interactive typing gets sent promptly.
const LINGER: Duration = Duration::from_millis(100);
/// Per-record overhead assumed when estimating batch bytes (varint lengths, deltas, attributes).
const RECORD_OVERHEAD_BYTES: usize = 24;
const ACKS_ALL: i16 = -1;

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    pub topic: String,
    /// Send every record to this partition instead of partitioning by key.
    #[arg(short = 'p', long)]
    pub partition: Option<i32>,
    /// Split each line at the first SEP into key and value (escapes like "\t" are understood).
    #[arg(long, value_name = "SEP", value_parser = parse_separator)]
    pub key_separator: Option<String>,
    /// Acknowledgements to wait for: 0 (none), 1 (leader), all. Default all; idempotence
    /// requires all.
    #[arg(long, value_parser = parse_acks)]
    pub acks: Option<i16>,
    /// Number batches per partition so the broker drops resent duplicates (needs acks all).
    #[arg(long, default_value = "true", action = clap::ArgAction::Set, value_name = "BOOL")]
    pub idempotence: bool,
    /// A header added to every record; may be repeated.
    #[arg(long = "header", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub headers: Vec<(String, String)>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

fn parse_acks(text: &str) -> Result<i16, String> {
    match text {
        "all" | "-1" => Ok(-1),
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(format!("acks must be 0, 1 or all, not {text:?}")),
    }
}

/// acks=all unless asked otherwise; idempotence refuses anything else, as Kafka does.
fn effective_acks(acks: Option<i16>, idempotence: bool) -> anyhow::Result<i16> {
    match (acks, idempotence) {
        (None, _) => Ok(ACKS_ALL),
        (Some(acks), true) if acks != ACKS_ALL => anyhow::bail!(
            "--acks {acks} cannot be used with idempotence; use --acks all or --idempotence false"
        ),
        (Some(acks), _) => Ok(acks),
    }
}

/// Sends batches with the plain client or, with idempotence, through an `IdempotentProducer`.
enum Sender {
    Plain(Client),
    Idempotent(IdempotentProducer),
}

impl Sender {
    fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[ProduceRecord],
        acks: i16,
    ) -> anyhow::Result<()> {
        match self {
            Sender::Plain(client) => client.produce(topic, partition, records, acks)?,
            Sender::Idempotent(producer) => producer.produce(topic, partition, records, acks)?,
        };
        Ok(())
    }
}

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let acks = effective_acks(args.acks, args.idempotence)?;
    let mut client = args.connection.connect()?;
    let topic = topic_metadata(&mut client, &args.topic)?;
    let partition_ids: Vec<i32> = topic.partitions.iter().map(|p| p.partition).collect();
    if let Some(partition) = args.partition {
        anyhow::ensure!(
            partition_ids.contains(&partition),
            "topic {:?} has no partition {partition} (partitions: 0..{})",
            args.topic,
            partition_ids.len()
        );
    }
    let sender = if args.idempotence {
        Sender::Idempotent(
            IdempotentProducer::new(client).context("initialising the idempotent producer")?,
        )
    } else {
        Sender::Plain(client)
    };
    let lines = spawn_line_reader();
    let mut producer = Producer {
        sender,
        args: &args,
        acks,
        partition_ids,
        batches: Vec::new(),
        round_robin_next: 0,
        records_produced: 0,
    };
    producer.batches = vec![Batch::default(); producer.partition_ids.len()];
    producer.run(lines)?;
    eprintln!(
        "{} records produced to {}",
        producer.records_produced, args.topic
    );
    Ok(())
}

/// Reads stdin on its own thread so the producer can send a partial batch after LINGER.
fn spawn_line_reader() -> Receiver<anyhow::Result<Vec<u8>>> {
    let (sender, receiver) = mpsc::sync_channel(LINES_QUEUED_MAX);
    thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut stdin = stdin.lock();
        loop {
            match read_line(&mut stdin) {
                Ok(None) => break,
                Ok(Some(line)) => {
                    if sender.send(Ok(line)).is_err() {
                        break; // The producer stopped.
                    }
                }
                Err(error) => {
                    let _ = sender.send(Err(error));
                    break;
                }
            }
        }
    });
    receiver
}

/// One line without its "\n" or "\r\n"; `None` at end of input.
fn read_line(input: &mut impl BufRead) -> anyhow::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let limit = (LINE_BYTES_MAX + 2) as u64; // Room for "\r\n".
    input
        .take(limit)
        .read_until(b'\n', &mut line)
        .context("reading stdin")?;
    if line.is_empty() {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    anyhow::ensure!(
        line.len() <= LINE_BYTES_MAX,
        "input line longer than {LINE_BYTES_MAX} bytes"
    );
    Ok(Some(line))
}

#[derive(Debug, Default, Clone)]
struct Batch {
    records: Vec<ProduceRecord>,
    bytes: usize,
}

struct Producer<'a> {
    sender: Sender,
    args: &'a ProduceArgs,
    acks: i16,
    /// Partition ids in metadata order; `batches[i]` collects records for `partition_ids[i]`.
    partition_ids: Vec<i32>,
    batches: Vec<Batch>,
    round_robin_next: usize,
    records_produced: u64,
}

impl Producer<'_> {
    fn run(&mut self, lines: Receiver<anyhow::Result<Vec<u8>>>) -> anyhow::Result<()> {
        let mut line_number: u64 = 0;
        loop {
            match lines.recv_timeout(LINGER) {
                Ok(line) => {
                    line_number += 1;
                    let record = self.record_from_line(line?, line_number)?;
                    self.add(record)?;
                }
                Err(RecvTimeoutError::Timeout) => self.flush_all()?,
                Err(RecvTimeoutError::Disconnected) => return self.flush_all(),
            }
        }
    }

    fn record_from_line(&self, line: Vec<u8>, line_number: u64) -> anyhow::Result<ProduceRecord> {
        let line = Bytes::from(line);
        let (key, value) = match &self.args.key_separator {
            None => (None, line),
            Some(separator) => {
                let at = find(&line, separator.as_bytes()).with_context(|| {
                    format!("line {line_number} has no key separator {separator:?}")
                })?;
                (Some(line.slice(..at)), line.slice(at + separator.len()..))
            }
        };
        let headers = self
            .args
            .headers
            .iter()
            .map(|(name, value)| (name.clone(), Some(Bytes::from(value.clone()))))
            .collect();
        Ok(ProduceRecord {
            key,
            value: Some(value),
            headers,
            timestamp_ms: now_ms(),
        })
    }

    /// Index into `partition_ids`: the fixed partition, murmur2 of the key, or round-robin.
    fn choose(&mut self, record: &ProduceRecord) -> usize {
        if let Some(partition) = self.args.partition {
            return self
                .partition_ids
                .iter()
                .position(|id| *id == partition)
                .expect("checked at start");
        }
        let count = self.partition_ids.len();
        match &record.key {
            Some(key) => {
                let partition = partition_for_key(key, count as i32);
                self.partition_ids
                    .iter()
                    .position(|id| *id == partition)
                    .unwrap_or(partition as usize % count)
            }
            None => {
                let index = self.round_robin_next % count;
                self.round_robin_next = self.round_robin_next.wrapping_add(1);
                index
            }
        }
    }

    fn add(&mut self, record: ProduceRecord) -> anyhow::Result<()> {
        let index = self.choose(&record);
        let record_bytes = estimated_bytes(&record);
        if self.batches[index].bytes + record_bytes > BATCH_BYTES_MAX {
            self.flush(index)?;
        }
        let batch = &mut self.batches[index];
        batch.records.push(record);
        batch.bytes += record_bytes;
        if batch.records.len() >= BATCH_RECORDS_MAX {
            self.flush(index)?;
        }
        Ok(())
    }

    fn flush_all(&mut self) -> anyhow::Result<()> {
        for index in 0..self.batches.len() {
            self.flush(index)?;
        }
        Ok(())
    }

    fn flush(&mut self, index: usize) -> anyhow::Result<()> {
        let batch = std::mem::take(&mut self.batches[index]);
        if batch.records.is_empty() {
            return Ok(());
        }
        let partition = self.partition_ids[index];
        self.sender
            .produce(&self.args.topic, partition, &batch.records, self.acks)?;
        self.records_produced += batch.records.len() as u64;
        Ok(())
    }
}

fn estimated_bytes(record: &ProduceRecord) -> usize {
    let length = |bytes: &Option<Bytes>| bytes.as_ref().map_or(0, Bytes::len);
    let headers: usize = record
        .headers
        .iter()
        .map(|(name, value)| name.len() + length(value) + 2)
        .sum();
    RECORD_OVERHEAD_BYTES + length(&record.key) + length(&record.value) + headers
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    assert!(!needle.is_empty());
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    since_epoch.as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_lose_their_line_endings() {
        let mut input = &b"a\r\nb\n\nlast"[..];
        let mut lines = Vec::new();
        while let Some(line) = read_line(&mut input).unwrap() {
            lines.push(String::from_utf8(line).unwrap());
        }
        assert_eq!(lines, vec!["a", "b", "", "last"]);
    }

    #[test]
    fn overlong_line_is_an_error() {
        let long = vec![b'x'; LINE_BYTES_MAX + 1];
        assert!(read_line(&mut &long[..]).is_err());
        let fits = vec![b'x'; LINE_BYTES_MAX];
        assert_eq!(
            read_line(&mut &fits[..]).unwrap().unwrap().len(),
            LINE_BYTES_MAX
        );
    }

    #[test]
    fn acks_accept_kafka_spellings() {
        assert_eq!(parse_acks("all"), Ok(-1));
        assert_eq!(parse_acks("-1"), Ok(-1));
        assert_eq!(parse_acks("0"), Ok(0));
        assert_eq!(parse_acks("1"), Ok(1));
        assert!(parse_acks("2").is_err());
    }

    #[test]
    fn idempotence_forces_acks_all() {
        assert_eq!(effective_acks(None, true).unwrap(), -1);
        assert_eq!(effective_acks(Some(-1), true).unwrap(), -1);
        assert!(effective_acks(Some(0), true).is_err());
        assert!(effective_acks(Some(1), true).is_err());
        assert_eq!(effective_acks(None, false).unwrap(), -1);
        assert_eq!(effective_acks(Some(0), false).unwrap(), 0);
        assert_eq!(effective_acks(Some(1), false).unwrap(), 1);
    }

    #[test]
    fn separator_search_finds_first_match() {
        assert_eq!(find(b"k\tv\tw", b"\t"), Some(1));
        assert_eq!(find(b"k::v", b"::"), Some(1));
        assert_eq!(find(b"kv", b"::"), None);
    }
}
