//! `GroupConsumer`: a member of a Kafka consumer group using the classic (eager) protocol.
//!
//! The poll loop joins the group (JoinGroup, retrying with the member id MEMBER_ID_REQUIRED
//! hands out), computes the range assignment when it is the leader, syncs, looks up committed
//! offsets, and fetches the assigned partitions. A heartbeat thread keeps the session alive on
//! its own connection and flags rebalances, which the next `poll` acts on. Offsets are committed
//! by `commit`, by auto-commit at the start of `poll`, before a rebalance gives partitions up,
//! and on close. Closing (or dropping) leaves the group.

mod heartbeat;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kafka_protocol::ResponseError;

pub use heartbeat::HeartbeatSignal;

use super::consumer_protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription, range_assign,
    ASSIGNOR_RANGE, PROTOCOL_TYPE_CONSUMER,
};
use super::group_apis::SyncGroupParams;
use super::{
    Client, ClientConfig, ClientError, ConsumedRecord, FetchPosition, FetchResult, GroupMembership,
    GroupProtocol, JoinGroupParams, JoinOutcome, JoinedGroup, JoinedMember, PartitionOffset,
    Result, TIMESTAMP_EARLIEST, TIMESTAMP_LATEST,
};
use heartbeat::{Heartbeat, HeartbeatConfig};

/// Attempts at joining before giving up; each failed attempt is a broker error that a retry
/// can cure (a rebalance that moved on, a member id the broker forgot, a lost coordinator).
const JOIN_ATTEMPTS_MAX: u32 = 10;
/// Pause between join attempts.
const JOIN_RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// MEMBER_ID_REQUIRED comes at most once per join; twice in a row means a confused broker.
const MEMBER_ID_ROUNDS_MAX: u32 = 2;

/// Where to start a partition the group has no committed offset for (or whose committed offset
/// is out of range): Kafka's auto.offset.reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    Earliest,
    Latest,
}

impl OffsetReset {
    fn timestamp(self) -> i64 {
        match self {
            OffsetReset::Earliest => TIMESTAMP_EARLIEST,
            OffsetReset::Latest => TIMESTAMP_LATEST,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    pub bootstrap: String,
    pub group_id: String,
    pub topics: Vec<String>,
    pub client: ClientConfig,
    /// The broker drops the member after this long without a heartbeat.
    pub session_timeout: Duration,
    /// How long the broker waits for members to rejoin in a rebalance.
    pub rebalance_timeout: Duration,
    /// Kafka advises at most a third of the session timeout.
    pub heartbeat_interval: Duration,
    /// Commit consumed positions this often (checked in `poll`); `None` disables auto-commit.
    pub auto_commit_interval: Option<Duration>,
    pub offset_reset: OffsetReset,
    pub fetch_max_wait: Duration,
    pub fetch_bytes_max: i32,
    pub partition_fetch_bytes_max: i32,
    /// Records one `poll` returns at most.
    pub poll_records_max: usize,
}

impl GroupConsumerConfig {
    /// Kafka's consumer defaults, except a 60 s rebalance timeout.
    pub fn new(bootstrap: &str, group_id: &str, topics: Vec<String>) -> Self {
        GroupConsumerConfig {
            bootstrap: bootstrap.to_owned(),
            group_id: group_id.to_owned(),
            topics,
            client: ClientConfig::default(),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(3),
            auto_commit_interval: Some(Duration::from_secs(5)),
            offset_reset: OffsetReset::Latest,
            fetch_max_wait: Duration::from_millis(500),
            fetch_bytes_max: 4 * 1024 * 1024,
            partition_fetch_bytes_max: 1024 * 1024,
            poll_records_max: 500,
        }
    }
}

/// A record with the partition it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub topic: String,
    pub partition: i32,
    pub record: ConsumedRecord,
}

/// Read and commit state of one assigned partition.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionState {
    /// Offset of the next record `poll` returns.
    position: i64,
    /// What the group has committed, as far as this member knows.
    committed: Option<i64>,
    /// From the last fetch of the partition; `None` before the first.
    high_watermark: Option<i64>,
}

fn millis(duration: Duration) -> i32 {
    i32::try_from(duration.as_millis()).unwrap_or(i32::MAX)
}

/// Errors after which the member rejoins instead of failing.
fn is_rebalance_error(error: &ClientError) -> bool {
    matches!(
        error.kafka_error(),
        Some(
            ResponseError::RebalanceInProgress
                | ResponseError::IllegalGeneration
                | ResponseError::UnknownMemberId
                | ResponseError::FencedInstanceId
        )
    )
}

/// Errors after which the coordinator connection is replaced.
fn is_coordinator_error(error: &ClientError) -> bool {
    match error {
        ClientError::Io { .. } | ClientError::Protocol(_) => true,
        _ => matches!(
            error.kafka_error(),
            Some(
                ResponseError::NotCoordinator
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::CoordinatorLoadInProgress
            )
        ),
    }
}

/// A consumer group member. Not thread-safe: one thread polls; the heartbeat thread is internal.
pub struct GroupConsumer {
    config: GroupConsumerConfig,
    coordinator: Client,
    /// Metadata, ListOffsets and Fetch go to the bootstrap broker (Sluice is a single node).
    fetcher: Client,
    heartbeat: Heartbeat,
    /// Empty until the broker assigns one; kept across rejoins.
    member_id: String,
    /// The generation this member is in; `None` before the first join and while rejoining.
    membership: Option<GroupMembership>,
    assignment: BTreeMap<(String, i32), PartitionState>,
    rejoin_needed: bool,
    auto_commit_last: Instant,
    closed: bool,
}

impl GroupConsumer {
    /// Connects; the group is joined by the first `poll`.
    pub fn new(config: GroupConsumerConfig) -> Result<Self> {
        assert!(!config.topics.is_empty(), "a consumer subscribes to topics");
        assert!(config.poll_records_max > 0);
        let fetcher = Client::connect_with(&config.bootstrap, config.client.clone())?;
        let coordinator = Client::connect_coordinator(
            &config.bootstrap,
            &config.group_id,
            config.client.clone(),
        )?;
        let heartbeat = Heartbeat::start(HeartbeatConfig {
            bootstrap: config.bootstrap.clone(),
            group_id: config.group_id.clone(),
            client: config.client.clone(),
            interval: config.heartbeat_interval,
        })
        .map_err(|source| ClientError::Io {
            address: config.bootstrap.clone(),
            source,
        })?;
        Ok(GroupConsumer {
            config,
            coordinator,
            fetcher,
            heartbeat,
            member_id: String::new(),
            membership: None,
            assignment: BTreeMap::new(),
            rejoin_needed: true,
            auto_commit_last: Instant::now(),
            closed: false,
        })
    }

    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    pub fn generation_id(&self) -> Option<i32> {
        self.membership.as_ref().map(|m| m.generation_id)
    }

    /// The partitions assigned in the current generation, sorted.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.assignment.keys().cloned().collect()
    }

    pub fn position(&self, topic: &str, partition: i32) -> Option<i64> {
        self.assignment
            .get(&(topic.to_owned(), partition))
            .map(|state| state.position)
    }

    /// Moves the read position of an assigned partition; `false` if it is not assigned.
    pub fn seek(&mut self, topic: &str, partition: i32, offset: i64) -> bool {
        assert!(offset >= 0);
        match self.assignment.get_mut(&(topic.to_owned(), partition)) {
            Some(state) => {
                state.position = offset;
                true
            }
            None => false,
        }
    }

    /// Whether the member is in a generation and has read every assigned partition up to the
    /// high watermark of its last fetch. True with an empty assignment.
    pub fn is_caught_up(&self) -> bool {
        self.membership.is_some()
            && !self.rejoin_needed
            && self.assignment.values().all(|state| {
                state
                    .high_watermark
                    .is_some_and(|high_watermark| state.position >= high_watermark)
            })
    }

    /// Joins or rejoins if needed, auto-commits if due, then fetches the assigned partitions,
    /// waiting up to `timeout` for records. Returns at most `poll_records_max` records.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<GroupRecord>> {
        self.poll_at_most(timeout, self.config.poll_records_max)
    }

    pub fn poll_at_most(
        &mut self,
        timeout: Duration,
        records_max: usize,
    ) -> Result<Vec<GroupRecord>> {
        assert!(!self.closed && records_max > 0);
        self.take_heartbeat_signal()?;
        self.maybe_auto_commit()?;
        if self.rejoin_needed {
            self.rejoin()?;
        }
        if self.assignment.is_empty() {
            // Nothing to fetch; wait for the heartbeat to report a rebalance instead.
            self.heartbeat.wait_for_signal(timeout);
            return Ok(Vec::new());
        }
        self.fetch(timeout, records_max)
    }

    /// Commits the positions of the assigned partitions that moved since the last commit.
    pub fn commit(&mut self) -> Result<()> {
        let Some(membership) = self.membership.clone() else {
            return Ok(());
        };
        let offsets: Vec<PartitionOffset> = self
            .assignment
            .iter()
            .filter(|(_, state)| state.committed != Some(state.position))
            .map(|((topic, partition), state)| PartitionOffset {
                topic: topic.clone(),
                partition: *partition,
                offset: state.position,
            })
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.coordinator.offset_commit(&membership, &offsets) {
            if is_rebalance_error(&error) {
                self.rejoin_needed = true;
            }
            return Err(error);
        }
        for offset in offsets {
            let key = (offset.topic, offset.partition);
            let state = self.assignment.get_mut(&key).expect("committed from here");
            state.committed = Some(offset.offset);
        }
        Ok(())
    }

    /// Commits (with auto-commit on), stops heartbeats and leaves the group.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let committed = match self.config.auto_commit_interval {
            Some(_) => self.commit(),
            None => Ok(()),
        };
        self.heartbeat.stop();
        let left = match self.membership.take() {
            Some(membership) => self
                .coordinator
                .leave_group(&membership, Some("consumer closed")),
            None => Ok(()),
        };
        committed.and(left)
    }

    fn take_heartbeat_signal(&mut self) -> Result<()> {
        match self.heartbeat.take_signal() {
            None => {}
            Some(HeartbeatSignal::Rejoin) => self.rejoin_needed = true,
            Some(HeartbeatSignal::Reset) => {
                self.rejoin_needed = true;
                self.reset_generation();
            }
            Some(HeartbeatSignal::CoordinatorLost) => {
                self.rejoin_needed = true;
                self.reconnect_coordinator()?;
            }
        }
        Ok(())
    }

    fn reset_generation(&mut self) {
        self.member_id.clear();
        self.membership = None;
        self.assignment.clear();
    }

    fn reconnect_coordinator(&mut self) -> Result<()> {
        self.coordinator = Client::connect_coordinator(
            &self.config.bootstrap,
            &self.config.group_id,
            self.config.client.clone(),
        )?;
        Ok(())
    }

    fn maybe_auto_commit(&mut self) -> Result<()> {
        let Some(interval) = self.config.auto_commit_interval else {
            return Ok(());
        };
        if self.auto_commit_last.elapsed() < interval {
            return Ok(());
        }
        self.auto_commit_last = Instant::now();
        match self.commit() {
            // The rebalance is handled by the rejoin that follows; the next commit catches up.
            Err(error) if is_rebalance_error(&error) => Ok(()),
            result => result,
        }
    }

    /// Gives up the assignment (committing it first with auto-commit on, as Kafka's eager
    /// protocol does) and joins until a generation is complete.
    fn rejoin(&mut self) -> Result<()> {
        if self.config.auto_commit_interval.is_some() && self.membership.is_some() {
            // A failure only means another member may reread some records.
            let _ = self.commit();
        }
        self.heartbeat.set_membership(None);
        self.membership = None;
        self.assignment.clear();
        let mut attempt = 1;
        let (membership, partitions) = loop {
            match self.join_and_sync() {
                Ok(joined) => break joined,
                Err(error) if attempt < JOIN_ATTEMPTS_MAX && self.can_retry_join(&error) => {
                    attempt += 1;
                    std::thread::sleep(JOIN_RETRY_BACKOFF);
                    if is_coordinator_error(&error) {
                        // Failing to reconnect ends the attempt; the next one tries again.
                        let _ = self.reconnect_coordinator();
                    }
                }
                Err(error) => return Err(error),
            }
        };
        self.assignment = self.initial_positions(&membership.group_id, &partitions)?;
        self.heartbeat.set_membership(Some(membership.clone()));
        self.membership = Some(membership);
        self.rejoin_needed = false;
        self.auto_commit_last = Instant::now();
        Ok(())
    }

    fn can_retry_join(&mut self, error: &ClientError) -> bool {
        if error.kafka_error() == Some(ResponseError::UnknownMemberId) {
            self.member_id.clear();
        }
        is_rebalance_error(error) || is_coordinator_error(error)
    }

    /// One JoinGroup (plus its MEMBER_ID_REQUIRED round) and SyncGroup. Returns the generation
    /// and this member's partitions.
    fn join_and_sync(&mut self) -> Result<(GroupMembership, Vec<(String, i32)>)> {
        let joined = self.join()?;
        let membership = GroupMembership {
            group_id: self.config.group_id.clone(),
            member_id: joined.member_id.clone(),
            generation_id: joined.generation_id,
            group_instance_id: None,
        };
        let assignments = if joined.is_leader() && !joined.skip_assignment {
            self.assign(&joined.members)?
        } else {
            Vec::new()
        };
        let protocol_name = joined.protocol_name.as_deref().unwrap_or(ASSIGNOR_RANGE);
        let assignment = self.coordinator.sync_group(
            &SyncGroupParams {
                membership: &membership,
                protocol_type: PROTOCOL_TYPE_CONSUMER,
                protocol_name,
                assignments: &assignments,
            },
            self.config.rebalance_timeout,
        )?;
        let partitions = decode_assignment(assignment)?.pairs();
        Ok((membership, partitions))
    }

    fn join(&mut self) -> Result<JoinedGroup> {
        let mut params = JoinGroupParams {
            group_id: self.config.group_id.clone(),
            member_id: self.member_id.clone(),
            group_instance_id: None,
            session_timeout_ms: millis(self.config.session_timeout),
            rebalance_timeout_ms: millis(self.config.rebalance_timeout),
            protocol_type: PROTOCOL_TYPE_CONSUMER.to_owned(),
            protocols: vec![GroupProtocol {
                name: ASSIGNOR_RANGE.to_owned(),
                metadata: encode_subscription(&self.config.topics),
            }],
            reason: None,
        };
        for _ in 0..MEMBER_ID_ROUNDS_MAX {
            match self.coordinator.join_group(&params)? {
                JoinOutcome::MemberIdRequired { member_id } => {
                    self.member_id = member_id.clone();
                    params.member_id = member_id;
                    params.reason = Some("rejoin with the member id the broker assigned".into());
                }
                JoinOutcome::Joined(joined) => {
                    if let Some(name) = &joined.protocol_name {
                        if name != ASSIGNOR_RANGE {
                            return Err(ClientError::protocol(format!(
                                "group chose protocol {name:?}, which this member did not offer"
                            )));
                        }
                    }
                    self.member_id = joined.member_id.clone();
                    return Ok(joined);
                }
            }
        }
        Err(ClientError::protocol(format!(
            "JoinGroup answered MEMBER_ID_REQUIRED {MEMBER_ID_ROUNDS_MAX} times in a row"
        )))
    }

    /// The leader's part: range-assign the partitions of every topic any member subscribes to.
    fn assign(&mut self, members: &[JoinedMember]) -> Result<Vec<(String, bytes::Bytes)>> {
        let mut subscriptions = Vec::with_capacity(members.len());
        for member in members {
            let subscription = decode_subscription(member.metadata.clone())?;
            subscriptions.push((member.member_id.clone(), subscription.topics));
        }
        let mut topics: Vec<&str> = subscriptions
            .iter()
            .flat_map(|(_, topics)| topics.iter().map(String::as_str))
            .collect();
        topics.sort_unstable();
        topics.dedup();
        let metadata = self.fetcher.metadata(Some(&topics))?;
        let partitions_by_topic: BTreeMap<String, Vec<i32>> = metadata
            .topics
            .iter()
            .filter(|topic| topic.error_code == 0)
            .map(|topic| {
                let partitions = topic.partitions.iter().map(|p| p.partition).collect();
                (topic.name.clone(), partitions)
            })
            .collect();
        let assignments = range_assign(&subscriptions, &partitions_by_topic);
        Ok(assignments
            .iter()
            .map(|(member_id, assignment)| (member_id.clone(), encode_assignment(assignment)))
            .collect())
    }

    /// Committed offsets of `partitions`, or the reset position where there are none.
    fn initial_positions(
        &mut self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<BTreeMap<(String, i32), PartitionState>> {
        let mut states = BTreeMap::new();
        if partitions.is_empty() {
            return Ok(states);
        }
        let committed = self.coordinator.offset_fetch(group_id, Some(partitions))?;
        for (topic, partition) in partitions {
            let offset = committed
                .iter()
                .find(|entry| entry.topic == *topic && entry.partition == *partition)
                .and_then(|entry| entry.offset);
            let position = match offset {
                Some(offset) => offset,
                None => self.reset_position(topic, *partition)?,
            };
            let state = PartitionState {
                position,
                committed: offset,
                high_watermark: None,
            };
            states.insert((topic.clone(), *partition), state);
        }
        Ok(states)
    }

    fn reset_position(&mut self, topic: &str, partition: i32) -> Result<i64> {
        let timestamp = self.config.offset_reset.timestamp();
        self.fetcher.list_offsets(topic, partition, timestamp)
    }

    fn fetch(&mut self, timeout: Duration, records_max: usize) -> Result<Vec<GroupRecord>> {
        let keys: Vec<(String, i32)> = self.assignment.keys().cloned().collect();
        let positions: Vec<FetchPosition> = keys
            .iter()
            .map(|(topic, partition)| FetchPosition {
                topic,
                partition: *partition,
                offset: self.assignment[&(topic.clone(), *partition)].position,
            })
            .collect();
        let max_wait = self.config.fetch_max_wait.min(timeout);
        let results = self.fetcher.fetch_many(
            &positions,
            millis(max_wait),
            self.config.fetch_bytes_max,
            self.config.partition_fetch_bytes_max,
        )?;
        let mut records = Vec::new();
        for (key, result) in keys.into_iter().zip(results) {
            self.take_records(key, result, records_max, &mut records)?;
        }
        Ok(records)
    }

    /// Moves a partition's records into `records` (up to `records_max` in all) and its position
    /// past them; resets the position on OFFSET_OUT_OF_RANGE.
    fn take_records(
        &mut self,
        key: (String, i32),
        result: FetchResult,
        records_max: usize,
        records: &mut Vec<GroupRecord>,
    ) -> Result<()> {
        match result.error {
            None => {}
            Some(ResponseError::OffsetOutOfRange) => {
                let position = self.reset_position(&key.0, key.1)?;
                self.assignment.get_mut(&key).expect("assigned").position = position;
                return Ok(());
            }
            // Leadership or topic changes: the next poll tries again.
            Some(error) if error.is_retriable() => return Ok(()),
            Some(error) => {
                let name = super::error::error_name(error);
                return Err(ClientError::protocol(format!(
                    "fetch from {}-{}: {name}",
                    key.0, key.1
                )));
            }
        }
        let state = self.assignment.get_mut(&key).expect("assigned");
        state.high_watermark = Some(result.high_watermark);
        for record in result.records {
            if record.offset < state.position {
                continue;
            }
            if records.len() >= records_max {
                // The next poll resumes at this record.
                state.position = record.offset;
                return Ok(());
            }
            records.push(GroupRecord {
                topic: key.0.clone(),
                partition: key.1,
                record,
            });
        }
        state.position = state.position.max(result.next_offset);
        Ok(())
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.shutdown();
        }
    }
}

#[cfg(test)]
mod tests;
