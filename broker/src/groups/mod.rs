//! Consumer-group coordination.
//!
//! A group's coordinator is the broker that leads partition `offsets_partition(group)` of the
//! internal topic `__consumer_offsets` (other brokers answer NOT_COORDINATOR,
//! `cluster::routing`), and inside it the shard that owns that partition; every group request
//! is forwarded there through `Shard::call`. That shard keeps the group's membership state machine ([`group::Group`]) and
//! its committed offsets in memory, and appends every commit (and each new generation) to its
//! `__consumer_offsets` partition, waiting for fdatasync before it answers. A shard replays each
//! `__consumer_offsets` partition when this broker becomes its leader, at start or later
//! (`load.rs`): committed offsets and generations survive restarts, kill -9 and a change of
//! coordinator; members rejoin.
//!
//! Invariant: a group's state is touched only on its coordinator shard, and never while a
//! borrow of the group table is held across an await.
//! Invariant: groups do not know the shard; they reach what they need of it (the group table,
//! this shard's `__consumer_offsets` partitions, the metadata) through [`GroupHost`].

pub mod group;
mod load;
pub mod store;

pub use load::lead_changed;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use storage::ValidatedBatches;

use crate::clock::now_ms;
use crate::cluster::metadata::MetadataSnapshot;
use crate::cluster::placement::shard_for;
use crate::partition::Partition;
use group::{Group, GroupConfig, GroupState, JoinArgs, JoinResult, Reply, SyncResult};
use store::{CommittedOffset, OFFSETS_TOPIC};

/// Groups one shard coordinates; a new group beyond this is refused with
/// COORDINATOR_NOT_AVAILABLE. Bounds coordinator memory.
pub const SHARD_GROUPS_MAX: usize = 100_000;

/// Kafka's `offsets.retention.minutes` default: offsets of a group that has been empty this long
/// are removed.
pub const OFFSETS_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

#[derive(Default)]
pub struct GroupCoordinator {
    groups: RefCell<HashMap<String, Group>>,
    /// The `__consumer_offsets` partitions this shard leads, each with whether its groups are
    /// in `groups` yet (`load.rs`).
    led: RefCell<HashMap<i32, load::Lead>>,
    /// Counts the replays started, so that a replay overtaken by a role change is discarded.
    loads_started: std::cell::Cell<u64>,
    pub config: GroupConfig,
}

/// What group coordination needs of the shard it runs on, and nothing more.
pub trait GroupHost {
    /// The groups this shard coordinates.
    fn groups(&self) -> &GroupCoordinator;
    /// Partition `partition` of `__consumer_offsets`, if this shard owns it and it is open.
    fn offsets_partition(&self, partition: i32) -> Option<Rc<Partition>>;
    /// The metadata snapshot this shard serves.
    fn metadata(&self) -> Arc<MetadataSnapshot>;
    /// This shard's id, for logs.
    fn shard_id(&self) -> usize;
}

/// The shard coordinating `group` among `shard_count` shards.
pub fn coordinator_shard(group: &str, shard_count: usize) -> usize {
    shard_for(OFFSETS_TOPIC, store::offsets_partition(group), shard_count)
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            groups: RefCell::new(HashMap::new()),
            led: RefCell::new(HashMap::new()),
            loads_started: std::cell::Cell::new(0),
            config,
        }
    }

    /// Advances every group's timers to `now`: session expiry and rebalance deadlines.
    pub fn tick(&self, now: Instant) {
        for group in self.groups.borrow_mut().values_mut() {
            group.tick(now, &self.config);
        }
    }

    pub fn with_group<T>(&self, group: &str, f: impl FnOnce(&mut Group) -> T) -> Option<T> {
        self.groups.borrow_mut().get_mut(group).map(f)
    }

    pub fn group_names(&self) -> Vec<String> {
        self.groups.borrow().keys().cloned().collect()
    }
}

/// Appends group records to the group's `__consumer_offsets` partition and waits until they are
/// durable.
async fn persist(
    host: &impl GroupHost,
    group: &str,
    records: &[(Bytes, Option<Bytes>)],
) -> Result<(), ResponseError> {
    if records.is_empty() {
        return Ok(());
    }
    // Never appended while the partition's groups are replayed: the replay would miss it.
    host.groups().check_loaded(group)?;
    let partition = host
        .offsets_partition(store::offsets_partition(group))
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let batch = store::encode_batch(records, now_ms());
    // Encoding is ours, so only the size can fail validation (a commit of very many partitions).
    let batches =
        ValidatedBatches::validate(batch).map_err(|_| ResponseError::InvalidCommitOffsetSize)?;
    // Checked with no await before the append: a coordinator whose shard no longer leads the
    // partition (its groups are dropped at the end of the metadata step that moved it) must not
    // write into what is now a follower's copy of the leader's log, nor one cut off from its
    // quorum (another broker leads the partition, or will) into a log it no longer leads.
    if !partition.acts_as_leader() {
        return Err(ResponseError::NotCoordinator);
    }
    let leader_epoch = partition.replicas.borrow().leader_epoch();
    let stored = async {
        let batches = batches.with_leader_epoch(leader_epoch);
        let info = partition.log.append(batches).await?;
        partition.appended_as_leader();
        partition.log.sync_to(info.last_offset).await?;
        Ok::<i64, storage::StorageError>(info.last_offset)
    };
    let last_offset = stored.await.map_err(|e| {
        log::error!("persisting group {group} failed: {e}");
        ResponseError::CoordinatorNotAvailable
    })?;
    // As Kafka's coordinator appends with acks=all: answered once every ISR member holds the
    // records, so that a commit survives the coordinator's death.
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(OFFSET_COMMIT_TIMEOUT_MS);
    let replicated = partition.wait_for_replication(last_offset, leader_epoch, 1, deadline);
    replicated.await.map_err(|error| {
        log::warn!("group {group}: records not replicated: {error:?}");
        match error {
            ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
            _ => ResponseError::CoordinatorNotAvailable,
        }
    })
}

/// Longest a group's records wait for the ISR (Kafka's `offsets.commit.timeout.ms`).
const OFFSET_COMMIT_TIMEOUT_MS: u64 = 5_000;

/// Removes the committed offsets of groups that have been empty for
/// [`OFFSETS_RETENTION_MS`], as Kafka's `offsets.retention.minutes` does.
pub async fn expire_offsets(host: &impl GroupHost) {
    let cutoff = now_ms() - OFFSETS_RETENTION_MS;
    let expired: Vec<(String, Vec<(String, i32)>)> = host
        .groups()
        .groups
        .borrow()
        .values()
        .filter(|g| g.state == GroupState::Empty)
        .map(|g| {
            let old = g
                .offsets
                .iter()
                .filter(|(_, o)| o.commit_time_ms < cutoff)
                .map(|(k, _)| k.clone())
                .collect();
            (g.id.clone(), old)
        })
        .filter(|(_, old): &(String, Vec<_>)| !old.is_empty())
        .collect();
    for (group, keys) in expired {
        let records: Vec<_> = keys
            .iter()
            .map(|(t, p)| (store::offset_key(&group, t, *p), None))
            .collect();
        if persist(host, &group, &records).await.is_ok() {
            host.groups().with_group(&group, |g| {
                keys.iter().for_each(|k| drop(g.offsets.remove(k)))
            });
        }
    }
}

/// Longest group id accepted; group ids are stored in `__consumer_offsets` keys.
pub const GROUP_ID_BYTES_MAX: usize = 4096;

/// JoinGroup on the coordinator shard.
pub async fn join(host: &impl GroupHost, group_id: String, args: JoinArgs) -> JoinResult {
    if group_id.len() > GROUP_ID_BYTES_MAX {
        return JoinResult {
            error: Some(ResponseError::InvalidGroupId),
            generation: -1,
            ..JoinResult::default()
        };
    }
    if let Err(error) = host.groups().check_loaded(&group_id) {
        return JoinResult {
            error: Some(error),
            generation: -1,
            ..JoinResult::default()
        };
    }
    let now = Instant::now();
    let config = host.groups().config;
    let reply = {
        let mut groups = host.groups().groups.borrow_mut();
        if !groups.contains_key(&group_id) && groups.len() >= SHARD_GROUPS_MAX {
            return JoinResult {
                error: Some(ResponseError::CoordinatorNotAvailable),
                ..JoinResult::default()
            };
        }
        let member_id = args.member_id.clone();
        let group = groups.entry(group_id.clone()).or_insert_with(|| {
            log::info!(
                "shard {}: coordinating new group {group_id}",
                host.shard_id()
            );
            Group::new(group_id.clone())
        });
        match group.join(args, now, &config) {
            Reply::Now(result) => return result,
            Reply::Later(receiver) => (receiver, member_id),
        }
    };
    let (receiver, member_id) = reply;
    let result = receiver.await.unwrap_or_else(|_| JoinResult {
        error: Some(ResponseError::RebalanceInProgress),
        member_id,
        generation: -1,
        ..JoinResult::default()
    });
    if result.error.is_none() && result.leader == result.member_id {
        // One member per generation records it, so generations keep growing across restarts.
        let record = (
            store::group_key(&group_id),
            Some(store::group_value(
                result.generation,
                result.protocol_type.as_deref().unwrap_or(""),
            )),
        );
        if let Err(error) = persist(host, &group_id, &[record]).await {
            return JoinResult {
                error: Some(error),
                ..result
            };
        }
    }
    result
}

/// SyncGroup on the coordinator shard.
pub async fn sync(
    host: &impl GroupHost,
    group_id: String,
    member_id: String,
    instance_id: Option<String>,
    generation: i32,
    assignments: Vec<(String, Bytes)>,
) -> SyncResult {
    if let Err(error) = host.groups().check_loaded(&group_id) {
        return SyncResult {
            error: Some(error),
            ..SyncResult::default()
        };
    }
    let now = Instant::now();
    let reply = host.groups().with_group(&group_id, |g| {
        g.sync(
            &member_id,
            instance_id.as_deref(),
            generation,
            assignments,
            now,
        )
    });
    match reply {
        None => SyncResult {
            error: Some(ResponseError::UnknownMemberId),
            ..SyncResult::default()
        },
        Some(Reply::Now(result)) => result,
        Some(Reply::Later(receiver)) => receiver.await.unwrap_or(SyncResult {
            error: Some(ResponseError::RebalanceInProgress),
            ..SyncResult::default()
        }),
    }
}

pub fn heartbeat(
    host: &impl GroupHost,
    group_id: &str,
    member_id: &str,
    instance_id: Option<&str>,
    generation: i32,
) -> Option<ResponseError> {
    if let Err(error) = host.groups().check_loaded(group_id) {
        return Some(error);
    }
    let now = Instant::now();
    host.groups()
        .with_group(group_id, |g| {
            g.heartbeat(member_id, instance_id, generation, now)
        })
        .unwrap_or(Some(ResponseError::UnknownMemberId))
}

pub fn leave(
    host: &impl GroupHost,
    group_id: &str,
    members: &[(String, Option<String>)],
) -> Vec<Option<ResponseError>> {
    if let Err(error) = host.groups().check_loaded(group_id) {
        return vec![Some(error); members.len()];
    }
    let now = Instant::now();
    let config = host.groups().config;
    members
        .iter()
        .map(|(member_id, instance_id)| {
            host.groups()
                .with_group(group_id, |g| {
                    g.leave(member_id, instance_id.as_deref(), now, &config)
                })
                .unwrap_or(Some(ResponseError::UnknownMemberId))
        })
        .collect()
}

/// One partition's commit.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: CommittedOffset,
}

/// OffsetCommit on the coordinator shard: checks membership, persists, then updates memory.
/// Returns one error (or none) per entry.
pub async fn commit(
    host: &impl GroupHost,
    group_id: String,
    member_id: String,
    instance_id: Option<String>,
    generation: i32,
    entries: Vec<CommitEntry>,
) -> Vec<Option<ResponseError>> {
    if group_id.len() > GROUP_ID_BYTES_MAX {
        return vec![Some(ResponseError::InvalidGroupId); entries.len()];
    }
    if let Err(error) = host.groups().check_loaded(&group_id) {
        return vec![Some(error); entries.len()];
    }
    let membership =
        (host.groups()).check_commit(&group_id, &member_id, instance_id.as_deref(), generation);
    if let Err(error) = membership {
        return vec![Some(error); entries.len()];
    }
    let checks = check_commit_entries(&host.metadata(), &entries);
    let records: Vec<_> = entries
        .iter()
        .zip(&checks)
        .filter(|(_, check)| check.is_none())
        .map(|(e, _)| {
            (
                store::offset_key(&group_id, &e.topic, e.partition),
                Some(store::offset_value(&e.offset)),
            )
        })
        .collect();
    if let Err(error) = persist(host, &group_id, &records).await {
        return vec![Some(error); entries.len()];
    }
    // The group may have been deleted while the commit was being written; the log now holds
    // these offsets, so memory must too.
    let mut groups = host.groups().groups.borrow_mut();
    let group = groups
        .entry(group_id.clone())
        .or_insert_with(|| Group::new(group_id));
    for (entry, check) in entries.into_iter().zip(&checks) {
        if check.is_none() {
            group
                .offsets
                .insert((entry.topic, entry.partition), entry.offset);
        }
    }
    checks
}

impl GroupCoordinator {
    /// Whether this member may commit for `group_id`. A commit with no member and no generation
    /// (a client that commits without joining) creates the group if it is unknown.
    fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let mut groups = self.groups.borrow_mut();
        match groups.get(group_id) {
            Some(group) => group.check_commit(member_id, instance_id, generation),
            None if generation < 0 && member_id.is_empty() => {
                if groups.len() >= SHARD_GROUPS_MAX {
                    Err(ResponseError::CoordinatorNotAvailable)
                } else {
                    groups.insert(group_id.to_string(), Group::new(group_id.to_string()));
                    Ok(())
                }
            }
            None => Err(ResponseError::UnknownMemberId),
        }
    }
}

/// Each entry's refusal, if any: its partition must exist and its metadata fit the limit.
fn check_commit_entries(
    snapshot: &MetadataSnapshot,
    entries: &[CommitEntry],
) -> Vec<Option<ResponseError>> {
    entries
        .iter()
        .map(|e| {
            let known = snapshot
                .topics
                .get(&e.topic)
                .is_some_and(|t| e.partition >= 0 && e.partition < t.partitions);
            if !known {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if e
                .offset
                .metadata
                .as_ref()
                .is_some_and(|m| m.len() > store::OFFSET_METADATA_BYTES_MAX)
            {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                None
            }
        })
        .collect()
}

/// Committed offsets by topic, each partition with its offset if one is committed.
pub type OffsetsByTopic = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

/// Committed offsets of a group: all of them, or those asked for (missing ones as None).
pub fn fetch_offsets(
    host: &impl GroupHost,
    group_id: &str,
    wanted: Option<Vec<(String, Vec<i32>)>>,
) -> Result<OffsetsByTopic, ResponseError> {
    host.groups().check_loaded(group_id)?;
    let groups = host.groups().groups.borrow();
    let offsets = groups.get(group_id).map(|g| &g.offsets);
    let found = match wanted {
        Some(wanted) => wanted
            .into_iter()
            .map(|(topic, partitions)| {
                let found = partitions
                    .into_iter()
                    .map(|p| (p, offsets.and_then(|o| o.get(&(topic.clone(), p)).cloned())))
                    .collect();
                (topic, found)
            })
            .collect(),
        None => {
            let mut by_topic: OffsetsByTopic = Vec::new();
            for ((topic, partition), offset) in offsets.into_iter().flatten() {
                match by_topic.last_mut() {
                    Some((t, list)) if t == topic => list.push((*partition, Some(offset.clone()))),
                    _ => by_topic.push((topic.clone(), vec![(*partition, Some(offset.clone()))])),
                }
            }
            by_topic
        }
    };
    Ok(found)
}

/// A group's description for DescribeGroups and ListGroups.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    /// member id, instance id, client id, client host, metadata, assignment
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

pub fn describe(host: &impl GroupHost, group_id: &str) -> Option<GroupSummary> {
    host.groups().with_group(group_id, |g| {
        let protocol = g.protocol.clone().unwrap_or_default();
        GroupSummary {
            group_id: g.id.clone(),
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            members: g
                .members
                .values()
                .map(|m| {
                    (
                        m.id.clone(),
                        m.instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        m.metadata(&protocol),
                        m.assignment.clone(),
                    )
                })
                .collect(),
            protocol,
        }
    })
}

pub fn summaries(host: &impl GroupHost) -> Vec<GroupSummary> {
    host.groups()
        .group_names()
        .iter()
        .filter_map(|name| describe(host, name))
        .collect()
}

/// Deletes an empty group and its offsets.
pub async fn delete_group(host: &impl GroupHost, group_id: String) -> Option<ResponseError> {
    if let Err(error) = host.groups().check_loaded(&group_id) {
        return Some(error);
    }
    let keys = match host.groups().with_group(&group_id, |g| {
        (g.is_empty(), g.offsets.keys().cloned().collect::<Vec<_>>())
    }) {
        None => return Some(ResponseError::GroupIdNotFound),
        Some((false, _)) => return Some(ResponseError::NonEmptyGroup),
        Some((true, keys)) => keys,
    };
    let mut records: Vec<_> = keys
        .iter()
        .map(|(t, p)| (store::offset_key(&group_id, t, *p), None))
        .collect();
    records.push((store::group_key(&group_id), None));
    if let Err(error) = persist(host, &group_id, &records).await {
        return Some(error);
    }
    let mut groups = host.groups().groups.borrow_mut();
    if groups.get(&group_id).is_some_and(Group::is_empty) {
        groups.remove(&group_id);
    }
    None
}

/// The protocol type of Kafka consumer groups, whose member metadata is a subscription.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Kafka's OffsetDelete: deletes the committed offsets of the requested partitions and answers
/// each partition's outcome in request order. An empty group loses every requested offset; a
/// consumer group with members keeps those of topics a member subscribes to
/// (GROUP_SUBSCRIBED_TO_TOPIC) and loses the others; any other group with members is refused
/// whole with NON_EMPTY_GROUP.
pub async fn delete_offsets(
    host: &impl GroupHost,
    group_id: String,
    partitions: Vec<(String, i32)>,
) -> Result<Vec<Option<ResponseError>>, ResponseError> {
    host.groups().check_loaded(&group_id)?;
    let subscribed = host
        .groups()
        .with_group(&group_id, |g| subscribed_topics(g))
        .ok_or(ResponseError::GroupIdNotFound)??;
    let outcomes: Vec<Option<ResponseError>> = partitions
        .iter()
        .map(|(topic, _)| {
            let in_use = subscribed.as_ref().is_some_and(|s| s.is_subscribed(topic));
            in_use.then_some(ResponseError::GroupSubscribedToTopic)
        })
        .collect();
    let deleted: Vec<(String, i32)> = partitions
        .into_iter()
        .zip(&outcomes)
        .filter(|(_, outcome)| outcome.is_none())
        .map(|(partition, _)| partition)
        .collect();
    let records: Vec<_> = deleted
        .iter()
        .map(|(t, p)| (store::offset_key(&group_id, t, *p), None))
        .collect();
    persist(host, &group_id, &records).await?;
    host.groups().with_group(&group_id, |g| {
        deleted.iter().for_each(|k| drop(g.offsets.remove(k)))
    });
    Ok(outcomes)
}

/// The topics a group's members subscribe to.
enum Subscribed {
    Topics(std::collections::HashSet<String>),
    /// A member's subscription could not be read: every topic counts as in use.
    All,
}

impl Subscribed {
    fn is_subscribed(&self, topic: &str) -> bool {
        match self {
            Subscribed::Topics(topics) => topics.contains(topic),
            Subscribed::All => true,
        }
    }
}

/// `None` for an empty group (nothing is in use); the members' subscribed topics for a consumer
/// group; NON_EMPTY_GROUP for any other group with members, whose metadata Kafka cannot read.
fn subscribed_topics(group: &Group) -> Result<Option<Subscribed>, ResponseError> {
    if group.is_empty() {
        return Ok(None);
    }
    if group.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
        return Err(ResponseError::NonEmptyGroup);
    }
    let mut topics = std::collections::HashSet::new();
    for member in group.members.values() {
        let metadata = match &group.protocol {
            Some(protocol) => member.metadata(protocol),
            None => member
                .protocols
                .first()
                .map(|(_, m)| m.clone())
                .unwrap_or_default(),
        };
        match client::consumer_protocol::decode_subscription(metadata) {
            Ok(subscription) => topics.extend(subscription.topics),
            Err(_) => return Ok(Some(Subscribed::All)),
        }
    }
    Ok(Some(Subscribed::Topics(topics)))
}
