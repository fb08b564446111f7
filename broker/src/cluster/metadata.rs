//! Cluster metadata: the registered brokers, the topics, their partitions' replica assignments
//! (replicas, ISR, leader, leader epoch) and configs.
//!
//! One writer (the controller on shard 0) produces a new immutable [`MetadataSnapshot`] for
//! every change, persists it, and publishes it to every shard; shards read their own copy without
//! locks. The file `meta/topics.json` under the data directory is the ground truth and is
//! replaced atomically (write, fsync, rename, fsync directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cluster::topic_config::TopicConfig;
use crate::data_dir::persist_atomically;

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
}

/// Where one partition lives.
///
/// Invariants: `replicas` holds distinct broker ids, the preferred leader first; `isr` is a
/// subset of `replicas`; `leader` is [`NO_LEADER`] or a member of `isr`.
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
        }
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
/// has none; [`MetadataSnapshot::load_or_init`] gives its partitions to the local broker.
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
        Ok(stored.into())
    }
}

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

#[derive(
    Serialize,
    Deserialize,
    Clone,
    Debug,
    PartialEq,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct MetadataSnapshot {
    /// Grows by one with every published change.
    pub version: u64,
    pub cluster_id: String,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Every broker that has registered, fenced or not, by id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Dynamic broker configs set for this broker (the BROKER resource named by its node id);
    /// see [`crate::cluster::broker_config`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_configs: BTreeMap<String, String>,
    /// Cluster-wide dynamic broker configs (the BROKER resource with an empty name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub broker_default_configs: BTreeMap<String, String>,
}

impl MetadataSnapshot {
    /// The id of the topic that lists partition `partition` of `topic`, if one does.
    pub fn topic_id_of(&self, topic: &str, partition: i32) -> Option<uuid::Uuid> {
        (self.topics.get(topic))
            .filter(|meta| partition < meta.partitions)
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

    /// Registers `broker`, replacing an earlier registration of its id, unfenced.
    pub fn register(&mut self, broker: BrokerRegistration) {
        self.brokers.insert(broker.id, broker);
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

    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("meta").join("topics.json")
    }

    /// Loads the snapshot, or creates an empty one with a fresh cluster id on first start. A
    /// missing file next to partition data is an error: empty metadata would hide that data.
    /// Partitions stored without an assignment (a data directory from before them) are given to
    /// broker `local_node`, at the first leader epoch, which their batches were stamped with.
    pub fn load_or_init(data_dir: &Path, local_node: i32) -> anyhow::Result<MetadataSnapshot> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let mut snapshot: MetadataSnapshot =
                    serde_json::from_slice(&bytes).map_err(|e| {
                        anyhow::anyhow!("{} is not valid metadata: {e}", path.display())
                    })?;
                snapshot.assign_unassigned(local_node);
                snapshot.check_assignments().map_err(|e| {
                    anyhow::anyhow!("{} is not valid metadata: {e}", path.display())
                })?;
                Ok(snapshot)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let holding = crate::data_dir::dirs_with_segments(data_dir)?;
                anyhow::ensure!(
                    holding.is_empty(),
                    "{} is missing, but {} partition directories hold data (such as {}); \
                     refusing to start with empty metadata. Restore the file, or move the \
                     partition directories away to start afresh",
                    path.display(),
                    holding.len(),
                    holding[0].display()
                );
                let snapshot = MetadataSnapshot {
                    version: 0,
                    cluster_id: random_uuid().simple().to_string(),
                    topics: BTreeMap::new(),
                    brokers: BTreeMap::new(),
                    broker_configs: BTreeMap::new(),
                    broker_default_configs: BTreeMap::new(),
                };
                snapshot.persist(data_dir)?;
                Ok(snapshot)
            }
            Err(e) => Err(e.into()),
        }
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
    fn check_assignments(&self) -> Result<(), String> {
        for meta in self.topics.values() {
            if meta.assignments.len() != meta.partitions.max(0) as usize {
                return Err(format!(
                    "topic {} has {} partitions but {} assignments",
                    meta.name,
                    meta.partitions,
                    meta.assignments.len()
                ));
            }
            for (partition, a) in meta.assignments.iter().enumerate() {
                let mut replicas = a.replicas.clone();
                replicas.sort_unstable();
                replicas.dedup();
                let valid = !a.replicas.is_empty()
                    && replicas.len() == a.replicas.len()
                    && a.isr.iter().all(|id| a.replicas.contains(id))
                    && (a.leader == NO_LEADER || a.isr.contains(&a.leader));
                if !valid {
                    return Err(format!(
                        "partition {partition} of topic {} has an invalid assignment {a:?}",
                        meta.name
                    ));
                }
            }
        }
        Ok(())
    }

    /// Atomically replaces the metadata file with this snapshot and makes it durable. On a full
    /// disk it releases the reserve (see `data_dir`) and tries once more, so that a deletion,
    /// which frees space, still goes through.
    pub fn persist(&self, data_dir: &Path) -> std::io::Result<()> {
        let path = Self::path(data_dir);
        let bytes = serde_json::to_vec_pretty(self).expect("metadata serializes");
        match persist_atomically(&path, &bytes) {
            Err(e)
                if e.kind() == std::io::ErrorKind::StorageFull
                    && crate::data_dir::release_reserve(data_dir) =>
            {
                persist_atomically(&path, &bytes)
            }
            result => result,
        }
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
    fn snapshot_persists() {
        let dir = std::env::temp_dir().join(format!("sluice-meta-{}", random_uuid().simple()));
        let mut snap = MetadataSnapshot::load_or_init(&dir, 0).unwrap();
        snap.version = 3;
        snap.register(BrokerRegistration {
            id: 4,
            incarnation: 9,
            host: "b4".into(),
            port: 9092,
            rack: Some("r1".into()),
            fenced: false,
        });
        let mut moved = PartitionAssignment::new(vec![4, 2]);
        moved.leader = 2;
        moved.leader_epoch = 5;
        snap.topics.insert(
            "t".into(),
            TopicMeta::new(
                "t".into(),
                random_uuid(),
                vec![PartitionAssignment::new(vec![4]), moved],
                BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
            ),
        );
        snap.persist(&dir).unwrap();
        assert_eq!(MetadataSnapshot::load_or_init(&dir, 0).unwrap(), snap);
        assert_eq!(snap.leader_of("t", 1), Some(2));
        assert_eq!(snap.leader_of("t", 2), None);
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
        let snap = MetadataSnapshot::load_or_init(&dir, 7).unwrap();
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
        let error = MetadataSnapshot::load_or_init(&dir, 1).unwrap_err();
        assert!(
            error.to_string().contains("2 partitions but 1 assignments"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
