//! Runs a [`Request`] on the shard that received it: the one place that maps each request to
//! the code that serves it.

use std::rc::Rc;
use std::time::Instant;

use kafka_protocol::error::ResponseError;

use super::message::{Reply, Request};
use super::Shard;
use crate::groups;
use crate::groups::store::OFFSETS_TOPIC;
use crate::partition::{self, PartitionRead, ReadSpec};

/// Serves `request` on `shard` (the partition's owner, the group's coordinator or the
/// controller, as the sender chose).
pub async fn handle(shard: Rc<Shard>, request: Request) -> Reply {
    match request {
        Request::Append {
            topic,
            partition,
            batches,
            acks,
        } => Reply::Append(match shard.partition(&topic, partition) {
            Some(partition) => partition.append(batches, acks).await,
            None => Err(ResponseError::UnknownTopicOrPartition),
        }),
        Request::Read(specs) => Reply::Read(read(&shard, specs).await),
        Request::Wait { waits, timeout } => {
            // The fetch handler bounds the timeout; one decoded from an archive is not, and an
            // overflowing deadline answers at once instead of panicking.
            let deadline = Instant::now()
                .checked_add(timeout)
                .unwrap_or_else(Instant::now);
            let partitions = (waits.into_iter())
                .map(|(topic, partition, offset)| (shard.partition(&topic, partition), offset))
                .collect();
            partition::wait_for_any(partitions, deadline).await;
            Reply::Wait
        }
        Request::ListOffset {
            topic,
            partition,
            timestamp,
        } => Reply::ListOffset(match shard.partition(&topic, partition) {
            Some(partition) => partition.list_offset(timestamp).await,
            None => Err(ResponseError::UnknownTopicOrPartition),
        }),
        Request::DeleteRecords {
            topic,
            partition,
            offset,
        } => Reply::DeleteRecords(delete_records(&shard, &topic, partition, offset).await),
        Request::ApplyMetadata(snapshot) => {
            Reply::ApplyMetadata(shard.apply_metadata(snapshot).await)
        }
        request @ (Request::AllocateProducerId
        | Request::CreateTopics { .. }
        | Request::DeleteTopics { .. }
        | Request::CreatePartitions { .. }
        | Request::AlterTopicConfigs { .. }
        | Request::AlterBrokerConfigs { .. }
        | Request::DescribeQuorum) => handle_controller(shard, request).await,
        group_request => handle_group(&shard, group_request).await,
    }
}

/// Metadata changes, on the controller shard.
async fn handle_controller(shard: Rc<Shard>, request: Request) -> Reply {
    let controller = shard.controller();
    match request {
        Request::AllocateProducerId => {
            Reply::AllocateProducerId(controller.allocate_producer_id().await)
        }
        Request::CreateTopics {
            specs,
            validate_only,
        } => Reply::CreateTopics(controller.create_topics(specs, validate_only).await),
        Request::DeleteTopics { names } => {
            Reply::DeleteTopics(controller.delete_topics(names).await)
        }
        Request::CreatePartitions {
            requests,
            validate_only,
        } => Reply::CreatePartitions(controller.create_partitions(requests, validate_only).await),
        Request::AlterTopicConfigs {
            changes,
            validate_only,
        } => Reply::AlterTopicConfigs(controller.alter_topic_configs(changes, validate_only).await),
        Request::AlterBrokerConfigs {
            changes,
            validate_only,
        } => Reply::AlterBrokerConfigs(
            controller
                .alter_broker_configs(changes, validate_only)
                .await,
        ),
        Request::DescribeQuorum => Reply::DescribeQuorum(controller.quorum_view(
            shard.config.node_id,
            &shard.config.controller_voter_addresses(),
        )),
        _ => unreachable!("handle sends only controller requests here"),
    }
}

/// Consumer-group work, on the group's coordinator shard.
async fn handle_group(shard: &Shard, request: Request) -> Reply {
    match request {
        Request::JoinGroup { group_id, args } => {
            Reply::JoinGroup(groups::join(shard, group_id, args).await)
        }
        Request::SyncGroup {
            group_id,
            member_id,
            instance_id,
            generation,
            assignments,
        } => Reply::SyncGroup(
            groups::sync(
                shard,
                group_id,
                member_id,
                instance_id,
                generation,
                assignments,
            )
            .await,
        ),
        Request::Heartbeat {
            group_id,
            member_id,
            instance_id,
            generation,
        } => Reply::Heartbeat(groups::heartbeat(
            shard,
            &group_id,
            &member_id,
            instance_id.as_deref(),
            generation,
        )),
        Request::LeaveGroup { group_id, members } => {
            Reply::LeaveGroup(groups::leave(shard, &group_id, &members))
        }
        Request::CommitOffsets {
            group_id,
            member_id,
            instance_id,
            generation,
            entries,
        } => Reply::CommitOffsets(
            groups::commit(shard, group_id, member_id, instance_id, generation, entries).await,
        ),
        Request::FetchOffsets { group_id, wanted } => {
            Reply::FetchOffsets(groups::fetch_offsets(shard, &group_id, wanted))
        }
        Request::DescribeGroup { group_id } => {
            Reply::DescribeGroup(groups::describe(shard, &group_id))
        }
        Request::ListGroups => Reply::ListGroups(groups::summaries(shard)),
        Request::DeleteGroup { group_id } => {
            Reply::DeleteGroup(groups::delete_group(shard, group_id).await)
        }
        Request::DeleteOffsets {
            group_id,
            partitions,
        } => Reply::DeleteOffsets(groups::delete_offsets(shard, group_id, partitions).await),
        _ => unreachable!("handle sends only group requests here"),
    }
}

/// Reads each partition of `specs` in turn.
async fn read(shard: &Shard, specs: Vec<ReadSpec>) -> Vec<PartitionRead> {
    let mut reads = Vec::with_capacity(specs.len());
    for spec in specs {
        reads.push(match shard.partition(&spec.topic, spec.partition) {
            Some(partition) => partition.read(spec.offset, spec.max_bytes).await,
            None => PartitionRead {
                error: Some(ResponseError::UnknownTopicOrPartition),
                high_watermark: -1,
                log_start_offset: -1,
                records: bytes::Bytes::new(),
            },
        });
    }
    reads
}

async fn delete_records(
    shard: &Shard,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<i64, ResponseError> {
    if topic == OFFSETS_TOPIC {
        // Group state is rebuilt from this log's whole history; deleting a prefix would
        // silently drop committed offsets.
        return Err(ResponseError::InvalidTopicException);
    }
    let partition = shard
        .partition(topic, partition)
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    partition.delete_records(offset).await
}
