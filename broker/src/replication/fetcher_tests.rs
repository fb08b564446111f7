//! A fetcher against a fake leader on a real socket: fetched batches land byte for byte with the
//! leader's high watermark followed, a response for an epoch the snapshot no longer names is
//! dropped, and a new epoch restarts the partition at its log end.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};
use kafka_protocol::protocol::Decodable;

use super::fetcher;
use super::table::{FetcherConfig, FetcherState, Followed, ReplicaHost};
use crate::cluster::metadata::{
    BrokerRegistration, MetadataSnapshot, PartitionAssignment, TopicMeta,
};
use crate::cluster::topic_config::TopicConfig;
use crate::partition::{OpenOptions, Partition};

const TOPIC_ID: u128 = 7;
const FOLLOWER: i32 = 1;
const LEADER: i32 = 2;

struct FakeHost {
    snapshot: RefCell<Arc<MetadataSnapshot>>,
    partition: Rc<Partition>,
}

impl ReplicaHost for FakeHost {
    fn metadata(&self) -> Arc<MetadataSnapshot> {
        self.snapshot.borrow().clone()
    }

    fn followed_partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        (topic == "t" && partition == 0).then(|| self.partition.clone())
    }
}

fn snapshot(port: u16, leader_epoch: i32) -> MetadataSnapshot {
    let mut assignment = PartitionAssignment::new(vec![LEADER, FOLLOWER]);
    assignment.leader_epoch = leader_epoch;
    let topic = TopicMeta::new(
        "t".into(),
        uuid::Uuid::from_u128(TOPIC_ID),
        vec![assignment],
        BTreeMap::new(),
    );
    let leader = BrokerRegistration {
        id: LEADER,
        incarnation: 1,
        host: "127.0.0.1".into(),
        port,
        rack: None,
        fenced: false,
        shutting_down: false,
    };
    MetadataSnapshot {
        version: 1,
        cluster_id: "c".into(),
        topics: BTreeMap::from([("t".to_string(), topic)]),
        brokers: BTreeMap::from([(LEADER, leader)]),
        broker_configs: BTreeMap::new(),
        broker_default_configs: BTreeMap::new(),
        producer_ids_end: 0,
    }
}

fn followed(leader_epoch: i32) -> Followed {
    Followed {
        topic: "t".into(),
        partition: 0,
        topic_id: uuid::Uuid::from_u128(TOPIC_ID),
        leader: LEADER,
        leader_epoch,
    }
}

/// A batch as the leader stores it: `records` records from `base`, stamped with `epoch`.
fn leader_batch(base: i64, records: i32, epoch: i32) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..records {
        record_batch::encode_record(&mut body, i, 0, None, Some(b"value"), &[]);
    }
    let fields = record_batch::BatchFields::plain(1_000);
    let mut batch = record_batch::encode_batch(&fields, records, &body).to_vec();
    record_batch::set_base_offset(&mut batch, base);
    record_batch::set_partition_leader_epoch(&mut batch, epoch);
    batch
}

/// What the fake leader answers, in order: (records, high watermark).
type Answers = Rc<RefCell<VecDeque<(Vec<u8>, i64)>>>;

/// What the fake leader saw of one Fetch: (replica id, fetch offset, current leader epoch).
type Seen = Rc<RefCell<Vec<(i32, i64, i32)>>>;

/// Answers each Fetch with the next (records, high watermark) of `answers`, or nothing (after a
/// short wait, as a long poll would) when they are used up.
async fn fake_leader(listener: glommio::net::TcpListener, answers: Answers, seen: Seen) {
    let mut stream = listener.accept().await.unwrap();
    loop {
        let mut prefix = [0u8; 4];
        if stream.read_exact(&mut prefix).await.is_err() {
            return;
        }
        let mut frame = vec![0u8; i32::from_be_bytes(prefix) as usize];
        stream.read_exact(&mut frame).await.unwrap();
        let mut frame = Bytes::from(frame);
        let preamble = net::frame::RequestPreamble::parse(&frame).unwrap();
        if preamble.api_key == ApiKey::OffsetForLeaderEpoch as i16 {
            // The truncation step: this leader's log holds everything the follower has.
            let frame = agree_on_epochs(frame, &preamble);
            stream.write_all(&frame).await.unwrap();
            continue;
        }
        assert_eq!(preamble.api_key, ApiKey::Fetch as i16);
        net::frame::decode_request_header(ApiKey::Fetch, preamble.api_version, &mut frame).unwrap();
        let request = FetchRequest::decode(&mut frame, preamble.api_version).unwrap();
        let partition = &request.topics[0].partitions[0];
        let (offset, epoch) = (partition.fetch_offset, partition.current_leader_epoch);
        seen.borrow_mut()
            .push((request.replica_id.0, offset, epoch));
        let answer = answers.borrow_mut().pop_front();
        if answer.is_none() {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        let (records, high_watermark) = answer.unwrap_or((Vec::new(), offset));
        let data = PartitionData::default()
            .with_partition_index(0)
            .with_high_watermark(high_watermark)
            .with_records(Some(Bytes::from(records)));
        let topic = FetchableTopicResponse::default()
            .with_topic(request.topics[0].topic.clone())
            .with_partitions(vec![data]);
        let response = FetchResponse::default().with_responses(vec![topic]);
        let frame = net::frame::encode_response(
            ApiKey::Fetch,
            preamble.api_version,
            preamble.correlation_id,
            &response,
        )
        .unwrap();
        stream.write_all(&frame).await.unwrap();
    }
}

/// An OffsetForLeaderEpoch answer that ends the asked epoch far past the follower's log end,
/// so the follower keeps its log.
fn agree_on_epochs(mut frame: Bytes, preamble: &net::frame::RequestPreamble) -> Bytes {
    use kafka_protocol::messages::offset_for_leader_epoch_response::{
        EpochEndOffset, OffsetForLeaderTopicResult,
    };
    use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
    let key = ApiKey::OffsetForLeaderEpoch;
    net::frame::decode_request_header(key, preamble.api_version, &mut frame).unwrap();
    let request = OffsetForLeaderEpochRequest::decode(&mut frame, preamble.api_version).unwrap();
    let topic = &request.topics[0];
    let asked = &topic.partitions[0];
    let answer = EpochEndOffset::default()
        .with_partition(asked.partition)
        .with_leader_epoch(asked.leader_epoch)
        .with_end_offset(i64::MAX / 2);
    let response = OffsetForLeaderEpochResponse::default().with_topics(vec![
        OffsetForLeaderTopicResult::default()
            .with_topic(topic.topic.clone())
            .with_partitions(vec![answer]),
    ]);
    net::frame::encode_response(
        key,
        preamble.api_version,
        preamble.correlation_id,
        &response,
    )
    .unwrap()
}

async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
}

async fn open_partition(dir: &std::path::Path) -> Rc<Partition> {
    let options = OpenOptions {
        storage: storage::StorageContext::default(),
        default_segment_bytes: 1 << 20,
        snapshot_interval_bytes: 1 << 30,
        power_loss_io: None,
        node_id: FOLLOWER,
        cut_off: Rc::new(std::cell::Cell::new(false)),
    };
    let config = TopicConfig::parse(&BTreeMap::new());
    let id = uuid::Uuid::from_u128(TOPIC_ID);
    let opened = Partition::open(dir.join("t-0"), id, true, &config, &options);
    Rc::new(opened.await.unwrap())
}

#[test]
fn fetched_batches_land_as_sent_and_a_response_for_a_stale_epoch_is_dropped() {
    let dir = std::env::temp_dir().join(format!("sluice-fetcher-{}", std::process::id()));
    glommio::LocalExecutor::default().run(async {
        let partition = open_partition(&dir).await;
        let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (first, second) = (leader_batch(0, 2, 3), leader_batch(2, 1, 3));
        let stale = leader_batch(3, 1, 3);
        // Each answer is served once queued; an empty answer otherwise.
        let answers = Rc::new(RefCell::new(VecDeque::from([(
            [first.clone(), second.clone()].concat(),
            2,
        )])));
        let seen: Seen = Rc::default();
        glommio::spawn_local(fake_leader(listener, answers.clone(), seen.clone())).detach();
        let host = Rc::new(FakeHost {
            snapshot: RefCell::new(Arc::new(snapshot(port, 3))),
            partition: partition.clone(),
        });
        let state = Rc::new(FetcherState::new(LEADER));
        state.set_partitions(vec![followed(3)]);
        let config = FetcherConfig {
            node_id: FOLLOWER,
            shard_id: 0,
            wait_max_ms: 50,
            partition_bytes_max: 1 << 20,
            response_bytes_max: 10 << 20,
        };
        let task = glommio::spawn_local(fetcher::run(host.clone(), state.clone(), config));

        // The high watermark is min(leader's, own log end).
        wait_for("the first batches and the leader's high watermark", || {
            (
                partition.log.log_end_offset(),
                partition.log.high_watermark(),
            ) == (3, 2)
        })
        .await;
        let stored = partition.log.read(0, 1 << 20).await.unwrap();
        assert_eq!(&stored[..], &[first, second].concat()[..], "byte for byte");
        assert_eq!(seen.borrow()[0], (FOLLOWER, 0, 3));

        // The snapshot moves to epoch 4 before the fetcher hears of it: the answer to the fetch
        // sent under epoch 3 is dropped.
        *host.snapshot.borrow_mut() = Arc::new(snapshot(port, 4));
        answers.borrow_mut().push_back((stale, 4));
        let fetches = seen.borrow().len();
        wait_for("the stale answer sent and one more fetch", || {
            answers.borrow().is_empty() && seen.borrow().len() >= fetches + 2
        })
        .await;
        assert_eq!(
            partition.log.log_end_offset(),
            3,
            "nothing of epoch 3's answer"
        );

        // The shard hands over epoch 4: the partition starts again from its log end.
        let next = leader_batch(3, 2, 4);
        answers.borrow_mut().push_back((next.clone(), 5));
        state.set_partitions(vec![followed(4)]);
        wait_for("the batch of epoch 4", || {
            (
                partition.log.log_end_offset(),
                partition.log.high_watermark(),
            ) == (5, 5)
        })
        .await;
        assert!(seen.borrow().contains(&(FOLLOWER, 3, 4)));
        let stored = partition.log.read(3, 1 << 20).await.unwrap();
        assert_eq!(&stored[..], &next[..]);
        state.stop();
        task.await;
    });
    std::fs::remove_dir_all(&dir).unwrap();
}
