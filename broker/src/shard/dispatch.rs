//! Runs a [`Request`] on the shard that received it: the one place that maps each request to
//! the code that serves it.

use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;

use super::message::{Reply, Request};
use super::{admin, Shard};
use crate::cluster::controller::ProposedIsr;
use crate::groups;
use crate::groups::store::OFFSETS_TOPIC;
use crate::partition::{self, PartitionRead, ReadSpec, WaitFor, WaitSpec};

/// Serves `request` on `shard` (the partition's owner, the group's coordinator or the
/// controller, as the sender chose).
pub async fn handle(shard: Rc<Shard>, request: Request) -> Reply {
    match request {
        Request::Append {
            topic,
            partition,
            batches,
            acks,
            replication,
        } => Reply::Append(match shard.partition(&topic, partition) {
            Some(partition) => partition.append(batches, acks, replication).await,
            None => Err(ResponseError::UnknownTopicOrPartition),
        }),
        Request::Read {
            specs,
            replica_id,
            client_rack,
        } => Reply::Read(read(&shard, specs, replica_id, client_rack.as_deref()).await),
        Request::Wait {
            waits,
            wait_for,
            timeout,
        } => {
            wait(&shard, waits, wait_for, timeout).await;
            Reply::Wait
        }
        Request::ListOffset {
            topic,
            partition,
            timestamp,
            current_leader_epoch,
        } => Reply::ListOffset(match shard.partition(&topic, partition) {
            Some(partition) => match partition.check_leader_epoch(current_leader_epoch) {
                Ok(()) => partition.list_offset(timestamp).await,
                Err(error) => Err(error),
            },
            None => Err(ResponseError::UnknownTopicOrPartition),
        }),
        Request::OffsetForLeaderEpoch {
            topic,
            partition,
            leader_epoch,
        } => Reply::OffsetForLeaderEpoch(match shard.partition(&topic, partition) {
            Some(partition) => Ok((partition.log.end_offset_for_epoch(leader_epoch))
                .unwrap_or((storage::UNDEFINED_EPOCH, storage::UNDEFINED_EPOCH_OFFSET))),
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
        request if is_for_controller(&request) => handle_controller(shard, request).await,
        group_request => handle_group(&shard, group_request).await,
    }
}

/// Whether `request` is served by the controller (`handle_controller`).
fn is_for_controller(request: &Request) -> bool {
    matches!(
        request,
        Request::AllocateProducerId
            | Request::CreateTopics { .. }
            | Request::DeleteTopics { .. }
            | Request::CreatePartitions { .. }
            | Request::AlterTopicConfigs { .. }
            | Request::AlterBrokerConfigs { .. }
            | Request::DescribeQuorum
            | Request::ChangeIsr { .. }
            | Request::ElectLeaders { .. }
            | Request::AlterReassignments { .. }
    )
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
        Request::ChangeIsr {
            topic,
            topic_id,
            partition,
            change,
        } => {
            let proposed = ProposedIsr {
                topic,
                topic_id,
                partition,
                leader: shard.config.node_id,
                leader_epoch: change.leader_epoch,
                isr: change.isr,
            };
            Reply::ChangeIsr(controller.change_isr(proposed).await)
        }
        Request::ElectLeaders {
            election,
            partitions,
        } => Reply::ElectLeaders(controller.elect_leaders(election, partitions).await),
        Request::AlterReassignments { requests } => {
            Reply::AlterReassignments(controller.alter_reassignments(requests).await)
        }
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

/// Waits until any of `waits` has data past its offset (see `partition::wait_for_any`), or for
/// `timeout`.
async fn wait(shard: &Shard, waits: Vec<WaitSpec>, wait_for: WaitFor, timeout: Duration) {
    // The fetch handler bounds the timeout; one decoded from an archive is not, and an
    // overflowing deadline answers at once instead of panicking.
    let deadline = Instant::now()
        .checked_add(timeout)
        .unwrap_or_else(Instant::now);
    let partitions = (waits.into_iter())
        .map(|wait| {
            let partition = shard.partition(&wait.topic, wait.partition);
            (partition, wait.offset, wait.high_watermark)
        })
        .collect();
    partition::wait_for_any(partitions, wait_for, deadline).await;
}

/// Reads each partition of `specs` in turn, for a consumer (`replica_id` < 0) or for the
/// follower `replica_id`, whose fetch may add it to the ISR. A consumer in `client_rack` may be
/// sent to a replica there instead (KIP-392).
async fn read(
    shard: &Rc<Shard>,
    specs: Vec<ReadSpec>,
    replica_id: i32,
    client_rack: Option<&str>,
) -> Vec<PartitionRead> {
    let mut reads = Vec::with_capacity(specs.len());
    for spec in specs {
        let Some(partition) = shard.partition(&spec.topic, spec.partition) else {
            reads.push(PartitionRead::refused(
                ResponseError::UnknownTopicOrPartition,
            ));
            continue;
        };
        if let Err(error) = partition.check_leader_epoch(spec.current_leader_epoch) {
            reads.push(PartitionRead::refused(error));
            continue;
        }
        if partition.is_cut_off() {
            // Cut off from the metadata quorum, this broker has been or will be fenced and
            // serves nothing it led: the client asks another broker where the leader is.
            reads.push(PartitionRead::refused(ResponseError::NotLeaderOrFollower));
            continue;
        }
        if !is_replica_fetch(shard, &partition, replica_id) {
            let preferred = client_rack
                .and_then(|rack| preferred_read_replica(shard, &partition, rack, spec.offset));
            reads.push(match preferred {
                Some(replica) => partition.redirect(replica),
                None => partition.read(spec.offset, spec.max_bytes).await,
            });
            continue;
        }
        let (read, change) = partition
            .read_for_follower(
                replica_id,
                spec.offset,
                spec.max_bytes,
                crate::clock::now_ms(),
            )
            .await;
        if let Some(change) = change {
            admin::propose_isr_change(shard, spec.topic, spec.partition, partition, change);
        }
        reads.push(read);
    }
    reads
}

/// Whether a fetch with `replica_id` is served as a follower's: only for a registered, unfenced
/// broker listed in the partition's replicas other than this one. Any other id is read as a
/// consumer's fetch (up to the high watermark, moving nothing), so a client cannot move the high
/// watermark or the ISR by naming a broker that is not a live follower. Kafka without an
/// authoriser checks no more; authorising the fetch itself (CLUSTER_ACTION) comes with security.
fn is_replica_fetch(shard: &Shard, partition: &partition::Partition, replica_id: i32) -> bool {
    replica_id >= 0
        && partition.replicas.borrow().is_other_replica(replica_id)
        && shard.metadata().is_live(replica_id)
}

/// The replica in `rack` that a consumer's fetch of `partition` at `offset` is sent to, if this
/// broker leads it and another live in-sync replica is there (see
/// `Replicas::preferred_read_replica`); racks are the brokers' registrations.
fn preferred_read_replica(
    shard: &Shard,
    partition: &partition::Partition,
    rack: &str,
    offset: i64,
) -> Option<i32> {
    let snapshot = shard.metadata();
    let in_rack = |id: i32| {
        (snapshot.brokers.get(&id))
            .is_some_and(|broker| !broker.fenced && broker.rack.as_deref() == Some(rack))
    };
    partition
        .replicas
        .borrow()
        .preferred_read_replica(in_rack, offset)
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
