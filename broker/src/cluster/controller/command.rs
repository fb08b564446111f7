//! The replicated metadata commands and the one deterministic function that applies them.
//!
//! A change is proposed to the quorum as a [`MetadataCommand`]; every node applies every
//! committed command to its own [`MetadataSnapshot`] with [`apply`]. A command carries
//! everything that is not a function of the snapshot (topic ids, partition counts and
//! replication factors resolved by the proposer, the proposer's descriptor budget), so every node
//! computes the same snapshot and the same per-item results from the same log.
//!
//! **Invariant:** `apply` is a pure function of (snapshot, index, command): no clock, no random
//! numbers, no local configuration, no I/O. Validation happens here, against the state at the
//! command's log position, never only at the proposer.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;

use super::configs::{self, BrokerTarget, ConfigChange};
use super::isr::{self, ProposedIsr};
use super::reassign::{self, ReassignmentRequest};
use super::topics::{self, NewTopic, TakeBack};
use super::{Applied, ItemResults};
use crate::cluster::election::{self, ElectionError, ElectionType};
use crate::cluster::membership::{self, MembershipError};
use crate::cluster::metadata::{BrokerRegistration, MetadataSnapshot};
use crate::fd_budget::FdBudget;

/// One metadata change, as the quorum replicates it (rkyv). New variants go at the end: the
/// archived tag of an existing variant must never change, since logs and snapshots hold them.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum MetadataCommand {
    /// The first entry of a quorum: the metadata of a fresh cluster (its id) or of a migrated
    /// single-node data directory. Applied only to an empty snapshot; later ones are refused.
    Bootstrap(MetadataSnapshot),
    CreateTopics {
        topics: Vec<NewTopic>,
        /// The proposer's descriptor budget: partitions beyond it are refused.
        fd_budget: FdBudget,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        /// (topic, new partition count).
        requests: Vec<(String, i32)>,
        fd_budget: FdBudget,
    },
    AlterTopicConfigs {
        changes: Vec<(String, ConfigChange)>,
    },
    AlterBrokerConfigs {
        changes: Vec<(BrokerTarget, ConfigChange)>,
    },
    /// Hands out the next `count` producer ids as one block.
    AllocateProducerIds {
        count: i64,
    },
    /// Restores topics whose new partitions failed to open at the proposer (see
    /// `Controller::take_back_unopened`).
    TakeBack {
        topics: Vec<TakeBack>,
    },
    /// A broker's registration at its start: replaces any earlier one of its id, unfenced.
    RegisterBroker(BrokerRegistration),
    /// The active controller stopped hearing from a broker: it no longer leads anything (see
    /// `cluster::membership::fence`). Refused if the broker registered again since.
    FenceBroker {
        id: i32,
        incarnation: u64,
    },
    /// The active controller hears from a fenced broker again, its log caught up.
    UnfenceBroker {
        id: i32,
        incarnation: u64,
    },
    /// A partition's leader, at `leader_epoch`, changes its ISR (see `isr.rs`).
    ChangeIsr {
        topic: String,
        topic_id: uuid::Uuid,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    },
    /// Leader elections (ElectLeaders, or the active controller's rebalancing): one item per
    /// (topic, partition), in order (see `cluster::election`).
    ElectLeaders {
        election: ElectionType,
        partitions: Vec<(String, i32)>,
    },
    /// A broker stops (controlled shutdown): its leaderships move to other in-sync replicas and
    /// it leaves the ISRs (see `cluster::membership::shut_down`). Refused if the broker
    /// registered again since.
    ControlledShutdown {
        id: i32,
        incarnation: u64,
    },
    /// [`MetadataCommand::FenceBroker`] as decided by the active controller of Raft term
    /// `term`: applied only from a log entry of that term. A controller paused and resumed may
    /// decide from its stale clocks after a new controller was elected; its proposal, forwarded
    /// to the new leader, is appended in a later term and refused, so it never fences a healthy
    /// broker. (`FenceBroker` stays for the entries of older logs.)
    FenceBrokerInTerm {
        id: i32,
        incarnation: u64,
        term: u64,
    },
    /// Starts or cancels partition reassignments (AlterPartitionReassignments), one item per
    /// partition, in order (see `reassign.rs`).
    AlterReassignments {
        requests: Vec<ReassignmentRequest>,
    },
}

impl MetadataCommand {
    pub fn encode(&self) -> Vec<u8> {
        rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .expect("serializing to memory")
            .into_vec()
    }

    /// Decodes a command from a log entry; an entry that is not one is an error (a log written
    /// by another program), never a panic.
    pub fn decode(bytes: &[u8]) -> Result<MetadataCommand, rkyv::rancor::Error> {
        // Entries arrive at any alignment; rkyv reads archives from aligned memory.
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        rkyv::from_bytes::<MetadataCommand, rkyv::rancor::Error>(&aligned)
    }
}

/// [`apply_entry`] for a test, in term 1.
#[cfg(test)]
pub fn apply(snapshot: &mut MetadataSnapshot, index: u64, command: MetadataCommand) -> ItemResults {
    apply_entry(snapshot, index, 1, command)
}

/// Applies `command`, the entry at log `index` appended in Raft term `term`, to `snapshot`: the
/// only way the replicated metadata changes. The snapshot's version becomes `index`.
pub fn apply_entry(
    snapshot: &mut MetadataSnapshot,
    index: u64,
    term: u64,
    command: MetadataCommand,
) -> ItemResults {
    assert!(index > snapshot.version, "entry {index} applied twice");
    let results = match command {
        MetadataCommand::Bootstrap(initial) => bootstrap(snapshot, initial),
        MetadataCommand::CreateTopics { topics, fd_budget } => {
            topics::apply_create(snapshot, topics, &fd_budget)
        }
        MetadataCommand::DeleteTopics { names } => topics::apply_delete(snapshot, names),
        MetadataCommand::CreatePartitions {
            requests,
            fd_budget,
        } => topics::apply_grow(snapshot, requests, &fd_budget),
        MetadataCommand::AlterTopicConfigs { changes } => {
            configs::apply_topic_configs(snapshot, changes)
        }
        MetadataCommand::AlterBrokerConfigs { changes } => {
            configs::apply_broker_configs(snapshot, changes)
        }
        MetadataCommand::AllocateProducerIds { count } => allocate_producer_ids(snapshot, count),
        MetadataCommand::TakeBack { topics } => topics::apply_take_back(snapshot, topics),
        MetadataCommand::RegisterBroker(registration) => {
            membership::register(snapshot, registration);
            vec![(String::new(), Ok(Applied::Done))]
        }
        MetadataCommand::FenceBroker { id, incarnation } => {
            membership_result(membership::fence(snapshot, id, incarnation))
        }
        MetadataCommand::UnfenceBroker { id, incarnation } => {
            membership_result(membership::unfence(snapshot, id, incarnation))
        }
        change @ MetadataCommand::ChangeIsr { .. } => change_isr(snapshot, change),
        MetadataCommand::ElectLeaders {
            election,
            partitions,
        } => elect_leaders(snapshot, election, partitions),
        MetadataCommand::ControlledShutdown { id, incarnation } => {
            membership_result(membership::shut_down(snapshot, id, incarnation))
        }
        MetadataCommand::FenceBrokerInTerm {
            id,
            incarnation,
            term: decided_in,
        } => fence_in_term(snapshot, (id, incarnation), decided_in, term),
        MetadataCommand::AlterReassignments { requests } => {
            reassign::apply_alter(snapshot, requests)
        }
    };
    snapshot.version = index;
    results
}

/// An ISR change; the ISR that now holds every target replica completes a reassignment.
fn change_isr(snapshot: &mut MetadataSnapshot, change: MetadataCommand) -> ItemResults {
    let MetadataCommand::ChangeIsr {
        topic,
        topic_id,
        partition,
        leader,
        leader_epoch,
        isr,
    } = change
    else {
        unreachable!("called with a ChangeIsr")
    };
    let proposed = ProposedIsr {
        topic,
        topic_id,
        partition,
        leader,
        leader_epoch,
        isr,
    };
    let (topic, partition) = (proposed.topic.clone(), proposed.partition);
    let results = isr::apply_change_isr(snapshot, proposed);
    if results.iter().all(|(_, result)| result.is_ok()) {
        reassign::complete_after_isr_change(snapshot, &topic, partition);
    }
    results
}

/// Fences broker (`id`, `incarnation`) as the controller of term `decided_in` decided, from a log
/// entry of term `entry_term`: refused unless they are the same term.
fn fence_in_term(
    snapshot: &mut MetadataSnapshot,
    (id, incarnation): (i32, u64),
    decided_in: u64,
    entry_term: u64,
) -> ItemResults {
    if decided_in == entry_term {
        return membership_result(membership::fence(snapshot, id, incarnation));
    }
    let refusal = (
        ResponseError::NotController,
        format!(
            "fencing broker {id} was decided by the controller of term {decided_in}, not by \
             this entry's leader (term {entry_term})"
        ),
    );
    vec![(String::new(), Err(refusal))]
}

fn membership_result(result: Result<(), MembershipError>) -> ItemResults {
    let result = result.map(|()| Applied::Done).map_err(|error| {
        let code = match error {
            MembershipError::UnknownBroker(_) => ResponseError::BrokerIdNotRegistered,
            MembershipError::StaleIncarnation { .. } => ResponseError::StaleBrokerEpoch,
        };
        (code, error.to_string())
    });
    vec![(String::new(), result)]
}

fn elect_leaders(
    snapshot: &mut MetadataSnapshot,
    election: ElectionType,
    partitions: Vec<(String, i32)>,
) -> ItemResults {
    (partitions.into_iter())
        .map(|(topic, partition)| {
            let result = election::elect(snapshot, election, &topic, partition);
            let result = result.map(Applied::Leader).map_err(|error| {
                let code = match error {
                    ElectionError::UnknownPartition => ResponseError::UnknownTopicOrPartition,
                    ElectionError::NotNeeded(_) => ResponseError::ElectionNotNeeded,
                    ElectionError::PreferredNotAvailable(_) => {
                        ResponseError::PreferredLeaderNotAvailable
                    }
                    ElectionError::NoEligibleLeader => ResponseError::EligibleLeadersNotAvailable,
                };
                (code, format!("{topic}-{partition}: {error}"))
            });
            (topic, result)
        })
        .collect()
}

/// A fresh or migrated cluster's first state; refused once the cluster has an id.
fn bootstrap(snapshot: &mut MetadataSnapshot, initial: MetadataSnapshot) -> ItemResults {
    if !snapshot.cluster_id.is_empty() {
        let refusal = (
            ResponseError::InvalidRequest,
            format!(
                "the cluster {} is bootstrapped already",
                snapshot.cluster_id
            ),
        );
        return vec![(String::new(), Err(refusal))];
    }
    if initial.cluster_id.is_empty() {
        let refusal = (
            ResponseError::InvalidRequest,
            "a bootstrap without a cluster id".to_string(),
        );
        return vec![(String::new(), Err(refusal))];
    }
    if let Err(message) = initial.check_assignments() {
        let refusal = (
            ResponseError::InvalidRequest,
            format!("a bootstrap with invalid topics: {message}"),
        );
        return vec![(String::new(), Err(refusal))];
    }
    *snapshot = initial;
    vec![(String::new(), Ok(Applied::Done))]
}

/// Producer ids a block may hold at most: more would let one command exhaust the id space.
pub const PRODUCER_ID_BLOCK_COUNT_MAX: i64 = 1 << 20;

fn allocate_producer_ids(snapshot: &mut MetadataSnapshot, count: i64) -> ItemResults {
    let start = snapshot.producer_ids_end;
    let end = start
        .checked_add(count)
        .filter(|_| (1..=PRODUCER_ID_BLOCK_COUNT_MAX).contains(&count));
    let result = match end {
        Some(end) => {
            snapshot.producer_ids_end = end;
            Ok(Applied::ProducerIds(start))
        }
        None => Err((
            ResponseError::InvalidRequest,
            format!("a block of {count} producer ids after {start}"),
        )),
    };
    vec![(String::new(), result)]
}

pub use super::snapshot_codec::{decode_snapshot, encode_snapshot};

/// An empty snapshot: what a node's state machine holds before the first entry.
pub fn empty_snapshot() -> MetadataSnapshot {
    MetadataSnapshot {
        version: 0,
        cluster_id: String::new(),
        topics: BTreeMap::new(),
        brokers: BTreeMap::new(),
        broker_configs: BTreeMap::new(),
        broker_default_configs: BTreeMap::new(),
        producer_ids_end: 0,
    }
}
