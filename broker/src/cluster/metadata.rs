//! Cluster metadata: the topics, their partition counts and configs.
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

/// The leader epoch of every partition while a partition has one replica: its first epoch,
/// which never changes. Appends stamp it into batches (`Partition::leader_epoch`), and Metadata
/// and ListOffsets report it; the replicated cluster replaces it with per-partition epochs.
pub const SINGLE_NODE_LEADER_EPOCH: i32 = 0;

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
    pub partitions: i32,
    /// Only the configs set explicitly; defaults come from [`crate::cluster::topic_config::TOPIC_CONFIGS`].
    configs: BTreeMap<String, String>,
    /// The configs Sluice acts on, parsed from `configs` and the defaults.
    #[serde(skip)]
    pub config: TopicConfig,
}

/// [`TopicMeta`] as `topics.json` stores it, and as rkyv archives it: the parsed `config` is
/// rebuilt from `configs` when either is read.
#[derive(Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct StoredTopicMeta {
    name: String,
    id: uuid::Uuid,
    partitions: i32,
    configs: BTreeMap<String, String>,
}

impl From<StoredTopicMeta> for TopicMeta {
    fn from(stored: StoredTopicMeta) -> TopicMeta {
        TopicMeta::new(stored.name, stored.id, stored.partitions, stored.configs)
    }
}

impl TopicMeta {
    fn stored(&self) -> StoredTopicMeta {
        StoredTopicMeta {
            name: self.name.clone(),
            id: self.id,
            partitions: self.partitions,
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
    pub fn new(
        name: String,
        id: uuid::Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> TopicMeta {
        let config = TopicConfig::parse(&configs);
        TopicMeta {
            name,
            id,
            partitions,
            configs,
            config,
        }
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

    /// Partitions of all topics together.
    pub fn partition_count(&self) -> u64 {
        self.topics
            .values()
            .map(|meta| meta.partitions.max(0) as u64)
            .sum()
    }

    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("meta").join("topics.json")
    }

    /// Loads the snapshot, or creates an empty one with a fresh cluster id on first start. A
    /// missing file next to partition data is an error: empty metadata would hide that data.
    pub fn load_or_init(data_dir: &Path) -> anyhow::Result<MetadataSnapshot> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes)
                .map_err(|e| anyhow::anyhow!("{} is not valid metadata: {e}", path.display()))?),
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
                    broker_configs: BTreeMap::new(),
                    broker_default_configs: BTreeMap::new(),
                };
                snapshot.persist(data_dir)?;
                Ok(snapshot)
            }
            Err(e) => Err(e.into()),
        }
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
        let mut snap = MetadataSnapshot::load_or_init(&dir).unwrap();
        snap.version = 3;
        snap.topics.insert(
            "t".into(),
            TopicMeta::new(
                "t".into(),
                random_uuid(),
                2,
                BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
            ),
        );
        snap.persist(&dir).unwrap();
        assert_eq!(MetadataSnapshot::load_or_init(&dir).unwrap(), snap);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
