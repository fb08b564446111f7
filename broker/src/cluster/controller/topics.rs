//! The edits of topic commands: CreateTopics, DeleteTopics and CreatePartitions, and the
//! take-back of topics whose new partitions failed to open; each deterministic (see
//! `command.rs`).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use super::{Applied, ItemResults, Refusal};
use crate::cluster::metadata::{
    MetadataSnapshot, PartitionAssignment, TopicMeta, OFFSETS_TOPIC, TOPIC_PARTITIONS_MAX,
};
use crate::cluster::{placement, topic_config};
use crate::fd_budget::FdBudget;
use crate::topic_name::validate_topic_name;

/// A topic to create, as asked by CreateTopics, the CLI or auto-creation.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TopicSpec {
    pub name: String,
    /// -1 asks for the broker default.
    pub partitions: i32,
    /// -1 asks for the broker default (`--default-replication-factor`).
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// The replicas of each partition, preferred leader first, as CreateTopics may give them;
    /// empty to place the topic. When given, `partitions` and `replication_factor` match them.
    pub replica_assignments: Vec<Vec<i32>>,
}

/// A topic to create as the command carries it: the defaults resolved and the id chosen by the
/// proposer, so that every node creates the same topic.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct NewTopic {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
    /// Replicas chosen by the client, one list per partition; empty to place the topic.
    pub replica_assignments: Vec<Vec<i32>>,
}

/// A change to take back: if the topic `name` still has id `id`, its partitions from
/// `partitions` on are removed (the whole topic when `partitions` is 0). Only the partitions
/// go: whatever else changed in the topic meanwhile (its configs, leaders) stays.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TakeBack {
    pub name: String,
    pub id: uuid::Uuid,
    pub partitions: i32,
}

pub(super) fn apply_create(
    next: &mut MetadataSnapshot,
    topics: Vec<NewTopic>,
    fd_budget: &FdBudget,
) -> ItemResults {
    let mut results = Vec::with_capacity(topics.len());
    for topic in topics {
        let name = topic.name.clone();
        let result = check_new_topic(next, topic, fd_budget);
        if let Ok(meta) = &result {
            next.topics.insert(meta.name.clone(), meta.clone());
        }
        results.push((name, result.map(Applied::Topic)));
    }
    results
}

fn check_new_topic(
    metadata: &MetadataSnapshot,
    topic: NewTopic,
    fd_budget: &FdBudget,
) -> Result<TopicMeta, Refusal> {
    validate_topic_name(&topic.name).map_err(|m| (ResponseError::InvalidTopicException, m))?;
    if metadata.topics.contains_key(&topic.name) {
        return Err((
            ResponseError::TopicAlreadyExists,
            format!("topic {} already exists", topic.name),
        ));
    }
    if !(1..=TOPIC_PARTITIONS_MAX).contains(&topic.partitions) {
        return Err((
            ResponseError::InvalidPartitions,
            format!("partition count must be 1 to {TOPIC_PARTITIONS_MAX}"),
        ));
    }
    let assignments = if topic.replica_assignments.is_empty() {
        let live = placement::live_candidates(metadata);
        placement::new_topic(&live, topic.partitions, topic.replication_factor, topic.id)?
    } else {
        check_replica_assignments(metadata, &topic)?;
        let lists = topic.replica_assignments.iter().cloned();
        lists.map(PartitionAssignment::new).collect()
    };
    let mut configs = topic.configs;
    for (key, value) in &configs {
        topic_config::validate_config(key, value).map_err(|m| (ResponseError::InvalidConfig, m))?;
    }
    topic_config::drop_ignored(&topic.name, &mut configs);
    check_fd_budget(metadata, &assignments, fd_budget, &topic.name)?;
    Ok(TopicMeta::new(topic.name, topic.id, assignments, configs))
}

/// Checks replicas a client chose (Kafka's rules): one non-empty list per partition, all of the
/// same length, each of distinct brokers that are registered and not fenced.
fn check_replica_assignments(metadata: &MetadataSnapshot, topic: &NewTopic) -> Result<(), Refusal> {
    let invalid = |message: String| Err((ResponseError::InvalidReplicaAssignment, message));
    let lists = &topic.replica_assignments;
    if lists.len() != topic.partitions as usize {
        return invalid(format!(
            "{} assignments for {} partitions",
            lists.len(),
            topic.partitions
        ));
    }
    let replication_factor = lists[0].len();
    for (partition, replicas) in lists.iter().enumerate() {
        if replicas.is_empty() || replicas.len() != replication_factor {
            return invalid(format!(
                "partition {partition} has {} replicas; every partition needs the same number, \
                 at least one",
                replicas.len()
            ));
        }
        let mut distinct = replicas.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != replicas.len() {
            return invalid(format!(
                "partition {partition} names a broker twice: {replicas:?}"
            ));
        }
        if let Some(unknown) = replicas.iter().find(|id| !metadata.is_live(**id)) {
            return invalid(format!(
                "broker {unknown} of partition {partition} is not live"
            ));
        }
    }
    Ok(())
}

/// Refuses a change that would give a broker more partitions than the descriptor budget holds:
/// each broker opens a descriptor for each partition it is a replica of, and a partition that
/// cannot open would be reported as created while every request for it fails. The budget is
/// the proposer's, applied to every broker that `added` places a replica on.
fn check_fd_budget(
    metadata: &MetadataSnapshot,
    added: &[PartitionAssignment],
    fd_budget: &FdBudget,
    topic: &str,
) -> Result<(), Refusal> {
    let mut added_on: BTreeMap<i32, u64> = BTreeMap::new();
    for replica in added.iter().flat_map(|a| &a.replicas) {
        *added_on.entry(*replica).or_default() += 1;
    }
    for (node, count) in added_on {
        let total = metadata.partitions_on(node) + count;
        fd_budget.check_partitions(total).map_err(|m| {
            (
                ResponseError::PolicyViolation,
                format!("topic {topic} on broker {node}: {m}"),
            )
        })?;
    }
    Ok(())
}

pub(super) fn apply_delete(next: &mut MetadataSnapshot, names: Vec<String>) -> ItemResults {
    (names.into_iter())
        .map(|name| {
            let result = match next.topics.remove(&name) {
                Some(meta) if meta.name == OFFSETS_TOPIC => {
                    next.topics.insert(meta.name.clone(), meta);
                    Err((
                        ResponseError::InvalidTopicException,
                        format!("{name} is internal and cannot be deleted"),
                    ))
                }
                Some(meta) => Ok(Applied::TopicId(meta.id)),
                None => Err((
                    ResponseError::UnknownTopicOrPartition,
                    format!("topic {name} does not exist"),
                )),
            };
            (name, result)
        })
        .collect()
}

pub(super) fn apply_grow(
    next: &mut MetadataSnapshot,
    requests: Vec<(String, i32)>,
    fd_budget: &FdBudget,
) -> ItemResults {
    (requests.into_iter())
        .map(|(name, count)| {
            let result = grow_topic(next, &name, count, fd_budget);
            (name, result)
        })
        .collect()
}

fn grow_topic(
    next: &mut MetadataSnapshot,
    name: &str,
    count: i32,
    fd_budget: &FdBudget,
) -> Result<Applied, Refusal> {
    let Some(meta) = next.topics.get(name) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        ));
    };
    if count <= meta.partitions {
        return Err((
            ResponseError::InvalidPartitions,
            format!(
                "topic {name} has {} partitions; the new count must be larger",
                meta.partitions
            ),
        ));
    }
    if count > TOPIC_PARTITIONS_MAX {
        return Err((
            ResponseError::InvalidPartitions,
            format!("partition count must be at most {TOPIC_PARTITIONS_MAX}"),
        ));
    }
    let live = placement::live_candidates(next);
    let added = placement::grow(&live, meta.assignments(), count)?;
    check_fd_budget(next, &added, fd_budget, name)?;
    let (id, from) = (meta.id, meta.partitions);
    if let Some(meta) = next.topics.get_mut(name) {
        meta.add_partitions(added);
    }
    Ok(Applied::Grown {
        id,
        from,
        to: count,
    })
}

pub(super) fn apply_take_back(next: &mut MetadataSnapshot, topics: Vec<TakeBack>) -> ItemResults {
    (topics.into_iter())
        .map(|take_back| {
            let result = take_back_one(next, &take_back).map(|()| Applied::Done);
            (take_back.name, result)
        })
        .collect()
}

fn take_back_one(next: &mut MetadataSnapshot, take_back: &TakeBack) -> Result<(), Refusal> {
    let name = &take_back.name;
    let meta = match next.topics.get_mut(name) {
        Some(meta) if meta.id == take_back.id => meta,
        _ => {
            return Err((
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} changed meanwhile"),
            ))
        }
    };
    // The id check is what guards the topic, `__consumer_offsets` included: only the change that
    // created or grew this very topic is taken back.
    match take_back.partitions {
        0 => {
            next.topics.remove(name);
            Ok(())
        }
        kept if kept < 0 => Err((
            ResponseError::InvalidPartitions,
            format!("topic {name} cannot keep {kept} partitions"),
        )),
        kept => {
            // Partitions up to `kept` existed before the change; a smaller count now is a
            // change made since, which stays.
            if kept < meta.partitions {
                meta.truncate_partitions(kept);
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::command::{apply, empty_snapshot, MetadataCommand};
    use super::*;
    use crate::cluster::controller::configs::ConfigChange;
    use crate::cluster::metadata::BrokerRegistration;

    fn budget() -> FdBudget {
        FdBudget::new(65_536, 1, crate::server::SHARD_CONNECTIONS_MAX).unwrap()
    }

    /// A snapshot with brokers 1..=3 registered (racks a, b, c); `fenced` of them fenced.
    fn three_brokers(fenced: &[i32]) -> MetadataSnapshot {
        let mut snapshot = empty_snapshot();
        for (id, rack) in [(1, "a"), (2, "b"), (3, "c")] {
            let broker = BrokerRegistration {
                id,
                incarnation: 1,
                host: format!("b{id}"),
                port: 9092,
                rack: Some(rack.into()),
                fenced: fenced.contains(&id),
                shutting_down: false,
            };
            snapshot.brokers.insert(id, broker);
        }
        snapshot
    }

    fn create(
        snapshot: &mut MetadataSnapshot,
        name: &str,
        partitions: i32,
        rf: i16,
    ) -> ItemResults {
        let topic = NewTopic {
            name: name.into(),
            id: uuid::Uuid::from_u128(u128::from(name.len() as u32) << 64 | 0x5eed),
            partitions,
            replication_factor: rf,
            configs: BTreeMap::new(),
            replica_assignments: Vec::new(),
        };
        let command = MetadataCommand::CreateTopics {
            topics: vec![topic],
            fd_budget: budget(),
        };
        let index = snapshot.version + 1;
        apply(snapshot, index, command)
    }

    #[test]
    fn topics_are_placed_on_live_brokers_only() {
        let mut snapshot = three_brokers(&[]);
        assert!(create(&mut snapshot, "spread", 6, 2)[0].1.is_ok());
        let meta = &snapshot.topics["spread"];
        let mut leaders: Vec<i32> = meta.assignments().iter().map(|a| a.leader).collect();
        leaders.sort_unstable();
        assert_eq!(leaders, [1, 1, 2, 2, 3, 3], "{:?}", meta.assignments());
        for a in meta.assignments() {
            assert_eq!(a.replicas.len(), 2);
            assert_eq!(a.isr, a.replicas);
            assert_eq!(a.leader, a.replicas[0]);
            assert_eq!(a.leader_epoch, crate::cluster::metadata::FIRST_LEADER_EPOCH);
        }
        // A replication factor beyond the live brokers is refused, and creates nothing.
        let mut two_live = three_brokers(&[3]);
        let refused = create(&mut two_live, "wide", 1, 3);
        let (error, _) = refused[0].1.as_ref().unwrap_err();
        assert_eq!(*error, ResponseError::InvalidReplicationFactor);
        assert!(!two_live.topics.contains_key("wide"));
        assert!(create(&mut two_live, "narrow", 4, 2)[0].1.is_ok());
        for a in two_live.topics["narrow"].assignments() {
            assert!(!a.replicas.contains(&3), "{a:?} uses the fenced broker");
        }
    }

    #[test]
    fn new_partitions_keep_the_replication_factor() {
        let mut snapshot = three_brokers(&[]);
        assert!(create(&mut snapshot, "grown", 2, 3)[0].1.is_ok());
        let command = MetadataCommand::CreatePartitions {
            requests: vec![("grown".into(), 5)],
            fd_budget: budget(),
        };
        let index = snapshot.version + 1;
        let results = apply(&mut snapshot, index, command);
        assert!(results[0].1.is_ok());
        let meta = &snapshot.topics["grown"];
        assert_eq!(meta.partitions, 5);
        assert!(meta.assignments().iter().all(|a| a.replicas.len() == 3));
        // Growing needs as many live brokers as the topic has replicas.
        snapshot.brokers.get_mut(&2).unwrap().fenced = true;
        let command = MetadataCommand::CreatePartitions {
            requests: vec![("grown".into(), 6)],
            fd_budget: budget(),
        };
        let index = snapshot.version + 1;
        let results = apply(&mut snapshot, index, command);
        let (error, _) = results[0].1.as_ref().unwrap_err();
        assert_eq!(*error, ResponseError::InvalidReplicationFactor);
        assert_eq!(snapshot.topics["grown"].partitions, 5);
    }

    #[test]
    fn replicas_a_client_chose_are_checked() {
        let mut snapshot = three_brokers(&[2]);
        let mut with = |name: &str, lists: Vec<Vec<i32>>| {
            let topic = NewTopic {
                name: name.into(),
                id: uuid::Uuid::from_u128(name.len() as u128),
                partitions: lists.len() as i32,
                replication_factor: lists[0].len() as i16,
                configs: BTreeMap::new(),
                replica_assignments: lists,
            };
            let command = MetadataCommand::CreateTopics {
                topics: vec![topic],
                fd_budget: budget(),
            };
            let index = snapshot.version + 1;
            let results = apply(&mut snapshot, index, command);
            results[0]
                .1
                .as_ref()
                .map(|_| ())
                .map_err(|(error, _)| *error)
        };
        assert_eq!(with("chosen", vec![vec![3, 1], vec![1, 3]]), Ok(()));
        let invalid = Err(ResponseError::InvalidReplicaAssignment);
        assert_eq!(with("fenced", vec![vec![2]]), invalid);
        assert_eq!(with("unknown", vec![vec![9]]), invalid);
        assert_eq!(with("twice", vec![vec![1, 1]]), invalid);
        assert_eq!(with("uneven", vec![vec![1, 3], vec![1]]), invalid);
        assert_eq!(with("empty", vec![vec![]]), invalid);
        let replicas: Vec<Vec<i32>> = (snapshot.topics["chosen"].assignments().iter())
            .map(|a| a.replicas.clone())
            .collect();
        assert_eq!(replicas, [[3, 1], [1, 3]]);
        assert_eq!(snapshot.leader_of("chosen", 1), Some(1));
    }

    fn grow(snapshot: &mut MetadataSnapshot, name: &str, count: i32, fd: FdBudget) -> ItemResults {
        let command = MetadataCommand::CreatePartitions {
            requests: vec![(name.into(), count)],
            fd_budget: fd,
        };
        let index = snapshot.version + 1;
        apply(snapshot, index, command)
    }

    fn code(results: &ItemResults) -> ResponseError {
        results[0].1.as_ref().unwrap_err().0
    }

    #[test]
    fn a_take_back_removes_only_the_partitions_it_added() {
        let mut snapshot = three_brokers(&[]);
        assert!(create(&mut snapshot, "t", 2, 1)[0].1.is_ok());
        let id = snapshot.topics["t"].id;
        assert!(grow(&mut snapshot, "t", 4, budget())[0].1.is_ok());
        // Another broker's change to the topic commits before the take-back.
        let retention = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        let alter = MetadataCommand::AlterTopicConfigs {
            changes: vec![("t".into(), ConfigChange::Replace(retention.clone()))],
        };
        let index = snapshot.version + 1;
        assert!(apply(&mut snapshot, index, alter)[0].1.is_ok());
        let take_back = |snapshot: &mut MetadataSnapshot, id, partitions| {
            let topics = vec![TakeBack {
                name: "t".into(),
                id,
                partitions,
            }];
            let index = snapshot.version + 1;
            apply(snapshot, index, MetadataCommand::TakeBack { topics })
        };
        let other_id = uuid::Uuid::from_u128(7);
        let refused = take_back(&mut snapshot, other_id, 2);
        assert_eq!(code(&refused), ResponseError::UnknownTopicOrPartition);
        assert_eq!(
            code(&take_back(&mut snapshot, id, -1)),
            ResponseError::InvalidPartitions
        );
        assert!(take_back(&mut snapshot, id, 2)[0].1.is_ok());
        let meta = &snapshot.topics["t"];
        assert_eq!((meta.partitions, meta.assignments().len()), (2, 2));
        assert_eq!(*meta.configs(), retention, "the config change stays");
        // Taking back a creation removes the topic, if it still has the id.
        assert!(take_back(&mut snapshot, id, 0)[0].1.is_ok());
        assert!(!snapshot.topics.contains_key("t"));
    }

    #[test]
    fn a_growth_reports_the_topic_and_count_it_applied_to() {
        let mut snapshot = three_brokers(&[]);
        assert!(create(&mut snapshot, "t", 2, 1)[0].1.is_ok());
        let id = snapshot.topics["t"].id;
        assert!(grow(&mut snapshot, "t", 3, budget())[0].1.is_ok());
        // Proposed from a snapshot where t had 2 partitions, applied where it has 3.
        let grown = grow(&mut snapshot, "t", 4, budget());
        let applied = grown[0].1.clone().unwrap();
        assert_eq!(applied, Applied::Grown { id, from: 3, to: 4 });
    }

    #[test]
    fn a_take_back_removes_the_offsets_topic_only_with_its_id() {
        let mut snapshot = three_brokers(&[]);
        assert!(create(&mut snapshot, OFFSETS_TOPIC, 2, 1)[0].1.is_ok());
        let id = snapshot.topics[OFFSETS_TOPIC].id;
        let take_back = |snapshot: &mut MetadataSnapshot, id| {
            let topics = vec![TakeBack {
                name: OFFSETS_TOPIC.into(),
                id,
                partitions: 0,
            }];
            let index = snapshot.version + 1;
            apply(snapshot, index, MetadataCommand::TakeBack { topics })
        };
        // A take-back of an earlier creation of the topic leaves the one there now alone.
        let stale = take_back(&mut snapshot, uuid::Uuid::from_u128(7));
        assert_eq!(code(&stale), ResponseError::UnknownTopicOrPartition);
        assert!(snapshot.topics.contains_key(OFFSETS_TOPIC));
        assert!(take_back(&mut snapshot, id)[0].1.is_ok());
        assert!(!snapshot.topics.contains_key(OFFSETS_TOPIC));
    }

    #[test]
    fn growing_a_topic_without_partitions_is_refused_not_a_panic() {
        let mut snapshot = three_brokers(&[]);
        let id = uuid::Uuid::from_u128(9);
        let empty = TopicMeta::new("empty".into(), id, Vec::new(), BTreeMap::new());
        snapshot.topics.insert("empty".into(), empty);
        assert!(snapshot.check_assignments().is_err());
        let results = grow(&mut snapshot, "empty", 3, budget());
        assert_eq!(code(&results), ResponseError::InvalidPartitions);
        assert_eq!(snapshot.topics["empty"].partitions, 0);
    }

    #[test]
    fn the_descriptor_budget_counts_each_brokers_own_replicas() {
        let mut snapshot = three_brokers(&[]);
        let four = FdBudget {
            partitions_max: 4,
            ..budget()
        };
        let with_budget = |snapshot: &mut MetadataSnapshot, name: &str, partitions, fd| {
            let topic = NewTopic {
                name: name.into(),
                id: uuid::Uuid::from_u128(name.len() as u128),
                partitions,
                replication_factor: 1,
                configs: BTreeMap::new(),
                replica_assignments: Vec::new(),
            };
            let command = MetadataCommand::CreateTopics {
                topics: vec![topic],
                fd_budget: fd,
            };
            let index = snapshot.version + 1;
            apply(snapshot, index, command)
        };
        // Nine partitions in the cluster, three on each broker: each broker is within four.
        assert!(with_budget(&mut snapshot, "nine", 9, four)[0].1.is_ok());
        assert_eq!(snapshot.partitions_on(1), 3);
        // Three more put a fourth on each broker; six more would put five on each.
        let six = with_budget(&mut snapshot, "six", 6, four);
        assert_eq!(code(&six), ResponseError::PolicyViolation);
        assert!(with_budget(&mut snapshot, "three", 3, four)[0].1.is_ok());
        assert_eq!(
            code(&grow(&mut snapshot, "three", 4, four)),
            ResponseError::PolicyViolation
        );
        assert_eq!(snapshot.topics["three"].partitions, 3);
    }
}
