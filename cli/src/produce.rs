//! `sluice produce TOPIC`: stdin lines to records.

use std::io::{BufRead, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use client::producer::{Delivery, DeliveryCallback, Producer, ProducerConfig};
use client::ProduceRecord;

use super::common::{parse_key_value, parse_separator, topic_metadata, ConnectionArgs};

/// Bytes of one batch per partition (Kafka's default message.max.bytes): large enough to
/// amortise a round trip when a file is piped in.
const BATCH_BYTES_MAX: usize = 1024 * 1024;
/// Longest input line; a longer record could never fit in a batch.
const LINE_BYTES_MAX: usize = BATCH_BYTES_MAX;
/// Bytes of one Produce request: a batch of the longest line and its record's fields.
const REQUEST_BYTES_MAX: usize = 2 * BATCH_BYTES_MAX;
/// Record bytes read ahead of the broker's acknowledgements; `send` blocks beyond.
const BUFFER_BYTES_MAX: usize = 32 * BATCH_BYTES_MAX;
/// How long a partly filled batch waits for more input, so interactive typing gets sent promptly.
const LINGER: Duration = Duration::from_millis(100);
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

pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let acks = effective_acks(args.acks, args.idempotence)?;
    check_partition(&args)?;
    let delivered = Arc::new(Mutex::new(Delivered::default()));
    let config = ProducerConfig {
        client: args.connection.client_config(),
        acks,
        batch_bytes: BATCH_BYTES_MAX,
        linger: LINGER,
        idempotence: args.idempotence,
        buffer_bytes_max: BUFFER_BYTES_MAX,
        request_bytes_max: REQUEST_BYTES_MAX,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(
        &args.connection.bootstrap_server,
        config,
        on_delivery(delivered.clone()),
    )
    .with_context(|| {
        format!(
            "cannot start a producer via {}",
            args.connection.bootstrap_server
        )
    })?;
    let sent = send_lines(&args, &producer, &delivered);
    producer.close();
    let delivered = delivered.lock().expect("the callback does not panic");
    sent?;
    if let Some(error) = &delivered.error {
        anyhow::bail!("producing to {} failed: {error}", args.topic);
    }
    eprintln!("{} records produced to {}", delivered.records, args.topic);
    Ok(())
}

/// Checks that the topic exists and has the partition `--partition` names.
fn check_partition(args: &ProduceArgs) -> anyhow::Result<()> {
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
    Ok(())
}

/// What the delivery callback has seen: records acknowledged and the first failure.
#[derive(Default)]
struct Delivered {
    records: u64,
    error: Option<String>,
}

fn on_delivery(delivered: Arc<Mutex<Delivered>>) -> DeliveryCallback {
    Arc::new(move |delivery: &Delivery<'_>| {
        let mut delivered = delivered.lock().expect("the callback does not panic");
        match delivery.result {
            Ok(_) => delivered.records += delivery.tags.len() as u64,
            Err(error) => {
                if delivered.error.is_none() {
                    delivered.error = Some(format!("partition {}: {error}", delivery.partition));
                }
            }
        }
    })
}

/// Hands each stdin line to the producer, which batches by partition and sends a partial batch
/// after `LINGER`; stops at the end of input or the first failed batch.
fn send_lines(
    args: &ProduceArgs,
    producer: &Producer,
    delivered: &Mutex<Delivered>,
) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    let mut line_number: u64 = 0;
    while let Some(line) = read_line(&mut stdin)? {
        line_number += 1;
        let record = record_from_line(args, line, line_number)?;
        producer
            .send(&args.topic, args.partition, record, line_number)
            .with_context(|| format!("sending line {line_number}"))?;
        if delivered
            .lock()
            .expect("the callback does not panic")
            .error
            .is_some()
        {
            break;
        }
    }
    producer.flush();
    Ok(())
}

fn record_from_line(
    args: &ProduceArgs,
    line: Vec<u8>,
    line_number: u64,
) -> anyhow::Result<ProduceRecord> {
    let line = Bytes::from(line);
    let (key, value) = match &args.key_separator {
        None => (None, line),
        Some(separator) => {
            let at = find(&line, separator.as_bytes()).with_context(|| {
                format!("line {line_number} has no key separator {separator:?}")
            })?;
            (Some(line.slice(..at)), line.slice(at + separator.len()..))
        }
    };
    let headers = args
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
