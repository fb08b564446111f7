//! The real broker binary under hostile load: stalled large frames, slow and idle connections
//! and requests with huge entry lists keep its memory bounded and its other clients served.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{request_frame, Broker};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const MIB: usize = 1024 * 1024;

/// (VmRSS, VmHWM) of a process in bytes.
fn memory(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        let kib: usize = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Asserts that a Metadata request on a fresh connection is answered within `within`.
fn assert_served(broker: &Broker, within: Duration, what: &str) {
    let started = Instant::now();
    let mut wire = broker.connect();
    let response: MetadataResponse =
        wire.request(ApiKey::Metadata, 12, &MetadataRequest::default());
    assert_eq!(response.brokers.len(), 1);
    let took = started.elapsed();
    assert!(took < within, "{what}: a normal client waited {took:?}");
}

#[test]
fn stalled_large_frames_keep_memory_bounded() {
    let frame_max = 4 * MIB;
    let budget = 24 * MIB;
    let broker = Broker::start_with(
        "stalled-frames",
        2,
        &[
            "--socket-request-max-bytes",
            &frame_max.to_string(),
            "--shard-request-bytes-max",
            &budget.to_string(),
        ],
    );
    let pid = broker.pid();
    let (_, hwm_before) = memory(pid);
    // Each connection sends all of a 4 MiB frame but its last byte, then stalls. The broker
    // reads frames only while its budget lasts, so writes block on a full socket; a write
    // that blocks for a second counts as stalled.
    let connections = 40;
    let senders: Vec<_> = (0..connections)
        .map(|_| {
            let addr = broker.addr;
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                stream
                    .set_write_timeout(Some(Duration::from_secs(1)))
                    .unwrap();
                let mut bytes = (frame_max as i32).to_be_bytes().to_vec();
                bytes.extend_from_slice(&[0, 3, 0, 12, 0, 0, 0, 1]);
                bytes.resize(4 + frame_max - 1, 0);
                let _ = stream.write_all(&bytes);
                stream
            })
        })
        .collect();
    let streams: Vec<TcpStream> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    assert_served(&broker, Duration::from_secs(2), "frames stalled");
    let (rss, hwm) = memory(pid);
    let grown = hwm.saturating_sub(hwm_before);
    eprintln!(
        "{connections} stalled {frame_max}-byte frames: VmRSS {} MiB, VmHWM grew {} MiB",
        rss / MIB,
        grown / MIB
    );
    // Two shards' budgets and some slack; without the budget all 160 MiB were read.
    let bound = 2 * budget + 24 * MIB;
    assert!(grown < bound, "VmHWM grew by {} MiB", grown / MIB);
    drop(streams);
}

#[test]
fn slow_and_idle_connections_are_cut_off() {
    let broker = Broker::start_with(
        "slow-loris",
        1,
        &[
            "--request-read-timeout-ms",
            "500",
            "--connections-max-idle-ms",
            "1000",
        ],
    );
    // A slow-loris client: a frame announced, then one byte every 100 ms.
    let mut slow = broker.connect();
    let started = Instant::now();
    slow.send_raw(&[0, 0, 0, 100, 0, 3, 0, 12]);
    let trickle = {
        let mut stream = slow.stream.try_clone().unwrap();
        std::thread::spawn(move || {
            for _ in 0..100 {
                std::thread::sleep(Duration::from_millis(100));
                if stream.write_all(&[0]).is_err() {
                    return;
                }
            }
        })
    };
    assert!(slow.closed_by_broker());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "cut off after {took:?}");
    trickle.join().unwrap();
    // An idle connection is closed; one waiting for a long poll is not.
    let mut idle = broker.connect();
    let mut polling = broker.connect();
    let request = FetchRequest::default()
        .with_max_wait_ms(1300)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("__consumer_offsets")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)])]);
    let started = Instant::now();
    let _: FetchResponse = polling.request(ApiKey::Fetch, 12, &request);
    assert!(idle.closed_by_broker());
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "idle cut off after {took:?}");
    let _: MetadataResponse = polling.request(ApiKey::Metadata, 12, &MetadataRequest::default());
}

#[test]
fn huge_entry_lists_are_refused_quickly_with_bounded_memory() {
    let broker = Broker::start_with("huge-lists", 2, &["--auto-create-topics", "false"]);
    let pid = broker.pid();
    let partitions: Vec<FetchPartition> = (0..1_000_000)
        .map(|i| FetchPartition::default().with_partition(i))
        .collect();
    let fetch = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("absent")))
            .with_partitions(partitions)]);
    let topics: Vec<MetadataRequestTopic> = (0..1_000_000)
        .map(|_| MetadataRequestTopic::default().with_name(Some(TopicName::default())))
        .collect();
    let metadata = MetadataRequest::default().with_topics(Some(topics));
    let cases = [
        ("Fetch", request_frame(ApiKey::Fetch, 12, 1, &fetch)),
        (
            "Metadata",
            request_frame(ApiKey::Metadata, 12, 1, &metadata),
        ),
    ];
    for (what, bytes) in cases {
        let (_, hwm_before) = memory(pid);
        let started = Instant::now();
        let mut wire = broker.connect();
        wire.send_raw(&bytes);
        assert!(wire.closed_by_broker(), "{what}: refused with a close");
        let took = started.elapsed();
        assert_served(&broker, Duration::from_secs(1), what);
        let grown = memory(pid).1.saturating_sub(hwm_before);
        eprintln!(
            "{what} of {} MiB: refused after {took:?}, VmHWM grew {} MiB",
            bytes.len() / MIB,
            grown / MIB
        );
        assert!(
            took < Duration::from_secs(2),
            "{what}: refused after {took:?}"
        );
        assert!(
            grown < bytes.len() + 32 * MIB,
            "{what}: VmHWM grew {} MiB",
            grown / MIB
        );
    }
}
