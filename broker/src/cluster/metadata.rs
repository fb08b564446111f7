//! Cluster metadata: the registered brokers, the topics, their partitions' replica assignments
//! (replicas, ISR, leader, leader epoch) and configs.
//!
//! The [`MetadataSnapshot`] is the state machine of the metadata quorum: every node applies
//! every committed change to its own copy (`controller::command`) and publishes each new
//! immutable snapshot to its shards, which read their own copy without locks. The quorum's
//! directory `meta/quorum/` is the ground truth; `meta/topics.json`, where a single-node broker
//! kept the snapshot before, is only read once to migrate it (`load_legacy`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cluster::topic_config::TopicConfig;

/// The leader epoch a partition starts with, and the one every partition of a data directory
/// from before replica assignments had (what its batches were stamped with).
pub const FIRST_LEADER_EPOCH: i32 = 0;

/// The leader of a partition that has none (all its ISR members are fenced).
pub const NO_LEADER: i32 = -1;

/// One broker that has registered: where clients reach it, and whether it is fenced (no
/// longer heard from; fenced brokers lead nothing and are left out of Metadata).
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct BrokerRegistration {
    pub id: i32,
    /// Random per process start: a restarted broker registers anew.
    pub incarnation: u64,
    /// The advertised Kafka listener.
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    pub fenced: bool,
    /// The broker asked to stop (controlled shutdown): it is fenced and stays so, heard or not,
    /// until it registers again.
    #[serde(default)]
    pub shutting_down: bool,
}

/// Where one partition lives.
///
/// Invariants: `replicas` holds distinct broker ids, the preferred leader first; `isr` is a
/// subset of `replicas`; `leader` is [`NO_LEADER`] or a member of `isr`; `adding` and
/// `removing` are disjoint subsets of `replicas` (both empty unless a reassignment is in
/// progress, see `controller::reassign`).
///
/// `adding` and `removing` are skipped by rkyv, so that this type archives as it did before
/// reassignments (metadata logs and snapshots written then stay readable): the quorum's
/// snapshot carries them in a trailing section (`command::encode_snapshot`), and no command
/// archives an assignment that has them.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Debug,
    PartialEq,
    Eq,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct PartitionAssignment {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    /// Grows by one at every leader change; appends stamp it into batches.
    pub leader_epoch: i32,
    /// Replicas a reassignment in progress adds (KIP-455), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[rkyv(with = rkyv::with::Skip)]
    pub adding: Vec<i32>,
    /// Replicas a reassignment in progress removes once it completes, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[rkyv(with = rkyv::with::Skip)]
    pub removing: Vec<i32>,
}

impl PartitionAssignment {
    /// A new partition on `replicas`: all in sync, led by the first, at the first epoch.
    pub fn new(replicas: Vec<i32>) -> PartitionAssignment {
        assert!(!replicas.is_empty());
        PartitionAssignment {
            leader: replicas[0],
            isr: replicas.clone(),
            replicas,
            leader_epoch: FIRST_LEADER_EPOCH,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// Whether a reassignment of the partition is in progress.
    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas a reassignment in progress moves the partition to (all of them otherwise).
    pub fn target_replicas(&self) -> Vec<i32> {
        (self.replicas.iter().copied())
            .filter(|id| !self.removing.contains(id))
            .collect()
    }

    /// The replicas the partition had before the reassignment in progress (all otherwise).
    pub fn original_replicas(&self) -> Vec<i32> {
        (self.replicas.iter().copied())
            .filter(|id| !self.adding.contains(id))
            .collect()
    }

    /// The leader, if the partition has one.
    pub fn leader(&self) -> Option<i32> {
        (self.leader != NO_LEADER).then_some(self.leader)
    }
}

/// The internal topic of consumer groups' committed offsets and generations (record formats in
/// `groups::store`). Nothing but a group coordinator writes it, and it cannot be deleted.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Most partitions a topic may have; bounds per-topic memory and open files.
pub const TOPIC_PARTITIONS_MAX: i32 = 10_000;

/// One topic. Its explicit configs are private so that [`TopicMeta::config`], their parsed
/// form, is always built from them: change them only with [`TopicMeta::set_configs`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(from = "StoredTopicMeta")]
pub struct TopicMeta {
    pub name: String,
    pub id: uuid::Uuid,
    /// Always `assignments.len()`.
    pub partitions: i32,
    /// Partition `p` is `assignments[p]`. Private so that it keeps its length: change it with
    /// [`TopicMeta::add_partitions`] or [`TopicMeta::assignment_mut`].
    assignments: Vec<PartitionAssignment>,
    /// Only the configs set explicitly; defaults come from [`crate::cluster::topic_config::TOPIC_CONFIGS`].
    configs: BTreeMap<String, String>,
    /// The configs Sluice acts on, parsed from `configs` and the defaults.
    #[serde(skip)]
    pub config: TopicConfig,
}

/// [`TopicMeta`] as `topics.json` stores it, and as rkyv archives it: the parsed `config` is
/// rebuilt from `configs` when either is read. A `topics.json` from before replica assignments
/// has none; [`MetadataSnapshot::load_legacy`] gives its partitions to the local broker.
#[derive(Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StoredTopicMeta {
    name: String,
    id: uuid::Uuid,
    partitions: i32,
    #[serde(default)]
    assignments: Vec<PartitionAssignment>,
    configs: BTreeMap<String, String>,
}

impl From<StoredTopicMeta> for TopicMeta {
    fn from(stored: StoredTopicMeta) -> TopicMeta {
        let config = TopicConfig::parse(&stored.configs);
        TopicMeta {
            name: stored.name,
            id: stored.id,
            partitions: stored.partitions,
            assignments: stored.assignments,
            configs: stored.configs,
            config,
        }
    }
}

impl TopicMeta {
    fn stored(&self) -> StoredTopicMeta {
        StoredTopicMeta {
            name: self.name.clone(),
            id: self.id,
            partitions: self.partitions,
            assignments: self.assignments.clone(),
            configs: self.configs.clone(),
        }
    }
}

impl rkyv::Archive for TopicMeta {
    type Archived = ArchivedStoredTopicMeta;
    type Resolver = StoredTopicMetaResolver;

    fn resolve(&self, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        self.stored().resolve(resolver, out);
    }
}

impl<S> rkyv::Serialize<S> for TopicMeta
where
    S: rkyv::rancor::Fallible + rkyv::ser::Allocator + rkyv::ser::Writer + ?Sized,
    S::Error: rkyv::rancor::Source,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        self.stored().serialize(serializer)
    }
}

impl<D> rkyv::Deserialize<TopicMeta, D> for ArchivedStoredTopicMeta
where
    D: rkyv::rancor::Fallible + ?Sized,
    D::Error: rkyv::rancor::Source,
{
    fn deserialize(&self, deserializer: &mut D) -> Result<TopicMeta, D::Error> {
        let stored: StoredTopicMeta = rkyv::Deserialize::deserialize(self, deserializer)?;
        // A log entry or snapshot is checked as it decodes: a topic no edit could handle makes
        // the entry undecodable, skipped alike on every node, never a panic in a later edit.
        let meta = TopicMeta::from(stored);
        meta.check()
            .map_err(|m| <D::Error as rkyv::rancor::Source>::new(InvalidTopicMeta(m)))?;
        Ok(meta)
    }
}

/// A decoded topic that fails [`TopicMeta::check`].
#[derive(Debug)]
struct InvalidTopicMeta(String);

impl std::fmt::Display for InvalidTopicMeta {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid topic metadata: {}", self.0)
    }
}

impl std::error::Error for InvalidTopicMeta {}

impl TopicMeta {
    /// A topic with one partition per assignment.
    pub fn new(
        name: String,
        id: uuid::Uuid,
        assignments: Vec<PartitionAssignment>,
        configs: BTreeMap<String, String>,
    ) -> TopicMeta {
        let config = TopicConfig::parse(&configs);
        TopicMeta {
            name,
            id,
            partitions: i32::try_from(assignments.len()).expect("partition count fits i32"),
            assignments,
            configs,
            config,
        }
    }

    /// Every partition's assignment, partition `p` at index `p`.
    pub fn assignments(&self) -> &[PartitionAssignment] {
        &self.assignments
    }

    /// Partition `partition`'s assignment, if the topic has that partition.
    pub fn assignment(&self, partition: i32) -> Option<&PartitionAssignment> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.assignments.get(p))
    }

    /// Partition `partition`'s assignment, to change its leader, ISR or epoch.
    pub fn assignment_mut(&mut self, partition: i32) -> Option<&mut PartitionAssignment> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.assignments.get_mut(p))
    }

    /// Keeps the first `count` partitions (at least one) and drops the others.
    pub fn truncate_partitions(&mut self, count: i32) {
        assert!(count >= 1 && count <= self.partitions);
        self.assignments.truncate(count as usize);
        self.partitions = count;
    }

    /// Appends partitions, one per assignment.
    pub fn add_partitions(&mut self, added: Vec<PartitionAssignment>) {
        self.assignments.extend(added);
        self.partitions = i32::try_from(self.assignments.len()).expect("partition count fits i32");
    }

    /// Whether broker `node` holds a replica of partition `partition`.
    pub fn is_replica(&self, partition: i32, node: i32) -> bool {
        (self.assignment(partition)).is_some_and(|a| a.replicas.contains(&node))
    }

    /// The configs set explicitly.
    pub fn configs(&self) -> &BTreeMap<String, String> {
        &self.configs
    }

    /// Replaces the explicit configs and parses them again.
    pub fn set_configs(&mut self, configs: BTreeMap<String, String>) {
        self.config = TopicConfig::parse(&configs);
        self.configs = configs;
    }

    /// A config's text as DescribeConfigs reports it: the explicit value, else the default.
    pub fn config_text(&self, key: &str) -> Option<&str> {
        self.configs
            .get(key)
            .map(String::as_str)
            .or_else(|| crate::cluster::topic_config::config_default(key))
    }
}

#[derive(Clone, Debug, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MetadataSnapshot {
    /// The log index of the last command applied: it grows with every change, and every node
    /// gives the same version to the same metadata.
    pub version: u64,
    pub cluster_id: String,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Every broker that has registered, fenced or not, by id.
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Dynamic broker configs set per broker (the BROKER resource named by a node id); see
    /// [`crate::cluster::broker_config`]. A broker without explicit configs has no entry.
    pub broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    /// Cluster-wide dynamic broker configs (the BROKER resource with an empty name).
    pub broker_default_configs: BTreeMap<String, String>,
    /// The end of the last block of producer ids handed out: the next block starts here.
    pub producer_ids_end: i64,
}

/// `meta/topics.json` as a single-node broker wrote it before the quorum: read once, to migrate.
#[derive(Deserialize)]
struct LegacyMetadata {
    cluster_id: String,
    topics: BTreeMap<String, TopicMeta>,
    #[serde(default)]
    broker_configs: BTreeMap<String, String>,
    #[serde(default)]
    broker_default_configs: BTreeMap<String, String>,
}

impl MetadataSnapshot {
    /// The id of the topic that lists partition `partition` of `topic`, if one does.
    pub fn topic_id_of(&self, topic: &str, partition: i32) -> Option<uuid::Uuid> {
        (self.topics.get(topic))
            .filter(|meta| partition < meta.partitions)
            .map(|meta| meta.id)
    }

    /// The id of `topic` if it has partition `partition` with broker `node` among its replicas:
    /// the topic whose copy of that partition `node` keeps.
    pub fn topic_id_on(&self, topic: &str, partition: i32, node: i32) -> Option<uuid::Uuid> {
        (self.topics.get(topic))
            .filter(|meta| meta.is_replica(partition, node))
            .map(|meta| meta.id)
    }

    /// The leader of partition `partition` of `topic`; None if there is no such partition or it
    /// has no leader.
    pub fn leader_of(&self, topic: &str, partition: i32) -> Option<i32> {
        (self.topics.get(topic))
            .and_then(|meta| meta.assignment(partition))
            .and_then(PartitionAssignment::leader)
    }

    /// The assignment of partition `partition` of `topic`, if the topic has that partition.
    pub fn assignment(&self, topic: &str, partition: i32) -> Option<&PartitionAssignment> {
        (self.topics.get(topic)).and_then(|meta| meta.assignment(partition))
    }

    /// The registered brokers that are not fenced, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().filter(|broker| !broker.fenced)
    }

    /// Whether broker `id` is registered and not fenced.
    pub fn is_live(&self, id: i32) -> bool {
        self.brokers.get(&id).is_some_and(|broker| !broker.fenced)
    }

    /// Partitions of all topics together.
    pub fn partition_count(&self) -> u64 {
        self.topics
            .values()
            .map(|meta| meta.partitions.max(0) as u64)
            .sum()
    }

    /// Partitions of all topics that broker `node` holds a replica of: those it opens.
    pub fn partitions_on(&self, node: i32) -> u64 {
        (self.topics.values())
            .flat_map(|meta| meta.assignments())
            .filter(|assignment| assignment.replicas.contains(&node))
            .count() as u64
    }

    /// The dynamic configs set for broker `node_id` alone.
    pub fn broker_configs_of(&self, node_id: i32) -> Option<&BTreeMap<String, String>> {
        self.broker_configs.get(&node_id)
    }

    /// Where a single-node broker kept its metadata before the quorum.
    pub fn legacy_path(data_dir: &Path) -> PathBuf {
        data_dir.join("meta").join("topics.json")
    }

    /// The metadata in an old single-node data directory's `meta/topics.json`, if it has one,
    /// with that broker's configs as those of `local_node` and `producer_ids_end` as given.
    /// Partitions stored without an assignment (a data directory from before them) are given to
    /// broker `local_node`, at the first leader epoch, which their batches were stamped with.
    pub fn load_legacy(
        data_dir: &Path,
        local_node: i32,
        producer_ids_end: i64,
    ) -> anyhow::Result<Option<MetadataSnapshot>> {
        let path = Self::legacy_path(data_dir);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let invalid = |e: String| anyhow::anyhow!("{} is not valid metadata: {e}", path.display());
        let legacy: LegacyMetadata =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        let mut broker_configs = BTreeMap::new();
        if !legacy.broker_configs.is_empty() {
            broker_configs.insert(local_node, legacy.broker_configs);
        }
        let mut snapshot = MetadataSnapshot {
            version: 0,
            cluster_id: legacy.cluster_id,
            topics: legacy.topics,
            brokers: BTreeMap::new(),
            broker_configs,
            broker_default_configs: legacy.broker_default_configs,
            producer_ids_end,
        };
        snapshot.assign_unassigned(local_node);
        snapshot.check_assignments().map_err(invalid)?;
        Ok(Some(snapshot))
    }

    /// Gives every topic stored without assignments one per partition, on broker `node` alone.
    fn assign_unassigned(&mut self, node: i32) {
        for meta in self.topics.values_mut() {
            if meta.assignments.is_empty() && meta.partitions > 0 {
                let count = meta.partitions;
                meta.partitions = 0;
                meta.add_partitions(
                    (0..count)
                        .map(|_| PartitionAssignment::new(vec![node]))
                        .collect(),
                );
            }
        }
    }

    /// Checks what a stored snapshot must hold: one assignment per partition, each with
    /// distinct replicas, its ISR among them and its leader in the ISR (or none).
    pub fn check_assignments(&self) -> Result<(), String> {
        for (name, meta) in &self.topics {
            if *name != meta.name {
                return Err(format!(
                    "topic {} is stored under the name {name}",
                    meta.name
                ));
            }
            meta.check()?;
        }
        Ok(())
    }
}

impl TopicMeta {
    /// Checks what every edit relies on: 1 to `TOPIC_PARTITIONS_MAX` partitions, one assignment
    /// each, each of distinct replicas (at least one), its ISR among them and its leader in the
    /// ISR or none, its adding and removing replicas disjoint, among them, and leaving a target. Metadata from outside an edit (a bootstrap, a decoded entry) passes here
    /// first, so that no later command finds a topic it cannot edit.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=TOPIC_PARTITIONS_MAX).contains(&self.partitions) {
            return Err(format!(
                "topic {} has {} partitions, not 1 to {TOPIC_PARTITIONS_MAX}",
                self.name, self.partitions
            ));
        }
        if self.assignments.len() != self.partitions as usize {
            return Err(format!(
                "topic {} has {} partitions but {} assignments",
                self.name,
                self.partitions,
                self.assignments.len()
            ));
        }
        for (partition, a) in self.assignments.iter().enumerate() {
            let mut replicas = a.replicas.clone();
            replicas.sort_unstable();
            replicas.dedup();
            let valid = !a.replicas.is_empty()
                && replicas.len() == a.replicas.len()
                && a.isr.iter().all(|id| a.replicas.contains(id))
                && (a.leader == NO_LEADER || a.isr.contains(&a.leader))
                && (a.adding.iter().chain(&a.removing)).all(|id| a.replicas.contains(id))
                && !a.adding.iter().any(|id| a.removing.contains(id))
                && (!a.is_reassigning() || !a.target_replicas().is_empty());
            if !valid {
                return Err(format!(
                    "partition {partition} of topic {} has an invalid assignment {a:?}",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

/// A version 4 UUID from the kernel's random source, through the getrandom system call: it
/// needs no file descriptor, so it works at the descriptor limit (opening `/dev/urandom` there
/// failed with EMFILE).
pub fn random_uuid() -> uuid::Uuid {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A random number, for a broker's incarnation.
pub fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    fill_random(&mut bytes);
    u64::from_le_bytes(bytes)
}

/// Fills `bytes` from the kernel's random source. getrandom(2) without flags blocks only until
/// the pool is initialised at boot and returns up to 256 bytes whole; it can fail only with
/// EINTR (retried) or for a bad buffer or flags, which would be a bug here.
fn fill_random(bytes: &mut [u8]) {
    assert!(bytes.len() <= 256);
    let mut filled = 0;
    while filled < bytes.len() {
        let rest = &mut bytes[filled..];
        // SAFETY: the pointer and length describe `rest`, which the call only writes.
        let read = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if read < 0 {
            let error = std::io::Error::last_os_error();
            assert_eq!(
                error.kind(),
                std::io::ErrorKind::Interrupted,
                "getrandom: {error}"
            );
            continue;
        }
        filled += read as usize;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic_name::validate_topic_name;

    #[test]
    fn topic_names() {
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn an_old_topics_json_loads_with_its_broker_configs_as_this_nodes() {
        let dir = std::env::temp_dir().join(format!("sluice-meta-{}", random_uuid().simple()));
        std::fs::create_dir_all(dir.join("meta")).unwrap();
        assert!(MetadataSnapshot::load_legacy(&dir, 0, 0).unwrap().is_none());
        let id = random_uuid();
        let json = format!(
            r#"{{"version": 7, "cluster_id": "c1", "topics": {{"t": {{"name": "t", "id": "{id}",
            "partitions": 2, "configs": {{"retention.ms": "1000"}}}}}},
            "broker_configs": {{"log.retention.ms": "5"}}}}"#
        );
        std::fs::write(MetadataSnapshot::legacy_path(&dir), json).unwrap();
        let loaded = MetadataSnapshot::load_legacy(&dir, 4, 3000)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.cluster_id, "c1");
        assert_eq!(loaded.topics["t"].id, id);
        assert_eq!(loaded.topics["t"].partitions, 2);
        assert_eq!(loaded.topics["t"].config_text("retention.ms"), Some("1000"));
        assert_eq!(
            loaded.broker_configs_of(4).unwrap()["log.retention.ms"],
            "5"
        );
        assert_eq!(loaded.producer_ids_end, 3000);
        let mut moved = PartitionAssignment::new(vec![4, 2]);
        moved.leader = 2;
        let mut snap = loaded;
        snap.topics
            .get_mut("t")
            .unwrap()
            .add_partitions(vec![moved]);
        assert_eq!(snap.leader_of("t", 2), Some(2));
        assert_eq!(snap.leader_of("t", 3), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A topics.json written before replica assignments existed: every partition on the local
    /// node at the first epoch, which is what its batches were stamped with.
    #[test]
    fn stored_topics_without_assignments_are_local() {
        let dir = std::env::temp_dir().join(format!("sluice-meta-{}", random_uuid().simple()));
        std::fs::create_dir_all(dir.join("meta")).unwrap();
        let old = r#"{"version": 2, "cluster_id": "c", "topics": {"t": {"name": "t",
            "id": "6f1e8a4c-7d1b-4b5e-9a55-3c1f0e9d2a10", "partitions": 3, "configs": {}}}}"#;
        std::fs::write(dir.join("meta").join("topics.json"), old).unwrap();
        let snap = MetadataSnapshot::load_legacy(&dir, 7, 0).unwrap().unwrap();
        let meta = &snap.topics["t"];
        assert_eq!(meta.partitions, 3);
        assert_eq!(
            meta.assignments(),
            &vec![PartitionAssignment::new(vec![7]); 3][..]
        );
        assert_eq!(meta.assignments()[0].leader_epoch, FIRST_LEADER_EPOCH);
        assert_eq!(snap.leader_of("t", 2), Some(7));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_assignments_are_refused() {
        let dir = std::env::temp_dir().join(format!("sluice-meta-{}", random_uuid().simple()));
        std::fs::create_dir_all(dir.join("meta")).unwrap();
        let bad = r#"{"version": 2, "cluster_id": "c", "topics": {"t": {"name": "t",
            "id": "6f1e8a4c-7d1b-4b5e-9a55-3c1f0e9d2a10", "partitions": 2, "configs": {},
            "assignments": [{"replicas": [1], "isr": [1], "leader": 1, "leader_epoch": 0}]}}}"#;
        std::fs::write(dir.join("meta").join("topics.json"), bad).unwrap();
        let error = MetadataSnapshot::load_legacy(&dir, 1, 0).unwrap_err();
        assert!(
            error.to_string().contains("2 partitions but 1 assignments"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
