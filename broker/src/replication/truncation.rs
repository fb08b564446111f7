//! The "before fetching" step of a followed partition, run when the fetcher starts following
//! it and after each change of its leader or leader epoch: it finds where the local log
//! diverges from the leader's and cuts the divergent suffix (KIP-101, KIP-279), then fetching
//! starts at the local log end.
//!
//! The follower asks the leader (OffsetForLeaderEpoch) where its own latest epoch ends in the
//! leader's log. The answer (epoch', end') names the largest epoch the leader knows at or
//! below it; the follower cuts to min(end', its own end of epoch'). If the follower's largest
//! epoch at or below epoch' is smaller than epoch', the two logs may diverge earlier, so it
//! asks again for its new latest epoch (at most `TRUNCATION_ROUNDS_MAX` rounds). An
//! UNDEFINED answer (the leader knows no such epoch) cuts to the high watermark, as Kafka does.
//! A deposed leader that comes back goes through the same step, so no divergent suffix
//! survives.

use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::connection::{LeaderConnection, ReplicationError};
use super::table::Followed;
use crate::partition::Partition;

/// OffsetForLeaderEpoch version the follower sends (flexible, with `replica_id`).
const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 4;
/// An answer for one partition is a few dozen bytes.
const RESPONSE_BYTES_MAX: usize = 64 << 10;
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Each round after the first cuts the log below an epoch boundary the previous round found,
/// so a handful reaches agreement; the bound only stops a misbehaving leader.
const TRUNCATION_ROUNDS_MAX: usize = 64;

/// The offset to fetch `partition` from, for the assignment `followed` (its leader and
/// `leader_epoch`, which a request to the leader carries as `current_leader_epoch`).
/// `connection` is open to that leader and idle. Truncates the local log's divergent suffix
/// first. An error of the connection closes it (the fetcher reconnects and runs the step
/// again); the leader refusing the partition, or a truncation that fails, is
/// `ReplicationError::Refused`, after which the partition is retried later.
pub async fn fetch_start(
    connection: &mut LeaderConnection,
    partition: &Partition,
    followed: &Followed,
) -> Result<i64, ReplicationError> {
    let log = &partition.log;
    for _ in 0..TRUNCATION_ROUNDS_MAX {
        let Some(asked) = log.latest_epoch() else {
            // No epoch stored: nothing can have diverged below the high watermark.
            truncate(partition, log.high_watermark()).await?;
            return Ok(log.log_end_offset());
        };
        let answer = ask_leader(connection, followed, asked).await?;
        let cut = cut_for_answer(log, answer);
        truncate(partition, cut.offset).await?;
        if ends_after_cut(log, asked, &cut) {
            return Ok(log.log_end_offset());
        }
    }
    Err(refused(
        ResponseError::UnknownServerError,
        "truncation did not converge",
    ))
}

/// Where one round cuts the log, from the leader's answer (epoch', end') to the question for
/// the local latest epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// At or below the log end.
    pub offset: i64,
    /// The round found where the logs agree: fetching starts after the cut.
    pub done: bool,
}

/// The cut the leader's `answer` calls for (pure: the rule of KIP-279): to the high watermark
/// when the leader knows no such epoch (end' < 0); else to min(end', own end of epoch'), done
/// unless the local log's largest epoch at or below epoch' is older than epoch'.
pub fn cut_for_answer(log: &storage::PartitionLog, answer: (i32, i64)) -> Cut {
    let (leader_epoch, leader_end) = answer;
    if leader_end < 0 {
        return Cut {
            offset: log.high_watermark().min(log.log_end_offset()),
            done: true,
        };
    }
    let (target, done) = match log.end_offset_for_epoch(leader_epoch) {
        Some((own_epoch, own_end)) => (leader_end.min(own_end), own_epoch == leader_epoch),
        None => (leader_end, true),
    };
    Cut {
        offset: target.min(log.log_end_offset()),
        done,
    }
}

/// Whether the step ends once `cut` (the answer to the question for epoch `asked`) is made:
/// it found agreement, or the cut left the latest epoch as it was (another round would ask the
/// same question).
pub fn ends_after_cut(log: &storage::PartitionLog, asked: i32, cut: &Cut) -> bool {
    cut.done || log.latest_epoch() == Some(asked)
}

/// ListOffsets version the follower sends to learn the leader's log start (current leader
/// epoch checked, flexible).
const LIST_OFFSETS_VERSION: i16 = 7;
/// ListOffsets' timestamp asking for the log start offset.
const EARLIEST_TIMESTAMP: i64 = -2;

/// After the leader answered a fetch OFFSET_OUT_OF_RANGE (and `fetch_start` cut any divergent
/// suffix): asks the leader its log start (ListOffsets EARLIEST) and starts there if it passed
/// the local log end (`start_at_leader_log_start`). Returns the offset to fetch from. Errors
/// as `fetch_start`.
pub async fn fetch_start_out_of_range(
    connection: &mut LeaderConnection,
    partition: &Partition,
    followed: &Followed,
) -> Result<i64, ReplicationError> {
    let leader_log_start = ask_leader_log_start(connection, followed).await?;
    start_at_leader_log_start(partition, leader_log_start).await
}

/// Where the log restarts, empty, given the leader's log start (pure): at `leader_log_start`
/// if it passed the local log end (retention or DeleteRecords moved it while this follower was
/// behind, so nothing local is of use: Kafka's `truncateFullyAndStartAt`); else None, and
/// fetching goes on from the log end.
pub fn reset_for_leader_log_start(
    log: &storage::PartitionLog,
    leader_log_start: i64,
) -> Option<i64> {
    (leader_log_start > log.log_end_offset()).then_some(leader_log_start)
}

/// Restarts the log at the leader's log start if `reset_for_leader_log_start` says so, and
/// returns the offset to fetch from (the log end). A reset that fails is
/// `ReplicationError::Refused`, retried later.
pub async fn start_at_leader_log_start(
    partition: &Partition,
    leader_log_start: i64,
) -> Result<i64, ReplicationError> {
    let log = &partition.log;
    if let Some(offset) = reset_for_leader_log_start(log, leader_log_start) {
        log::info!(
            "{}: the leader's log starts at {offset}, past the local log end {}: \
             restarting the log there",
            partition.dir.display(),
            log.log_end_offset()
        );
        partition.reset_to(offset).await.map_err(|error| {
            let what = format!("resetting {} to {offset}: {error}", partition.dir.display());
            refused(ResponseError::KafkaStorageError, &what)
        })?;
    }
    Ok(log.log_end_offset())
}

/// ListOffsets EARLIEST for one partition: the leader's log start offset.
async fn ask_leader_log_start(
    connection: &mut LeaderConnection,
    followed: &Followed,
) -> Result<i64, ReplicationError> {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(followed.topic.clone())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(followed.partition)
                .with_current_leader_epoch(followed.leader_epoch)
                .with_timestamp(EARLIEST_TIMESTAMP)])]);
    let response: ListOffsetsResponse = connection
        .call(
            ApiKey::ListOffsets,
            LIST_OFFSETS_VERSION,
            &request,
            RESPONSE_BYTES_MAX,
            RESPONSE_TIMEOUT,
        )
        .await?;
    let answer = (response.topics.iter())
        .filter(|topic| topic.name.0.as_str() == followed.topic)
        .flat_map(|topic| topic.partitions.iter())
        .find(|p| p.partition_index == followed.partition);
    let Some(answer) = answer else {
        let message = "ListOffsets response without the partition asked";
        return Err(ReplicationError::Protocol(message.to_string()));
    };
    if let Some(error) = ResponseError::try_from_code(answer.error_code) {
        return Err(refused(error, "the leader refused ListOffsets"));
    }
    if answer.offset < 0 {
        let message = format!("ListOffsets answered the log start {}", answer.offset);
        return Err(ReplicationError::Protocol(message));
    }
    Ok(answer.offset)
}

/// OffsetForLeaderEpoch for one partition: the leader's (epoch, end offset) for `epoch`.
async fn ask_leader(
    connection: &mut LeaderConnection,
    followed: &Followed,
    epoch: i32,
) -> Result<(i32, i64), ReplicationError> {
    let request = OffsetForLeaderEpochRequest::default()
        // The leader answers every replica id alike; the fetcher's id is in its client id.
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(TopicName(StrBytes::from_string(followed.topic.clone())))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(followed.partition)
                .with_current_leader_epoch(followed.leader_epoch)
                .with_leader_epoch(epoch)])]);
    let response: OffsetForLeaderEpochResponse = connection
        .call(
            ApiKey::OffsetForLeaderEpoch,
            OFFSET_FOR_LEADER_EPOCH_VERSION,
            &request,
            RESPONSE_BYTES_MAX,
            RESPONSE_TIMEOUT,
        )
        .await?;
    let answer = (response.topics.iter())
        .filter(|topic| topic.topic.0.as_str() == followed.topic)
        .flat_map(|topic| topic.partitions.iter())
        .find(|p| p.partition == followed.partition);
    let Some(answer) = answer else {
        let message = "OffsetForLeaderEpoch response without the partition asked";
        return Err(ReplicationError::Protocol(message.to_string()));
    };
    if let Some(error) = ResponseError::try_from_code(answer.error_code) {
        return Err(refused(error, "the leader refused OffsetForLeaderEpoch"));
    }
    Ok((answer.leader_epoch, answer.end_offset))
}

/// Cuts the log at `offset` (at or below its end), or at the start of the batch holding it.
pub async fn truncate(partition: &Partition, offset: i64) -> Result<(), ReplicationError> {
    let offset = offset.max(partition.log.log_start_offset());
    let result = match partition.truncate_to(offset).await {
        Err(storage::StorageError::NotBatchBoundary {
            batch_base_offset, ..
        }) => partition.truncate_to(batch_base_offset).await,
        result => result,
    };
    result.map_err(|error| {
        let what = format!(
            "truncating {} to {offset}: {error}",
            partition.dir.display()
        );
        refused(ResponseError::KafkaStorageError, &what)
    })
}

fn refused(error: ResponseError, what: &str) -> ReplicationError {
    log::warn!("{what}: {error:?}");
    ReplicationError::Refused(error)
}
