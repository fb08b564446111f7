//! One fetcher task: a shard's connection to one leader broker, carrying every partition the
//! shard follows from it. One Fetch in flight; each partition of the response is validated and
//! appended as the leader stored it, if the shard's snapshot still names the leader and epoch
//! the request was sent with.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{ApiKey, FetchResponse};
use storage::{StorageError, ValidatedBatches};

use super::connection::{LeaderConnection, ReplicationError, RESPONSE_TIMEOUT_MARGIN};
use super::table::{FetcherConfig, FetcherState, Followed, ReplicaHost};
use super::{truncation, wire};
use crate::log_limit::{RateLimitedLog, REPEATED_ERROR_LOG_INTERVAL};
use crate::partition::Partition;

/// First wait before reconnecting to a leader; it doubles at each failure in a row.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest wait before reconnecting: a leader that comes back is fetched from within this.
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long a partition the leader refused (or whose append failed) waits before it is fetched
/// again; a metadata change that moves it starts it at once. Most refusals are a leader that
/// has not applied the snapshot this follower acts on yet (a new topic, a new epoch), which
/// takes milliseconds: Kafka's 1 s (`replica.fetch.backoff.ms`) would delay replication of
/// every new topic and leader by up to that, so a quarter of it.
const PARTITION_RETRY_BACKOFF: Duration = Duration::from_millis(250);
/// How long an idle fetcher (nothing due) sleeps unless its partitions change.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// Runs until the shard stops following anything from `state.leader`.
pub async fn run(host: Rc<dyn ReplicaHost>, state: Rc<FetcherState>, config: FetcherConfig) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    let mut failures = RateLimitedLog::new(REPEATED_ERROR_LOG_INTERVAL);
    let mut connection: Option<LeaderConnection> = None;
    while !state.stopped.get() {
        let result = match connection.as_mut() {
            Some(open) => fetch_round(&*host, &state, &config, open).await,
            None => connect(&*host, &state, &config).await.map(|open| {
                connection = Some(open);
            }),
        };
        match result {
            Ok(()) => backoff = RECONNECT_BACKOFF_MIN,
            Err(error) => {
                connection = None;
                if let Some(count) = failures.observe(Instant::now()) {
                    log::warn!(
                        "shard {}: replication from broker {} failed ({count} times): {error}",
                        config.shard_id,
                        state.leader
                    );
                }
                state.wait_for_change(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
            }
        }
    }
}

async fn connect(
    host: &dyn ReplicaHost,
    state: &FetcherState,
    config: &FetcherConfig,
) -> Result<LeaderConnection, ReplicationError> {
    let snapshot = host.metadata();
    let Some(leader) = snapshot.brokers.get(&state.leader) else {
        return Err(ReplicationError::Unresolved(format!(
            "broker {} (not registered)",
            state.leader
        )));
    };
    let client_id = format!("sluice-replica-{}-{}", config.node_id, config.shard_id);
    LeaderConnection::connect(&leader.host, leader.port, client_id).await
}

/// Starts the partitions that need it, then sends one Fetch and applies its response.
async fn fetch_round(
    host: &dyn ReplicaHost,
    state: &FetcherState,
    config: &FetcherConfig,
    connection: &mut LeaderConnection,
) -> Result<(), ReplicationError> {
    start_pending(host, state, connection).await?;
    let Some((request, count)) = wire::build_request(state, config, Instant::now()) else {
        state.wait_for_change(IDLE_WAIT).await;
        return Ok(());
    };
    let limit = wire::response_bytes_limit(config, count);
    let timeout = Duration::from_millis(config.wait_max_ms) + RESPONSE_TIMEOUT_MARGIN;
    let response: FetchResponse = connection
        .call(ApiKey::Fetch, wire::FETCH_VERSION, &request, limit, timeout)
        .await?;
    drop(request);
    if let Some(error) = ResponseError::try_from_code(response.error_code) {
        return Err(ReplicationError::Protocol(format!(
            "Fetch answered {error:?}"
        )));
    }
    for topic in response.responses {
        for data in topic.partitions {
            apply_partition(host, state, &topic.topic.0, data).await;
        }
    }
    Ok(())
}

/// Runs the "before fetching" step for every partition that has no fetch offset yet.
async fn start_pending(
    host: &dyn ReplicaHost,
    state: &FetcherState,
    connection: &mut LeaderConnection,
) -> Result<(), ReplicationError> {
    let now = Instant::now();
    let pending: Vec<(Followed, bool)> = (state.partitions.borrow().values())
        .flat_map(|topic| topic.values())
        .filter(|follow| follow.fetch_offset.is_none() && follow.is_due(now))
        .map(|follow| (follow.followed.clone(), follow.out_of_range))
        .collect();
    for (followed, out_of_range) in pending {
        let Some(partition) = host.followed_partition(&followed.topic, followed.partition) else {
            continue;
        };
        let mut start = truncation::fetch_start(connection, &partition, &followed).await;
        if start.is_ok() && out_of_range {
            start = truncation::fetch_start_out_of_range(connection, &partition, &followed).await;
        }
        match start {
            Ok(offset) => {
                state.update(&followed, |follow| {
                    follow.fetch_offset = Some(offset);
                    follow.out_of_range = false;
                });
            }
            Err(ReplicationError::Refused(_)) => retry_later(state, &followed),
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Applies one partition of a Fetch response, if its fetcher still follows it as the request
/// was sent and the shard's snapshot still names the same leader and epoch.
async fn apply_partition(
    host: &dyn ReplicaHost,
    state: &FetcherState,
    topic: &str,
    data: PartitionData,
) {
    let index = data.partition_index;
    let sent = {
        let partitions = state.partitions.borrow();
        let follow = partitions.get(topic).and_then(|topic| topic.get(&index));
        follow.and_then(|follow| Some((follow.followed.clone(), follow.sent_offset?)))
    };
    let Some((followed, sent_offset)) = sent else {
        return;
    };
    if let Some(error) = ResponseError::try_from_code(data.error_code) {
        log::debug!("{topic}-{index}: the leader answered {error:?}");
        return act(state, &followed, after_error(error));
    }
    let Some(partition) = host.followed_partition(topic, index) else {
        return;
    };
    let records = wire::whole_batches(data.records.unwrap_or_default());
    let current = || followed.is_current_in(&host.metadata());
    let leader = (data.high_watermark, data.log_start_offset);
    let outcome = apply_records(&partition, records, leader, current).await;
    if let Fetched::Appended { log_end } | Fetched::StartedAt { log_end } = outcome {
        state.update(&followed, |follow| {
            if follow.fetch_offset == Some(sent_offset) {
                follow.fetch_offset = Some(log_end);
            }
        });
    }
    act(state, &followed, outcome);
}

/// What applying one partition of a Fetch response came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Nothing appended (no records, or the snapshot names another leader or epoch now).
    Nothing,
    /// The records were appended; the log ends here now.
    Appended { log_end: i64 },
    /// The log was empty and restarted at the first fetched batch, which starts below it
    /// (`starts_at_fetched_batch`); it is fetched from `log_end` (that batch) now.
    StartedAt { log_end: i64 },
    /// The "before fetching" step runs again (truncation decides where to fetch from).
    Restart,
    /// The leader answered OFFSET_OUT_OF_RANGE: the "before fetching" step runs again, then
    /// asks the leader its log start (`truncation::fetch_start_out_of_range`).
    OutOfRange,
    /// The partition is fetched again after the back-off.
    RetryLater,
}

/// What the fetcher does with a partition the leader answered `error` for.
pub fn after_error(error: ResponseError) -> Fetched {
    match error {
        ResponseError::OffsetOutOfRange => Fetched::OutOfRange,
        _ => Fetched::RetryLater,
    }
}

/// Applies the fetched `records` (whole batches) and the leader's high watermark and log start
/// (`leader`) to `partition` if `is_current()` (the snapshot still names the leader and epoch
/// the request was sent with), checked with no await before the append takes its place in the
/// log's queue. The log start follows the leader's after the high watermark
/// (`Partition::follow_log_start`).
pub async fn apply_records(
    partition: &Partition,
    records: Bytes,
    leader: (i64, i64),
    is_current: impl Fn() -> bool,
) -> Fetched {
    let (high_watermark, log_start) = leader;
    let outcome = append_records(partition, records, high_watermark, &is_current).await;
    if matches!(outcome, Fetched::Nothing | Fetched::Appended { .. }) && is_current() {
        if let Err(error) = partition.follow_log_start(log_start).await {
            // Tried again with the next response; storage logs runs of I/O failures.
            let dir = partition.dir.display();
            log::debug!("{dir}: moving the log start to the leader's {log_start} failed: {error}");
        }
    }
    outcome
}

/// `apply_records` without the log start.
async fn append_records(
    partition: &Partition,
    records: Bytes,
    high_watermark: i64,
    is_current: &impl Fn() -> bool,
) -> Fetched {
    if records.is_empty() {
        if is_current() {
            partition.follow_high_watermark(high_watermark);
        }
        return Fetched::Nothing;
    }
    let batches = match ValidatedBatches::validate(records) {
        Ok(batches) => batches,
        Err(error) => {
            log::warn!(
                "{}: fetched batches fail validation: {error}",
                partition.dir.display()
            );
            return Fetched::RetryLater;
        }
    };
    // No await between this check and the append's place in the log's queue: an append as
    // leader after a role change comes after it.
    if !is_current() {
        return Fetched::Nothing;
    }
    match partition.append_fetched(batches, high_watermark).await {
        Ok(log_end) => Fetched::Appended { log_end },
        Err(StorageError::NotContiguous { expected, found }) => {
            not_contiguous(partition, expected, found).await
        }
        Err(error) => {
            // Storage logs a run of failed appends once (ENOSPC, EIO) and when they succeed
            // again; the retry every PARTITION_RETRY_BACKOFF must not log each time.
            let dir = partition.dir.display();
            log::debug!("{dir}: appending fetched batches failed: {error}");
            Fetched::RetryLater
        }
    }
}

/// Whether an empty log restarts at the first fetched batch, which starts at `found`, below
/// the log's start (pure). The log was restarted at the leader's log start, which lies inside
/// the leader's batch that starts at `found` (DeleteRecords may move a log start into a batch;
/// Kafka's UnexpectedAppendOffsetException): the log starts at that batch instead.
pub fn starts_at_fetched_batch(log: &storage::PartitionLog, found: i64) -> bool {
    let start = log.log_start_offset();
    start == log.log_end_offset() && found < start
}

/// Fetched batches start at `found`, the log ends at `expected`: the log restarts at the batch
/// if `starts_at_fetched_batch`, else the "before fetching" step runs again.
async fn not_contiguous(partition: &Partition, expected: i64, found: i64) -> Fetched {
    let dir = partition.dir.display();
    if !starts_at_fetched_batch(&partition.log, found) {
        log::warn!("{dir}: fetched batches start at {found}, the log at {expected}");
        return Fetched::Restart;
    }
    match partition.reset_to(found).await {
        Ok(()) => Fetched::StartedAt { log_end: found },
        Err(error) => {
            log::warn!("{dir}: restarting the log at {found} failed: {error}");
            Fetched::RetryLater
        }
    }
}

fn act(state: &FetcherState, followed: &Followed, outcome: Fetched) {
    match outcome {
        Fetched::Restart => restart(state, followed),
        Fetched::OutOfRange => {
            restart(state, followed);
            state.update(followed, |follow| follow.out_of_range = true);
        }
        Fetched::RetryLater => retry_later(state, followed),
        Fetched::Nothing | Fetched::Appended { .. } | Fetched::StartedAt { .. } => {}
    }
}

fn retry_later(state: &FetcherState, followed: &Followed) {
    let at = Instant::now() + PARTITION_RETRY_BACKOFF;
    state.update(followed, |follow| follow.retry_at = Some(at));
}

/// The partition runs its "before fetching" step again, after the retry back-off.
fn restart(state: &FetcherState, followed: &Followed) {
    let at = Instant::now() + PARTITION_RETRY_BACKOFF;
    state.update(followed, |follow| {
        follow.fetch_offset = None;
        follow.retry_at = Some(at);
    });
}
