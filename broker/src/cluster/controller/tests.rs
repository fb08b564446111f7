//! The controller against fake shards: what it persists and publishes, and what it takes back.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;

use super::*;
use crate::cluster::metadata::{random_uuid, OFFSETS_TOPIC};

/// A partition count past `TOPIC_PARTITIONS_MAX`.
const TOPIC_COUNT_PAST_MAX: i32 = crate::cluster::metadata::TOPIC_PARTITIONS_MAX + 1;

/// Shards that install every published snapshot; partitions of `unopenable` fail to open.
struct FakeShards {
    current: RefCell<Arc<MetadataSnapshot>>,
    unopenable: Option<String>,
    publishes: Cell<usize>,
}

impl FakeShards {
    fn new(data_dir: &Path, unopenable: Option<&str>) -> FakeShards {
        let mut snapshot = MetadataSnapshot::load_or_init(data_dir, 0).unwrap();
        snapshot.register(crate::cluster::metadata::BrokerRegistration {
            id: 0,
            incarnation: 1,
            host: "localhost".into(),
            port: 9092,
            rack: None,
            fenced: false,
        });
        FakeShards {
            current: RefCell::new(Arc::new(snapshot)),
            unopenable: unopenable.map(str::to_string),
            publishes: Cell::new(0),
        }
    }
}

impl MetadataPublisher for FakeShards {
    fn metadata(&self) -> Arc<MetadataSnapshot> {
        self.current.borrow().clone()
    }

    async fn publish(&self, snapshot: Arc<MetadataSnapshot>) -> Vec<(String, String)> {
        self.publishes.set(self.publishes.get() + 1);
        *self.current.borrow_mut() = snapshot.clone();
        (snapshot.topics.keys())
            .filter(|topic| Some(*topic) == self.unopenable.as_ref())
            .map(|topic| {
                (
                    topic.clone(),
                    "Too many open files (os error 24)".to_string(),
                )
            })
            .collect()
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sluice-controller-{name}-{}", random_uuid()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn controller(data_dir: &Path) -> Controller {
    Controller::new(ControllerConfig {
        data_dir: data_dir.to_path_buf(),
        default_partitions: 3,
        fd_budget: FdBudget::new(65_536, 1, crate::server::SHARD_CONNECTIONS_MAX).unwrap(),
    })
    .unwrap()
}

fn spec(name: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: name.to_string(),
        partitions,
        replication_factor: -1,
        configs: BTreeMap::new(),
    }
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutor::default().run(future)
}

#[test]
fn a_topic_whose_partitions_do_not_open_is_taken_back() {
    let data_dir = temp_dir("take-back");
    let shards = FakeShards::new(&data_dir, Some("bad"));
    let controller = controller(&data_dir);
    let specs = vec![spec("good", -1), spec("bad", 2)];
    let results = run(controller.create_topics(&shards, specs, false));
    assert_eq!(results[0].as_ref().unwrap().partitions, 3);
    assert_eq!(
        results[1].as_ref().unwrap_err().0,
        ResponseError::KafkaStorageError
    );
    // Published once with both topics, then once without the one that did not open.
    assert_eq!(shards.publishes.get(), 2);
    let published = shards.metadata();
    assert_eq!(published.version, 2);
    assert_eq!(published.topics.keys().collect::<Vec<_>>(), ["good"]);
    // What is published is what is persisted.
    assert_eq!(
        MetadataSnapshot::load_or_init(&data_dir, 0).unwrap(),
        *published
    );
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[test]
fn refused_and_dry_run_changes_publish_nothing() {
    let data_dir = temp_dir("refused");
    let shards = FakeShards::new(&data_dir, None);
    let controller = controller(&data_dir);
    let dry_run = run(controller.create_topics(&shards, vec![spec("t", 1)], true));
    assert!(dry_run[0].is_ok());
    let deleted = run(controller.delete_topics(&shards, vec![OFFSETS_TOPIC.into(), "t".into()]));
    assert_eq!(
        deleted
            .iter()
            .map(|r| r.as_ref().unwrap_err().0)
            .collect::<Vec<_>>(),
        [
            ResponseError::UnknownTopicOrPartition,
            ResponseError::UnknownTopicOrPartition
        ]
    );
    let bad = vec![spec("", 1), spec("t", 0), spec("t", TOPIC_COUNT_PAST_MAX)];
    let refused = run(controller.create_topics(&shards, bad, false));
    assert!(refused.iter().all(Result::is_err));
    assert_eq!(shards.publishes.get(), 0);
    assert_eq!(shards.metadata().version, 0);
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[test]
fn the_offsets_topic_cannot_be_deleted() {
    let data_dir = temp_dir("offsets");
    let shards = FakeShards::new(&data_dir, None);
    let controller = controller(&data_dir);
    run(controller.create_topics(&shards, vec![spec(OFFSETS_TOPIC, 1), spec("t", 1)], false));
    let deleted = run(controller.delete_topics(&shards, vec![OFFSETS_TOPIC.into(), "t".into()]));
    assert_eq!(
        deleted[0].as_ref().unwrap_err().0,
        ResponseError::InvalidTopicException
    );
    assert!(deleted[1].is_ok());
    let left = shards.metadata();
    assert_eq!(left.topics.keys().collect::<Vec<_>>(), [OFFSETS_TOPIC]);
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[test]
fn producer_ids_are_never_handed_out_twice_across_restarts() {
    let data_dir = temp_dir("producer-ids");
    let first = controller(&data_dir);
    assert_eq!(first.allocate_producer_id(), Ok(0));
    assert_eq!(first.allocate_producer_id(), Ok(1));
    // A restart skips the rest of the persisted block.
    let restarted = controller(&data_dir);
    assert_eq!(
        restarted.allocate_producer_id(),
        Ok(producer_ids::PRODUCER_ID_BLOCK_SIZE)
    );
    std::fs::remove_dir_all(&data_dir).unwrap();
}
