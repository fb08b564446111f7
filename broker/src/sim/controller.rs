//! The simulated controller: the metadata quorum reduced to one ordered list of committed
//! commands (consensus is raft-rs's job) of one term, each applied with the real
//! `command::apply_entry`; the
//! active controller's fencing of silent brokers and unfencing of heard ones; and now and then
//! a preferred-leader election.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::network::{Message, Network, CONTROLLER};
use super::{Rng, Trace};
use crate::cluster::controller::command::{self, MetadataCommand};
use crate::cluster::controller::Refusal;
use crate::cluster::election::ElectionType;
use crate::cluster::metadata::TopicMeta;
use crate::cluster::metadata::{BrokerRegistration, MetadataSnapshot, PartitionAssignment};

pub const TOPIC: &str = "t";
pub const TOPIC_ID: u128 = 0x51;
pub const BROKERS: [i32; 3] = [1, 2, 3];
pub const MIN_INSYNC_REPLICAS: i32 = 2;
/// A broker not heard from for this long is fenced (`--broker-session-timeout-ms`, scaled down).
pub const SESSION_TIMEOUT_MS: i64 = 300;
/// The metadata quorum's one Raft term: one controller decides and commits everything.
const TERM: u64 = 1;

pub struct Controller {
    pub snapshot: MetadataSnapshot,
    /// The committed commands, in log order (their index is their position + 1).
    pub log: Vec<MetadataCommand>,
    /// When each broker's current incarnation was last heard from.
    last_heard_ms: BTreeMap<i32, i64>,
}

/// The first metadata of the cluster: the topic, its one partition led by broker 1 at epoch 0
/// with every replica in sync, and the three brokers registered.
fn bootstrap_snapshot() -> MetadataSnapshot {
    let configs = BTreeMap::from([(
        "min.insync.replicas".to_string(),
        MIN_INSYNC_REPLICAS.to_string(),
    )]);
    let assignment = PartitionAssignment::new(BROKERS.to_vec());
    let topic = TopicMeta::new(
        TOPIC.into(),
        uuid::Uuid::from_u128(TOPIC_ID),
        vec![assignment],
        configs,
    );
    let brokers = BROKERS.iter().map(|id| (*id, registration(*id, 1)));
    MetadataSnapshot {
        version: 0,
        cluster_id: "sim".into(),
        topics: BTreeMap::from([(TOPIC.to_string(), topic)]),
        brokers: brokers.collect(),
        broker_configs: BTreeMap::new(),
        broker_default_configs: BTreeMap::new(),
        producer_ids_end: 0,
    }
}

pub fn registration(id: i32, incarnation: u64) -> BrokerRegistration {
    BrokerRegistration {
        id,
        incarnation,
        host: format!("broker-{id}"),
        port: 9092,
        rack: None,
        fenced: false,
        shutting_down: false,
    }
}

impl Controller {
    pub fn new() -> Controller {
        let mut controller = Controller {
            snapshot: command::empty_snapshot(),
            log: Vec::new(),
            last_heard_ms: BTreeMap::new(),
        };
        let results = controller.commit(MetadataCommand::Bootstrap(bootstrap_snapshot()));
        assert!(results.is_ok(), "bootstrap: {results:?}");
        controller
    }

    pub fn assignment(&self) -> &PartitionAssignment {
        (self.snapshot.assignment(TOPIC, 0)).expect("the simulated partition")
    }

    /// Appends `command` to the log and applies it; the first item's result.
    fn commit(&mut self, command: MetadataCommand) -> Result<(), Refusal> {
        self.log.push(command.clone());
        let index = self.log.len() as u64;
        let results = command::apply_entry(&mut self.snapshot, index, TERM, command);
        (results.into_iter().next()).map_or(Ok(()), |(_, result)| result.map(|_| ()))
    }

    /// Sends the current snapshot to every broker (a broker keeps the newest it receives).
    pub fn publish(&self, network: &mut Network, rng: &mut Rng, now_ms: i64) {
        let snapshot = Arc::new(self.snapshot.clone());
        for id in BROKERS {
            let message = Message::Metadata(snapshot.clone());
            network.send(rng, now_ms, CONTROLLER, id, message);
        }
    }

    /// Handles one message from broker `from`; returns whether the metadata changed.
    pub fn receive(
        &mut self,
        from: i32,
        message: Message,
        network: &mut Network,
        rng: &mut Rng,
        now_ms: i64,
        trace: &mut Trace,
    ) -> bool {
        match message {
            Message::Heartbeat { incarnation } => {
                let registered = self.snapshot.brokers.get(&from);
                let Some(broker) = registered.filter(|b| b.incarnation == incarnation) else {
                    return false;
                };
                self.last_heard_ms.insert(from, now_ms);
                if !broker.fenced {
                    return false;
                }
                let result = self.commit(MetadataCommand::UnfenceBroker {
                    id: from,
                    incarnation,
                });
                trace.line(
                    now_ms,
                    format_args!("controller: unfence {from}: {result:?}"),
                );
                true
            }
            Message::Register(registration) => {
                let known = self.snapshot.brokers.get(&from);
                if known.is_some_and(|b| b.incarnation == registration.incarnation) {
                    return false;
                }
                self.last_heard_ms.insert(from, now_ms);
                let incarnation = registration.incarnation;
                let result = self.commit(MetadataCommand::RegisterBroker(registration));
                let line = format_args!("controller: register {from} #{incarnation}: {result:?}");
                trace.line(now_ms, line);
                true
            }
            Message::ProposeIsr {
                incarnation,
                change,
            } => {
                let topic_id = uuid::Uuid::from_u128(TOPIC_ID);
                let result = self.commit(MetadataCommand::ChangeIsr {
                    topic: TOPIC.into(),
                    topic_id,
                    partition: 0,
                    leader: from,
                    leader_epoch: change.leader_epoch,
                    isr: change.isr.clone(),
                });
                let line = format_args!("controller: ISR {:?} from {from}: {result:?}", change.isr);
                trace.line(now_ms, line);
                let reply = Message::IsrResult {
                    incarnation,
                    change,
                    result: result.clone(),
                    snapshot: Arc::new(self.snapshot.clone()),
                };
                network.send(rng, now_ms, CONTROLLER, from, reply);
                result.is_ok()
            }
            _ => false,
        }
    }

    /// The active controller's periodic work: fences brokers silent for longer than the
    /// session timeout and, now and then, runs a preferred-leader election.
    pub fn tick(&mut self, rng: &mut Rng, now_ms: i64, trace: &mut Trace) -> bool {
        let mut changed = false;
        let silent: Vec<(i32, u64)> = (self.snapshot.live_brokers())
            .filter(|b| {
                now_ms - self.last_heard_ms.get(&b.id).copied().unwrap_or(0) > SESSION_TIMEOUT_MS
            })
            .map(|b| (b.id, b.incarnation))
            .collect();
        for (id, incarnation) in silent {
            let result = self.commit(MetadataCommand::FenceBrokerInTerm {
                id,
                incarnation,
                term: TERM,
            });
            trace.line(now_ms, format_args!("controller: fence {id}: {result:?}"));
            changed = true;
        }
        if rng.chance(10) {
            let result = self.commit(MetadataCommand::ElectLeaders {
                election: ElectionType::Preferred,
                partitions: vec![(TOPIC.into(), 0)],
            });
            if result.is_ok() {
                trace.line(now_ms, format_args!("controller: preferred election"));
                changed = true;
            }
        }
        changed
    }
}

/// The position of broker `id` in [`BROKERS`].
pub fn index_of(id: i32) -> usize {
    BROKERS
        .iter()
        .position(|b| *b == id)
        .expect("a simulated broker")
}
