//! The controller on a real one-voter quorum, against fake shards: what it replicates and
//! publishes, and what it takes back; the commands' determinism; migration of an old data dir.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;

use super::command::{
    apply, apply_entry, decode_snapshot, empty_snapshot, encode_snapshot, MetadataCommand,
};
use super::start::{start, QuorumSettings, StartedQuorum};
use super::*;
use crate::cluster::election::ElectionType;
use crate::cluster::metadata::{random_uuid, PartitionAssignment, TopicMeta, OFFSETS_TOPIC};

/// A partition count past `TOPIC_PARTITIONS_MAX`.
const TOPIC_COUNT_PAST_MAX: i32 = crate::cluster::metadata::TOPIC_PARTITIONS_MAX + 1;

/// Shards that install every published snapshot; partitions of `unopenable` fail to open.
struct FakeShards {
    current: RefCell<Arc<MetadataSnapshot>>,
    unopenable: Option<String>,
    publishes: Cell<usize>,
}

impl MetadataPublisher for Rc<FakeShards> {
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

fn settings(data_dir: &Path) -> QuorumSettings {
    QuorumSettings {
        node_id: 0,
        voters: Vec::new(),
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        registration: crate::cluster::metadata::BrokerRegistration {
            id: 0,
            incarnation: crate::cluster::metadata::random_u64(),
            host: "localhost".into(),
            port: 9092,
            rack: None,
            fenced: false,
            shutting_down: false,
        },
        offsets_topic: (OFFSETS_TOPIC.to_string(), 2),
        fd_budget: budget(),
        snapshot_every: super::start::SNAPSHOT_EVERY,
    }
}

fn budget() -> FdBudget {
    FdBudget::new(65_536, 1, crate::server::SHARD_CONNECTIONS_MAX).unwrap()
}

/// A node: its quorum, its controller and the shards its publisher installs snapshots on.
struct Node {
    started: StartedQuorum,
    controller: Controller,
    shards: Rc<FakeShards>,
}

async fn start_node(data_dir: &Path, unopenable: Option<&str>) -> Node {
    start_node_with(&settings(data_dir), unopenable).await
}

async fn start_node_with(settings: &QuorumSettings, unopenable: Option<&str>) -> Node {
    let data_dir = &settings.data_dir;
    let started = start(settings).await.unwrap();
    let snapshot = started.snapshot();
    let shards = Rc::new(FakeShards {
        current: RefCell::new(snapshot.clone()),
        unopenable: unopenable.map(str::to_string),
        publishes: Cell::new(0),
    });
    started.state.publication.started_with(snapshot.version);
    let publisher = replicated::publish_forever(
        started.state.clone(),
        shards.clone(),
        data_dir.to_path_buf(),
    );
    glommio::spawn_local(publisher).detach();
    let controller = Controller::new(
        ControllerConfig {
            data_dir: data_dir.to_path_buf(),
            default_partitions: 3,
            default_replication_factor: 1,
            fd_budget: budget(),
        },
        started.quorum.clone(),
        started.state.clone(),
    );
    Node {
        started,
        controller,
        shards,
    }
}

fn spec(name: &str, partitions: i32) -> TopicSpec {
    TopicSpec {
        name: name.to_string(),
        partitions,
        replication_factor: -1,
        configs: BTreeMap::new(),
        replica_assignments: Vec::new(),
    }
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    glommio::LocalExecutor::default().run(future)
}

#[test]
fn a_topic_whose_partitions_do_not_open_is_taken_back() {
    let data_dir = temp_dir("take-back");
    run(async {
        let node = start_node(&data_dir, Some("bad")).await;
        let specs = vec![spec("good", -1), spec("bad", 2)];
        let results = node.controller.create_topics(specs, false).await;
        assert_eq!(results[0].as_ref().unwrap().partitions, 3);
        assert_eq!(
            results[1].as_ref().unwrap_err().0,
            ResponseError::KafkaStorageError
        );
        // Published with both topics, then without the one that did not open.
        assert_eq!(node.shards.publishes.get(), 2);
        let published = node.shards.current.borrow().clone();
        assert_eq!(
            published.topics.keys().collect::<Vec<_>>(),
            [OFFSETS_TOPIC, "good"]
        );
        // What is published is what the quorum applied.
        assert_eq!(*published, *node.started.snapshot());
    });
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[test]
fn a_take_back_shrinks_to_the_count_the_change_was_applied_to() {
    let data_dir = temp_dir("take-back-grown");
    run(async {
        let node = start_node(&data_dir, Some("t")).await;
        // The topic is created by another node (a command proposed straight to the quorum).
        let create = MetadataCommand::CreateTopics {
            topics: vec![super::topics::NewTopic {
                name: "t".into(),
                id: random_uuid(),
                partitions: 2,
                replication_factor: 1,
                configs: BTreeMap::new(),
                replica_assignments: Vec::new(),
            }],
            fd_budget: budget(),
        };
        let proposed = node
            .started
            .quorum
            .propose(node.started.state.entry(&create));
        proposed.await.unwrap();
        let id = node.started.snapshot().topics["t"].id;
        // Another node grows t to 3; its entry is in the log before this node's growth to 4,
        // which this node proposes from a snapshot where t has 2 partitions.
        let other = MetadataCommand::CreatePartitions {
            requests: vec![("t".into(), 3)],
            fd_budget: budget(),
        };
        let other = node
            .started
            .quorum
            .propose(node.started.state.entry(&other));
        let mine = node
            .controller
            .create_partitions(vec![("t".into(), 4)], false);
        let (other, mine) = futures_lite::future::zip(other, mine).await;
        other.unwrap();
        assert_eq!(
            mine[0].as_ref().unwrap_err().0,
            ResponseError::KafkaStorageError
        );
        // Only partition 3, which this change added, is taken back; the other node's stays.
        let meta = node.started.snapshot().topics["t"].clone();
        assert_eq!(
            (meta.id, meta.partitions, meta.assignments().len()),
            (id, 3, 3)
        );
    });
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[test]
fn a_created_offsets_topic_that_does_not_open_is_taken_back() {
    let data_dir = temp_dir("take-back-offsets");
    run(async {
        let mut settings = settings(&data_dir);
        settings.offsets_topic = ("not-the-offsets-topic".into(), 1);
        let node = start_node_with(&settings, Some(OFFSETS_TOPIC)).await;
        let created = node
            .controller
            .create_topics(vec![spec(OFFSETS_TOPIC, 2)], false);
        let created = created.await;
        assert_eq!(
            created[0].as_ref().unwrap_err().0,
            ResponseError::KafkaStorageError
        );
        assert!(!node.started.snapshot().topics.contains_key(OFFSETS_TOPIC));
        let published = node.shards.current.borrow().clone();
        assert!(!published.topics.contains_key(OFFSETS_TOPIC));
    });
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[test]
fn refused_and_dry_run_changes_propose_nothing() {
    let data_dir = temp_dir("refused");
    run(async {
        let node = start_node(&data_dir, None).await;
        let applied = node.started.quorum.applied_index();
        let controller = &node.controller;
        assert!(controller.create_topics(vec![spec("t", 1)], true).await[0].is_ok());
        let deleted = controller.delete_topics(vec![OFFSETS_TOPIC.into(), "t".into()]);
        let codes: Vec<_> = (deleted.await.into_iter())
            .map(|r| r.unwrap_err().0)
            .collect();
        assert_eq!(
            codes,
            [
                ResponseError::InvalidTopicException,
                ResponseError::UnknownTopicOrPartition
            ]
        );
        let bad = vec![spec("", 1), spec("t", 0), spec("t", TOPIC_COUNT_PAST_MAX)];
        let refused = controller.create_topics(bad, false).await;
        assert!(refused.iter().all(Result::is_err));
        assert_eq!(node.shards.publishes.get(), 0);
        assert_eq!(node.started.quorum.applied_index(), applied);
    });
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[test]
fn the_offsets_topic_cannot_be_deleted() {
    let data_dir = temp_dir("offsets");
    run(async {
        let node = start_node(&data_dir, None).await;
        let controller = &node.controller;
        (controller.create_topics(vec![spec(OFFSETS_TOPIC, 1), spec("t", 1)], false)).await;
        let deleted = controller.delete_topics(vec![OFFSETS_TOPIC.into(), "t".into()]);
        let deleted = deleted.await;
        assert_eq!(
            deleted[0].as_ref().unwrap_err().0,
            ResponseError::InvalidTopicException
        );
        assert!(deleted[1].is_ok());
        let left = node.shards.current.borrow().clone();
        assert_eq!(left.topics.keys().collect::<Vec<_>>(), [OFFSETS_TOPIC]);
    });
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[test]
fn producer_ids_and_topics_survive_a_restart() {
    let data_dir = temp_dir("restart");
    run(async {
        let node = start_node(&data_dir, None).await;
        assert_eq!(node.controller.allocate_producer_id().await, Ok(0));
        assert_eq!(node.controller.allocate_producer_id().await, Ok(1));
        assert!(node
            .controller
            .create_topics(vec![spec("kept", 2)], false)
            .await[0]
            .is_ok());
        let before = node.started.snapshot();
        node.started.quorum.shutdown().await.unwrap();
        // A restart skips the rest of the block and finds the topic.
        let restarted = start_node(&data_dir, None).await;
        let after = restarted.started.snapshot();
        assert_eq!(after.topics, before.topics);
        assert_eq!(after.producer_ids_end, before.producer_ids_end);
        assert_eq!(
            restarted.controller.allocate_producer_id().await,
            Ok(producer_ids::PRODUCER_ID_BLOCK_SIZE)
        );
    });
    std::fs::remove_dir_all(&data_dir).unwrap();
}

/// Commands a random-ish history is made of: every kind, refusals included.
fn commands() -> Vec<MetadataCommand> {
    let budget = budget();
    let new_topic = |name: &str, partitions: i32, id: u128| topics::NewTopic {
        name: name.to_string(),
        id: uuid::Uuid::from_u128(id),
        partitions,
        replication_factor: 1,
        configs: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
        replica_assignments: Vec::new(),
    };
    let mut bootstrap = empty_snapshot();
    bootstrap.cluster_id = "cluster-a".into();
    vec![
        MetadataCommand::Bootstrap(bootstrap.clone()),
        MetadataCommand::Bootstrap(bootstrap),
        MetadataCommand::RegisterBroker(crate::cluster::metadata::BrokerRegistration {
            id: 2,
            incarnation: 5,
            host: "b2".into(),
            port: 9092,
            rack: Some("r1".into()),
            fenced: false,
            shutting_down: false,
        }),
        MetadataCommand::FenceBroker {
            id: 2,
            incarnation: 5,
        },
        MetadataCommand::UnfenceBroker {
            id: 2,
            incarnation: 5,
        },
        MetadataCommand::FenceBrokerInTerm {
            id: 2,
            incarnation: 5,
            term: 1,
        },
        MetadataCommand::FenceBrokerInTerm {
            id: 2,
            incarnation: 5,
            term: 7,
        },
        MetadataCommand::CreateTopics {
            topics: vec![
                new_topic("a", 2, 1),
                new_topic("b", 1, 2),
                new_topic("a", 1, 3),
            ],
            fd_budget: budget,
        },
        MetadataCommand::CreatePartitions {
            requests: vec![("a".into(), 4), ("b".into(), 1), ("zz".into(), 2)],
            fd_budget: budget,
        },
        MetadataCommand::AlterTopicConfigs {
            changes: vec![(
                "b".into(),
                ConfigChange::Incremental(vec![(
                    "cleanup.policy".into(),
                    2,
                    Some("compact".into()),
                )]),
            )],
        },
        MetadataCommand::AlterBrokerConfigs {
            changes: vec![
                (
                    BrokerTarget::Broker(2),
                    ConfigChange::Replace(BTreeMap::from([(
                        "log.retention.ms".into(),
                        "5".into(),
                    )])),
                ),
                (
                    BrokerTarget::ClusterDefault,
                    ConfigChange::Replace(BTreeMap::new()),
                ),
            ],
        },
        MetadataCommand::AllocateProducerIds { count: 1000 },
        MetadataCommand::AllocateProducerIds { count: -1 },
        MetadataCommand::TakeBack {
            topics: vec![topics::TakeBack {
                name: "b".into(),
                id: uuid::Uuid::from_u128(2),
                partitions: 0,
            }],
        },
        MetadataCommand::ChangeIsr {
            topic: "a".into(),
            topic_id: uuid::Uuid::from_u128(1),
            partition: 1,
            leader: 2,
            leader_epoch: crate::cluster::metadata::FIRST_LEADER_EPOCH,
            isr: vec![2],
        },
        MetadataCommand::ElectLeaders {
            election: ElectionType::Preferred,
            partitions: vec![("a".into(), 0), ("a".into(), 9), ("zz".into(), 0)],
        },
        MetadataCommand::ElectLeaders {
            election: ElectionType::Unclean,
            partitions: vec![("a".into(), 1)],
        },
        MetadataCommand::ControlledShutdown {
            id: 2,
            incarnation: 5,
        },
        MetadataCommand::ControlledShutdown {
            id: 2,
            incarnation: 6,
        },
        MetadataCommand::DeleteTopics {
            names: vec!["a".into(), "a".into()],
        },
    ]
}

#[test]
fn the_same_commands_give_the_same_snapshot_on_every_node() {
    let mut first = empty_snapshot();
    let mut second = empty_snapshot();
    for (offset, command) in commands().into_iter().enumerate() {
        let index = offset as u64 + 1;
        // Through the log's bytes, as a follower receives it.
        let replicated = MetadataCommand::decode(&command.encode()).unwrap();
        assert_eq!(replicated, command);
        let results = apply(&mut first, index, command);
        assert_eq!(apply(&mut second, index, replicated), results);
        assert_eq!(first, second);
    }
    assert_eq!(first.version, commands().len() as u64);
    assert_eq!(first.cluster_id, "cluster-a");
    assert_eq!(
        first.topics.keys().collect::<Vec<_>>(),
        Vec::<&String>::new()
    );
    assert_eq!(first.producer_ids_end, 1000);
    assert_eq!(first.broker_configs[&2]["log.retention.ms"], "5");
    // A snapshot restores to the same state.
    assert_eq!(decode_snapshot(&encode_snapshot(&first)).unwrap(), first);
    // Bytes that are no command are refused, not a panic.
    assert!(MetadataCommand::decode(&[1, 2, 3]).is_err());
}

#[test]
fn fence_and_unfence_apply_only_to_the_registered_incarnation() {
    let mut snapshot = empty_snapshot();
    let registration = crate::cluster::metadata::BrokerRegistration {
        id: 2,
        incarnation: 5,
        host: "b2".into(),
        port: 9092,
        rack: None,
        fenced: false,
        shutting_down: false,
    };
    let mut index = 0;
    let mut run = |command: MetadataCommand| {
        index += 1;
        let (_, result) = apply(&mut snapshot, index, command).pop().unwrap();
        (
            result.map(|_| ()).map_err(|(code, _)| code),
            snapshot.clone(),
        )
    };
    let (registered, _) = run(MetadataCommand::RegisterBroker(registration));
    assert_eq!(registered, Ok(()));
    let fence = |id, incarnation| MetadataCommand::FenceBroker { id, incarnation };
    let (stale, after) = run(fence(2, 4));
    assert_eq!(stale, Err(ResponseError::StaleBrokerEpoch));
    assert!(!after.brokers[&2].fenced);
    assert_eq!(
        run(fence(7, 5)).0,
        Err(ResponseError::BrokerIdNotRegistered)
    );
    let (fenced, after) = run(fence(2, 5));
    assert_eq!(fenced, Ok(()));
    assert!(after.brokers[&2].fenced);
    let (unfenced, after) = run(MetadataCommand::UnfenceBroker {
        id: 2,
        incarnation: 5,
    });
    assert_eq!(unfenced, Ok(()));
    assert!(!after.brokers[&2].fenced);
}

#[test]
fn a_fence_is_applied_only_from_an_entry_of_the_term_that_decided_it() {
    let mut snapshot = empty_snapshot();
    snapshot.cluster_id = "c".into();
    let registration = crate::cluster::metadata::BrokerRegistration {
        id: 2,
        incarnation: 5,
        host: "b2".into(),
        port: 9092,
        rack: None,
        fenced: false,
        shutting_down: false,
    };
    apply_entry(
        &mut snapshot,
        1,
        3,
        MetadataCommand::RegisterBroker(registration),
    );
    let fence = |term| MetadataCommand::FenceBrokerInTerm {
        id: 2,
        incarnation: 5,
        term,
    };
    // Decided by the controller of term 3, committed through the leader of term 4 (a paused
    // controller's proposal forwarded to its successor): refused, the broker stays live.
    let (_, result) = apply_entry(&mut snapshot, 2, 4, fence(3)).pop().unwrap();
    assert_eq!(result.unwrap_err().0, ResponseError::NotController);
    assert!(!snapshot.brokers[&2].fenced);
    assert_eq!(snapshot.version, 2);
    // Decided and appended in the same term: applied.
    let (_, result) = apply_entry(&mut snapshot, 3, 4, fence(4)).pop().unwrap();
    assert!(result.is_ok());
    assert!(snapshot.brokers[&2].fenced);
}

#[test]
fn an_old_data_dir_is_migrated_once() {
    let data_dir = temp_dir("migrate");
    std::fs::create_dir_all(data_dir.join("meta")).unwrap();
    let id = random_uuid();
    let old = format!(
        r#"{{"version": 12, "cluster_id": "old-cluster", "topics": {{"orders": {{"name": "orders",
        "id": "{id}", "partitions": 3, "configs": {{}}}}}}}}"#
    );
    std::fs::write(data_dir.join("meta/topics.json"), old).unwrap();
    std::fs::write(data_dir.join("meta/producer_ids"), "5000\n").unwrap();
    run(async {
        let node = start_node(&data_dir, None).await;
        let migrated = node.started.snapshot();
        assert_eq!(migrated.cluster_id, "old-cluster");
        assert_eq!(migrated.topics["orders"].id, id);
        assert_eq!(node.controller.allocate_producer_id().await, Ok(5000));
        assert!(!data_dir.join("meta/topics.json").exists());
        let applied = node.started.quorum.applied_index();
        node.started.quorum.shutdown().await.unwrap();
        // Even with the old files back, a second start does not bootstrap again.
        std::fs::copy(
            data_dir.join("meta/topics.json.migrated"),
            data_dir.join("meta/topics.json"),
        )
        .unwrap();
        let again = start(&settings(&data_dir)).await.unwrap();
        assert_eq!(again.snapshot().topics["orders"].id, id);
        assert_eq!(again.snapshot().producer_ids_end, 6000);
        // Only the new leader's empty entry and the broker's registration were added.
        assert_eq!(again.quorum.applied_index(), applied + 2);
    });
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[test]
fn a_fresh_dir_is_refused_next_to_partition_data() {
    let data_dir = temp_dir("refuse");
    let partition = data_dir.join("orders-0");
    std::fs::create_dir_all(&partition).unwrap();
    std::fs::write(partition.join(format!("{:020}.log", 0)), b"x").unwrap();
    let error = run(async { start(&settings(&data_dir)).await.err().unwrap() });
    assert!(
        error
            .to_string()
            .contains("partition directories hold data"),
        "{error}"
    );
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[test]
fn a_restart_after_compactions_restores_the_snapshot_and_replays_the_rest() {
    let data_dir = temp_dir("compaction");
    run(async {
        let mut small = settings(&data_dir);
        small.snapshot_every = 4;
        let first = start(&small).await.unwrap();
        let entry = |count| {
            first
                .state
                .entry(&MetadataCommand::AllocateProducerIds { count })
        };
        for count in 1..=11 {
            first.quorum.propose(entry(count)).await.unwrap();
        }
        let before = first.snapshot();
        assert_eq!(before.producer_ids_end, (1..=11).sum::<i64>());
        let snapshots = std::fs::read_dir(super::start::quorum_dir(&data_dir))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("snapshot-")
            })
            .count();
        assert_eq!(snapshots, 1, "the log was compacted");
        first.quorum.shutdown().await.unwrap();
        let again = start(&small).await.unwrap();
        let after = again.snapshot();
        assert_eq!(after.producer_ids_end, before.producer_ids_end);
        assert_eq!(after.topics, before.topics);
        assert_eq!(after.cluster_id, before.cluster_id);
    });
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[test]
fn joining_through_a_stopped_quorum_fails_start_up() {
    // A node of a larger quorum whose quorum stops (ENOSPC) before it takes the registration
    // must not start with the snapshot it has so far: start-up prunes partition directories
    // the snapshot does not list.
    let data_dir = temp_dir("join-stopped");
    run(async {
        let started = start(&settings(&data_dir)).await.unwrap();
        started.quorum.abort();
        let mut registration = settings(&data_dir).registration;
        registration.id = 1;
        let register = MetadataCommand::RegisterBroker(registration);
        let error = super::start::join_cluster(&started, register)
            .await
            .expect_err("a stopped quorum cannot take the registration");
        assert!(
            error.to_string().contains("start-up metadata entry"),
            "{error}"
        );
    });
    std::fs::remove_dir_all(&data_dir).unwrap();
}

#[test]
fn a_burst_of_init_producer_id_allocates_one_block() {
    let data_dir = temp_dir("producer-burst");
    run(async {
        let node = Rc::new(start_node(&data_dir, None).await);
        let applied = node.started.quorum.applied_index();
        let callers: Vec<_> = (0..200)
            .map(|_| {
                let node = node.clone();
                glommio::spawn_local(async move { node.controller.allocate_producer_id().await })
            })
            .collect();
        let mut ids = Vec::new();
        for caller in callers {
            ids.push(caller.await.unwrap());
        }
        ids.sort_unstable();
        assert_eq!(ids, (0..200).collect::<Vec<i64>>());
        // One quorum entry for all of them.
        assert_eq!(node.started.quorum.applied_index(), applied + 1);
        let end = node.started.snapshot().producer_ids_end;
        assert_eq!(end, producer_ids::PRODUCER_ID_BLOCK_SIZE);
    });
    std::fs::remove_dir_all(&data_dir).unwrap();
}

/// A snapshot whose topic "t" has `partitions` partitions and these `assignments`.
fn with_topic(partitions: i32, assignments: Vec<Vec<i32>>) -> MetadataSnapshot {
    let assignments = assignments.into_iter().map(PartitionAssignment::new);
    let mut meta = TopicMeta::new(
        "t".into(),
        random_uuid(),
        assignments.collect(),
        BTreeMap::new(),
    );
    meta.partitions = partitions;
    let mut snapshot = empty_snapshot();
    snapshot.cluster_id = "c".into();
    snapshot.topics.insert("t".into(), meta);
    snapshot
}

#[test]
fn an_invalid_bootstrap_is_refused_and_its_entry_skipped_alike_everywhere() {
    let invalid = [
        with_topic(0, vec![]),
        with_topic(2, vec![vec![0]]),
        with_topic(1, vec![vec![0, 0]]),
    ];
    for initial in invalid {
        let mut snapshot = empty_snapshot();
        let results = apply(
            &mut snapshot,
            1,
            MetadataCommand::Bootstrap(initial.clone()),
        );
        assert_eq!(
            results[0].1.as_ref().unwrap_err().0,
            ResponseError::InvalidRequest
        );
        assert!(snapshot.topics.is_empty() && snapshot.cluster_id.is_empty());
        // In the log, such a topic does not even decode.
        let encoded = MetadataCommand::Bootstrap(initial).encode();
        assert!(MetadataCommand::decode(&encoded).is_err());
    }
    // A node's state machine skips such an entry, and the next one applies.
    {
        let state = replicated::MetadataState::new();
        let mut machine = replicated::MetadataMachine {
            state: state.clone(),
        };
        let entry = |command: &MetadataCommand| state.entry(command);
        quorum::StateMachine::apply(
            &mut machine,
            1,
            1,
            &entry(&MetadataCommand::Bootstrap(with_topic(0, vec![]))),
        );
        quorum::StateMachine::apply(&mut machine, 2, 1, b"not a command");
        assert_eq!(state.snapshot().version, 2);
        assert!(state.snapshot().cluster_id.is_empty());
        let valid = with_topic(1, vec![vec![0]]);
        quorum::StateMachine::apply(
            &mut machine,
            3,
            1,
            &entry(&MetadataCommand::Bootstrap(valid)),
        );
        assert_eq!(state.snapshot().topics["t"].partitions, 1);
    }
}

/// Every prefix of every command's bytes, and every single-byte change, applies without a
/// panic: as a command if it decodes, skipped if not.
#[test]
fn no_decodable_entry_panics_apply() {
    for command in commands() {
        let bytes = command.encode();
        let mut variants: Vec<Vec<u8>> = (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
        for position in 0..bytes.len() {
            let mut changed = bytes.clone();
            changed[position] ^= 0xff;
            variants.push(changed);
        }
        for variant in variants {
            if let Ok(decoded) = MetadataCommand::decode(&variant) {
                let mut snapshot = empty_snapshot();
                for (offset, earlier) in commands().into_iter().enumerate() {
                    apply(&mut snapshot, offset as u64 + 1, earlier);
                }
                let index = snapshot.version + 1;
                apply(&mut snapshot, index, decoded);
            }
        }
    }
}
