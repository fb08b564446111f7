//! Request fuzzer: mutated frames of every supported API and version, and random bytes, through
//! `dispatch` on a real one-shard broker in a temporary directory. Nothing may panic; every
//! outcome is a well-formed response frame with the request's correlation id, a close, or (for
//! Produce with acks=0) no response. A request still running after `CASE_TIME_MAX` (a long
//! poll, a parked JoinGroup) is dropped, as a closed connection would drop it.
//!
//! `SLUICE_FUZZ_CASES=<n>` runs more cases (default [`CASES_DEFAULT`]); `SLUICE_FUZZ_SEED=<seed>`
//! replays one run. A failing case prints the seed and the case number.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::{dispatch, Outcome, APIS};
use crate::config::ServeArgs;
use crate::shard::Shard;

/// Cases of one `cargo test` run: about a second in release builds.
const CASES_DEFAULT: u64 = 3_000;

/// How long one request may run before it is dropped.
const CASE_TIME_MAX: Duration = Duration::from_millis(20);

/// xorshift64*: small, seeded and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        assert!(n > 0);
        (self.next() % n as u64) as usize
    }
}

#[derive(Parser)]
struct TestArgs {
    #[command(flatten)]
    serve: ServeArgs,
}

fn topic(name: &'static str) -> TopicName {
    TopicName(StrBytes::from_static_str(name))
}

/// A request body worth mutating for `key`: one entry in each list, where the API has lists.
fn body(key: ApiKey, version: i16) -> BytesMut {
    use kafka_protocol::messages::{
        fetch_request::*, list_offsets_request::*, metadata_request::*, produce_request::*,
    };
    let mut buf = BytesMut::new();
    macro_rules! enc {
        ($request:expr) => {
            $request
                .encode(&mut buf, version)
                .expect("templates encode at every version")
        };
    }
    match key {
        ApiKey::Produce => enc!(ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(100)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic("fuzz"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_records(Some(Bytes::from_static(&[0; 61])))])])),
        ApiKey::Fetch => enc!(FetchRequest::default()
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic("fuzz"))
                .with_partitions(vec![
                    FetchPartition::default().with_partition_max_bytes(1024)
                ])])),
        ApiKey::ListOffsets => {
            enc!(
                ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic("fuzz"))
                    .with_partitions(vec![ListOffsetsPartition::default().with_timestamp(-1)])])
            )
        }
        ApiKey::Metadata => {
            enc!(
                MetadataRequest::default().with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(topic("fuzz")))
                ]))
            )
        }
        _ => {
            let api = super::supported(key).expect("templates are built for served APIs");
            (api.encode_default)(version, &mut buf)
                .expect("a default request encodes at every version")
        }
    }
    buf
}

/// A valid request frame (without the length prefix) of `key` at `version`.
fn valid_frame(key: ApiKey, version: i16, correlation_id: i32) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut frame = BytesMut::new();
    header
        .encode(&mut frame, key.request_header_version(version))
        .expect("headers encode");
    frame.extend_from_slice(&body(key, version));
    frame
}

/// Changes `frame` in one of a few ways that reach deep into decoders: flipped bits, extreme
/// integers where lengths and counts live, cuts, insertions and repeats.
fn mutate(rng: &mut Rng, frame: &mut Vec<u8>) {
    // Mostly keep the API key and version so the mutation reaches that API's decoder.
    let keep = if rng.below(8) == 0 { 0 } else { 4 };
    let span = frame.len().saturating_sub(keep).max(1);
    let at = keep + rng.below(span);
    match rng.below(6) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                let at = keep + rng.below(span);
                if at < frame.len() {
                    frame[at] ^= 1 << rng.below(8);
                }
            }
        }
        1 => {
            let extreme: [u8; 4] = match rng.below(5) {
                0 => [0x7f, 0xff, 0xff, 0xff],
                1 => [0xff, 0xff, 0xff, 0xff],
                2 => [0x80, 0, 0, 0],
                3 => [0, 1, 0, 0],
                _ => (rng.next() as u32).to_be_bytes(),
            };
            for (i, byte) in extreme.iter().enumerate().take(1 + rng.below(4)) {
                if at + i < frame.len() {
                    frame[at + i] = *byte;
                }
            }
        }
        2 => frame.truncate(at.min(frame.len())),
        3 => {
            let extra: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
            let at = at.min(frame.len());
            frame.splice(at..at, extra);
        }
        4 => {
            let at = at.min(frame.len());
            let end = (at + 1 + rng.below(32)).min(frame.len());
            let copy = frame[at..end].to_vec();
            for _ in 0..1 + rng.below(8) {
                frame.splice(at..at, copy.iter().copied());
            }
        }
        _ => {
            // Varint continuation bytes: a compact length that never ends or claims 2^32.
            for i in 0..1 + rng.below(5) {
                if at + i < frame.len() {
                    frame[at + i] = 0xff;
                }
            }
        }
    }
}

/// One case: a mutated valid frame of a random API and version, or random bytes.
fn case(rng: &mut Rng, correlation_id: i32) -> Vec<u8> {
    if rng.below(10) == 0 {
        let len = rng.below(64);
        return (0..len).map(|_| rng.next() as u8).collect();
    }
    let api = &APIS[rng.below(APIS.len())];
    let version = api.min + rng.below((api.max - api.min + 1) as usize) as i16;
    let mut frame = valid_frame(api.key, version, correlation_id).to_vec();
    for _ in 0..rng.below(3) {
        mutate(rng, &mut frame);
    }
    frame
}

/// Checks what `dispatch` made of one frame; true if it was answered.
fn check(outcome: Outcome, frame: &[u8]) -> bool {
    let response = match outcome {
        Outcome::Close(_) => return false,
        _ if frame.len() < 8 => panic!("a frame without a preamble is answered"),
        Outcome::NoResponse => {
            // Only Produce (acks=0) goes unanswered.
            assert_eq!(&frame[..2], &[0, 0], "only Produce goes unanswered");
            return false;
        }
        Outcome::Respond(response) => response.to_vec(),
        Outcome::RespondPieces(pieces) => pieces.concat(),
    };
    assert!(response.len() >= 8, "a response has a length and an id");
    let len = i32::from_be_bytes(response[..4].try_into().expect("4 bytes")) as usize;
    assert_eq!(
        len,
        response.len() - 4,
        "the length prefix covers the response"
    );
    assert_eq!(
        &response[4..8],
        &frame[4..8],
        "the response carries the request's correlation id"
    );
    true
}

/// A one-shard broker in a fresh directory, as `server::run` starts it.
async fn test_shard(dir: &std::path::Path) -> Rc<Shard> {
    let mut argv: Vec<std::ffi::OsString> = vec!["sluice".into(), "--data-dir".into()];
    argv.push(dir.as_os_str().to_owned());
    for arg in [
        "--shards",
        "1",
        "--auto-create-topics",
        "false",
        "--group-initial-rebalance-delay-ms",
        "0",
    ] {
        argv.push(arg.into());
    }
    let args = TestArgs::parse_from(argv);
    crate::server::start_test_shard(Arc::new(args.serve))
        .await
        .expect("a one-shard broker")
}

/// Prints the seed of a run that panics.
struct SeedReport {
    seed: u64,
    case: u64,
}

impl Drop for SeedReport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "request fuzzer failed at case {} of seed {}: replay with SLUICE_FUZZ_SEED={}",
                self.case, self.seed, self.seed
            );
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().expect("a number"))
}

#[test]
fn mutated_requests_get_a_response_or_a_close() {
    let seed = env_u64("SLUICE_FUZZ_SEED").unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .subsec_nanos();
        u64::from(nanos) | 1
    });
    let cases = env_u64("SLUICE_FUZZ_CASES").unwrap_or(CASES_DEFAULT);
    let dir = std::env::temp_dir().join(format!("sluice-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let run_dir = dir.clone();
    glommio::LocalExecutor::default().run(async move {
        let shard = test_shard(&run_dir).await;
        let mut rng = Rng(seed);
        let mut report = SeedReport { seed, case: 0 };
        let (mut answered, mut timed_out) = (0u64, 0u64);
        for case_index in 0..cases {
            report.case = case_index;
            let frame = case(&mut rng, case_index as i32);
            let request = dispatch(
                shard.clone(),
                "127.0.0.1".into(),
                Bytes::from(frame.clone()),
            );
            let timer = async {
                glommio::timer::sleep(CASE_TIME_MAX).await;
                None
            };
            let outcome = futures_lite::future::or(async { Some(request.await) }, timer).await;
            match outcome {
                Some(outcome) => answered += u64::from(check(outcome, &frame)),
                None => timed_out += 1,
            }
        }
        eprintln!("seed {seed}: {cases} cases, {answered} answered, {timed_out} still running");
        // Mutations are mild enough that many requests decode and reach their handlers.
        assert!(answered >= cases / 10, "too few cases reached a handler");
        drop(report);
    });
    let _ = std::fs::remove_dir_all(&dir);
}
