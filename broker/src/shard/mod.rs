//! A shard: one pinned glommio executor, the partitions it owns, and its links to the others.
//!
//! Concurrency: a `Shard` lives on one executor thread and is shared there as `Rc<Shard>`.
//! Nothing in it is touched from another thread; other shards reach it only by sending a typed
//! [`message::Request`] into its bounded inbox (`mesh`), which `dispatch` serves on this shard's
//! executor.

pub mod admin;
pub mod dispatch;
pub mod mesh;
pub mod message;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::cluster::controller::Controller;
use crate::cluster::metadata::{MetadataSnapshot, TopicMeta, NO_LEADER};
pub use crate::cluster::placement::shard_for;
use crate::config::ServeArgs;
use crate::data_dir::partition_dir;
use crate::partition::{OpenOptions, Partition};

struct TopicLogs {
    id: uuid::Uuid,
    partitions: HashMap<i32, Rc<Partition>>,
}

pub struct Shard {
    pub id: usize,
    pub count: usize,
    pub config: Arc<ServeArgs>,
    metadata: RefCell<Arc<MetadataSnapshot>>,
    logs: RefCell<HashMap<String, TopicLogs>>,
    mesh: mesh::Mesh,
    /// Consumer groups this shard coordinates.
    pub groups: crate::groups::GroupCoordinator,
    /// Present on shard 0 only: where this broker's metadata changes are proposed.
    controller: Option<Controller>,
    /// The node id of the metadata quorum's leader (-1 while none is known), shared by every
    /// shard and written by shard 0.
    controller_id: Arc<std::sync::atomic::AtomicI32>,
    /// When this broker was last in contact with its metadata quorum, shared by every shard.
    pub quorum_contact: Arc<crate::quorum_contact::QuorumContact>,
    /// This broker is cut off from its quorum (`tasks/cut_off.rs` keeps it current): it leads
    /// nothing. Every partition the shard opens shares it.
    pub cut_off: Rc<std::cell::Cell<bool>>,
    /// How the process's descriptors are divided; the controller refuses partitions beyond it.
    pub fd_budget: crate::fd_budget::FdBudget,
    /// Counts the Fetch requests this shard answered: the partition a response fills first
    /// rotates with it, so a request-wide `max_bytes` does not starve the later partitions.
    pub fetches_answered: std::cell::Cell<u64>,
    /// The segment I/O of every partition log when a power loss is simulated; direct otherwise.
    pub power_loss_io: Option<storage::fault::FaultIo>,
    /// How this shard opens partitions.
    open_options: OpenOptions,
    /// Request bytes this shard's connections hold in memory.
    pub request_budget: crate::request_budget::RequestBudget,
    /// The fetchers of the partitions this shard follows.
    pub replication: crate::replication::Replication,
}

/// A shard's part in the cluster's control plane.
pub struct ShardCluster {
    /// The controller, on the controller shard only.
    pub controller: Option<Controller>,
    /// The quorum leader's node id, shared by every shard of the broker.
    pub controller_id: Arc<std::sync::atomic::AtomicI32>,
    /// When the broker was last in contact with its metadata quorum, written by shard 0.
    pub quorum_contact: Arc<crate::quorum_contact::QuorumContact>,
}

impl Shard {
    pub fn new(
        id: usize,
        config: Arc<ServeArgs>,
        metadata: Arc<MetadataSnapshot>,
        mesh: mesh::Mesh,
        fd_budget: crate::fd_budget::FdBudget,
        cluster: ShardCluster,
    ) -> Shard {
        let count = mesh.shard_count();
        assert!(id < count);
        assert_eq!(
            cluster.controller.is_some(),
            id == crate::cluster::controller::CONTROLLER_SHARD
        );
        let initial_rebalance_delay =
            Duration::from_millis(config.group_initial_rebalance_delay_ms);
        let request_budget = crate::request_budget::RequestBudget::new(
            config.shard_request_bytes_max,
            config.socket_request_max_bytes,
        );
        let group_config = crate::groups::group::GroupConfig {
            initial_rebalance_delay,
            session_timeout_min: Duration::from_millis(config.group_min_session_timeout_ms),
            session_timeout_max: Duration::from_millis(config.group_max_session_timeout_ms),
        };
        let storage = storage::StorageContext::new(storage::StorageBudgets {
            tail_cache_bytes_max: config.tail_cache_bytes_per_shard(),
            sealed_segment_files_max: fd_budget.sealed_segment_files_per_shard,
            ..storage::StorageBudgets::default()
        });
        let power_loss_io = crate::power_loss::segment_io();
        let cut_off = Rc::new(std::cell::Cell::new(false));
        let open_options = OpenOptions {
            cut_off: cut_off.clone(),
            storage,
            default_segment_bytes: config.default_segment_bytes(),
            snapshot_interval_bytes: config.producer_snapshot_interval_bytes,
            power_loss_io: power_loss_io.clone(),
            node_id: config.node_id,
        };
        let replication = crate::replication::Replication::new(fetcher_config(id, &config));
        Shard {
            id,
            count,
            replication,
            config,
            metadata: RefCell::new(metadata),
            logs: RefCell::new(HashMap::new()),
            mesh,
            controller: cluster.controller,
            controller_id: cluster.controller_id,
            quorum_contact: cluster.quorum_contact,
            cut_off,
            fd_budget,
            fetches_answered: std::cell::Cell::new(0),
            power_loss_io,
            open_options,
            groups: crate::groups::GroupCoordinator::new(group_config),
            request_budget,
        }
    }

    /// The controller, on the controller shard.
    pub fn controller(&self) -> &Controller {
        (self.controller.as_ref()).expect("controller work runs on the controller shard")
    }

    pub fn metadata(&self) -> Arc<MetadataSnapshot> {
        self.metadata.borrow().clone()
    }

    /// The node id of the metadata quorum's leader as this broker last saw it; -1 while none
    /// is known.
    pub fn controller_id(&self) -> i32 {
        self.controller_id
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn owner(&self, topic: &str, partition: i32) -> usize {
        shard_for(topic, partition, self.count)
    }

    /// A partition this shard owns.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        debug_assert_eq!(self.owner(topic, partition), self.id);
        self.logs
            .borrow()
            .get(topic)?
            .partitions
            .get(&partition)
            .cloned()
    }

    /// The (topic, partition) pairs this shard has open right now. Callers look each one up
    /// again with [`Shard::partition`] when they get to it, so a long pass over them does not
    /// keep a deleted topic's logs alive.
    pub fn owned_partitions(&self) -> Vec<(String, i32)> {
        let logs = self.logs.borrow();
        let mut owned = Vec::new();
        for (name, topic_logs) in logs.iter() {
            for partition in topic_logs.partitions.keys() {
                owned.push((name.clone(), *partition));
            }
        }
        owned
    }

    /// The open partitions of `topic` on this shard.
    pub fn partitions_of(&self, topic: &str) -> Vec<Rc<Partition>> {
        let logs = self.logs.borrow();
        logs.get(topic)
            .map(|t| t.partitions.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Installs a new metadata snapshot and brings this shard's open logs in line with it:
    /// partitions of deleted topics are closed and removed, newly owned partitions that this
    /// broker is a replica of opened, each open partition's assignment (role, leader epoch,
    /// ISR) set, and the partitions another broker leads handed to the fetchers
    /// (`replication`); the groups of the `__consumer_offsets` partitions it now leads are
    /// replayed, those of the ones it no longer leads dropped (`groups::lead_changed`).
    /// Returns the partitions that failed to open (each logged), as (topic, error).
    pub async fn apply_metadata(
        self: &Rc<Self>,
        snapshot: Arc<MetadataSnapshot>,
    ) -> Vec<(String, String)> {
        let mut failures = Vec::new();
        let mut followed = Vec::new();
        let mut offsets_led = Vec::new();
        let previous = self.metadata.replace(snapshot.clone());
        assert!(
            snapshot.version >= previous.version,
            "metadata versions only grow"
        );
        self.set_open_assignments(&snapshot);
        self.drop_removed_topics(&snapshot).await;
        for topic in snapshot.topics.values() {
            let old = previous.topics.get(&topic.name);
            let config_changed = old.is_some_and(|old| old.config != topic.config);
            // At start-up `previous` is the snapshot itself, so nothing counts as created.
            let created_from = old
                .filter(|old| old.id == topic.id)
                .map_or(0, |old| old.partitions);
            let node = self.config.node_id;
            for (partition, assignment) in (0..topic.partitions).zip(topic.assignments()) {
                // This broker keeps the partitions it is a replica of, on their owner shard.
                if self.owner(&topic.name, partition) != self.id
                    || !assignment.replicas.contains(&node)
                {
                    continue;
                }
                let open = match self.partition(&topic.name, partition) {
                    Some(open) => open,
                    None => {
                        let created = partition >= created_from;
                        match self.open_partition(topic, partition, created).await {
                            Ok(open) => open,
                            Err(error) => {
                                failures.push((topic.name.clone(), error));
                                continue;
                            }
                        }
                    }
                };
                // Topic configs changed (AlterConfigs): the log applies them from its next
                // append.
                if config_changed {
                    open.set_config(&topic.config, &self.open_options);
                }
                open.set_assignment(assignment, crate::clock::now_ms());
                if assignment.leader != node && assignment.leader != NO_LEADER {
                    followed.push(crate::replication::Followed {
                        topic: topic.name.clone(),
                        partition,
                        topic_id: topic.id,
                        leader: assignment.leader,
                        leader_epoch: assignment.leader_epoch,
                    });
                }
                if assignment.leader == node {
                    open.assign_leader_epoch(assignment.leader_epoch);
                    if topic.name == crate::groups::store::OFFSETS_TOPIC {
                        offsets_led.push(partition);
                    }
                }
            }
        }
        self.replication.set_followed(self.clone(), followed);
        // Last, so that the other partitions' roles are not held up by the replays.
        crate::groups::lead_changed(&**self, offsets_led).await;
        failures
    }

    /// Gives every open partition its assignment in `snapshot` at once, in the step that
    /// installs it (no await between): a partition that lost or gained leadership acts on it
    /// before any request routed by the new snapshot reaches it, while other partitions open.
    fn set_open_assignments(&self, snapshot: &MetadataSnapshot) {
        for (name, topic_logs) in self.logs.borrow().iter() {
            let Some(meta) = snapshot.topics.get(name).filter(|m| m.id == topic_logs.id) else {
                continue;
            };
            for (index, partition) in &topic_logs.partitions {
                if let Some(assignment) = meta.assignment(*index) {
                    partition.set_assignment(assignment, crate::clock::now_ms());
                }
            }
        }
    }

    /// Closes and removes the logs `snapshot` no longer lists: every partition of a deleted
    /// topic, the partitions past a topic's count (a CreatePartitions taken back because one
    /// of its partitions failed to open), and those whose replicas no longer hold this broker
    /// (a completed reassignment moved them away).
    async fn drop_removed_topics(&self, snapshot: &MetadataSnapshot) {
        for (name, partition, state) in self.take_unlisted_logs(snapshot) {
            // Requests in flight may still hold the log; then the files are removed under
            // them (the open descriptors keep working until they finish).
            if let Ok(state) = Rc::try_unwrap(state) {
                if let Err(e) = state.log.delete().await {
                    log::error!("deleting {name}-{partition}: {e}");
                }
            }
            // Also after a failed delete (a log whose sync failed refuses to close cleanly):
            // the partition is gone either way, and its space is wanted back.
            let dir = partition_dir(&self.config.data_dir, &name, partition);
            match std::fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    log::error!("deleting {}: {e}", dir.display())
                }
                _ => {}
            }
            log::info!("shard {}: removed {name}-{partition}", self.id);
        }
    }

    /// Takes the open logs that `snapshot` does not list on this broker out of this shard's table.
    fn take_unlisted_logs(&self, snapshot: &MetadataSnapshot) -> Vec<(String, i32, Rc<Partition>)> {
        let mut logs = self.logs.borrow_mut();
        let mut taken = Vec::new();
        let node = self.config.node_id;
        for (name, topic_logs) in logs.iter_mut() {
            let meta = (snapshot.topics.get(name)).filter(|meta| meta.id == topic_logs.id);
            // A completed reassignment that removed this broker leaves its copy unlisted too.
            let unlisted: Vec<i32> = topic_logs
                .partitions
                .keys()
                .copied()
                .filter(|partition| !meta.is_some_and(|meta| meta.is_replica(*partition, node)))
                .collect();
            for partition in unlisted {
                let state = topic_logs.partitions.remove(&partition).unwrap();
                taken.push((name.clone(), partition, state));
            }
        }
        // An empty entry would give a re-created topic of the same name the old id.
        logs.retain(|_, topic_logs| !topic_logs.partitions.is_empty());
        taken
    }

    /// Opens a partition's log; `created` says the topic or partition was created just now,
    /// so that no data found in its directory may be served. On failure logs and returns the
    /// reason.
    async fn open_partition(
        &self,
        topic: &TopicMeta,
        partition: i32,
        created: bool,
    ) -> Result<Rc<Partition>, String> {
        let dir = partition_dir(&self.config.data_dir, &topic.name, partition);
        let opened = Partition::open(dir, topic.id, created, &topic.config, &self.open_options);
        let opened = opened.await.inspect_err(|message| {
            log::error!("shard {}: {message}", self.id);
        })?;
        let mut logs = self.logs.borrow_mut();
        let entry = logs.entry(topic.name.clone()).or_insert_with(|| TopicLogs {
            id: topic.id,
            partitions: HashMap::new(),
        });
        let opened = Rc::new(opened);
        entry.partitions.insert(partition, opened.clone());
        Ok(opened)
    }
}

impl crate::groups::GroupHost for Shard {
    fn groups(&self) -> &crate::groups::GroupCoordinator {
        &self.groups
    }

    fn offsets_partition(&self, partition: i32) -> Option<Rc<Partition>> {
        let topic = crate::groups::store::OFFSETS_TOPIC;
        if self.owner(topic, partition) != self.id {
            return None;
        }
        self.partition(topic, partition)
    }

    fn metadata(&self) -> Arc<MetadataSnapshot> {
        Shard::metadata(self)
    }

    fn shard_id(&self) -> usize {
        self.id
    }
}

impl crate::replication::ReplicaHost for Shard {
    fn metadata(&self) -> Arc<MetadataSnapshot> {
        Shard::metadata(self)
    }

    fn followed_partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>> {
        self.partition(topic, partition)
    }
}

/// The fetchers' settings from the command line.
fn fetcher_config(shard_id: usize, config: &ServeArgs) -> crate::replication::FetcherConfig {
    crate::replication::FetcherConfig {
        node_id: config.node_id,
        shard_id,
        wait_max_ms: config.replica_fetch_wait_max_ms,
        partition_bytes_max: config.replica_fetch_max_bytes as usize,
        response_bytes_max: config.replica_fetch_response_max_bytes as usize,
    }
}
