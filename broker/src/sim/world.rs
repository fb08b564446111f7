//! The simulated cluster and its scheduler: each step advances the virtual clock and does one
//! thing the seed chooses: deliver a due message, run a broker's or the controller's periodic
//! work, produce, consume, crash or restart a broker, cut or heal links.

use std::path::PathBuf;

use super::broker::SimBroker;
use super::controller::{index_of, Controller, BROKERS, MIN_INSYNC_REPLICAS};
use super::model::Model;
use super::network::{Network, CONTROLLER};
use super::{Rng, Trace};
use crate::partition::ACKS_ALL;

/// An acks=all append waiting for the high watermark.
struct Pending {
    broker: usize,
    incarnation: u64,
    offset: i64,
    leader_epoch: i32,
    id: i64,
    deadline_ms: i64,
}

/// The Produce timeout of the simulated producer.
const PRODUCE_TIMEOUT_MS: i64 = 500;
/// Brokers down at once at most (with process crashes any number keeps the guarantee; two
/// keeps runs making progress).
const DOWN_MAX: usize = 2;

pub struct World {
    pub rng: Rng,
    pub now_ms: i64,
    pub brokers: Vec<SimBroker>,
    pub controller: Controller,
    pub network: Network,
    pub trace: Trace,
    pub model: Model,
    /// Power losses (not only process crashes) are simulated.
    power_loss: bool,
    next_id: i64,
    pending: Vec<Pending>,
    consumer_offset: i64,
    dir: PathBuf,
}

impl World {
    pub async fn new(seed: u64, dir: PathBuf, print: bool, power_loss: bool) -> World {
        let mut brokers = Vec::new();
        for id in BROKERS {
            brokers.push(SimBroker::start(id, dir.join(format!("broker-{id}"))).await);
        }
        let mut world = World {
            rng: Rng::new(seed),
            now_ms: 0,
            brokers,
            controller: Controller::new(),
            network: Network::default(),
            trace: Trace::new(print),
            model: Model::default(),
            power_loss,
            next_id: 1,
            pending: Vec::new(),
            consumer_offset: 0,
            dir,
        };
        world
            .controller
            .publish(&mut world.network, &mut world.rng, 0);
        world
    }

    pub fn power_loss_simulated(&self) -> bool {
        self.power_loss
    }

    pub fn trace_text(&self) -> String {
        self.trace.dump()
    }

    /// One step of the run.
    pub async fn step(&mut self) {
        self.now_ms += self.rng.range(1, 6) as i64;
        match self.rng.range(0, 100) {
            0..=44 => self.deliver().await,
            45..=64 => self.tick_broker().await,
            65..=69 => self.tick_controller(),
            70..=81 => self.produce().await,
            82..=88 => self.consume().await,
            89..=90 => self.crash().await,
            91..=93 => self.restart().await,
            94..=95 => self.cut(),
            _ => self.heal(),
        }
        self.resolve_pending();
    }

    /// A step with no fault: deliveries and periodic work only.
    pub async fn quiet_step(&mut self) {
        self.now_ms += self.rng.range(1, 6) as i64;
        match self.rng.range(0, 10) {
            0..=5 => self.deliver().await,
            6..=8 => self.tick_broker().await,
            _ => self.tick_controller(),
        }
        self.resolve_pending();
    }

    /// Delivers every message that is due, in a random order (so messages overtake each other).
    async fn deliver(&mut self) {
        let mut delivered = false;
        while let Some(envelope) = self.network.deliver(&mut self.rng, self.now_ms) {
            delivered = true;
            self.deliver_one(envelope).await;
        }
        if !delivered {
            self.tick_broker().await;
        }
    }

    async fn deliver_one(&mut self, envelope: super::network::Envelope) {
        let (from, now_ms) = (envelope.from, self.now_ms);
        if envelope.to == CONTROLLER {
            let changed = self.controller.receive(
                from,
                envelope.message,
                &mut self.network,
                &mut self.rng,
                now_ms,
                &mut self.trace,
            );
            if changed {
                (self.controller).publish(&mut self.network, &mut self.rng, now_ms);
            }
            return;
        }
        let broker = &mut self.brokers[index_of(envelope.to)];
        let message = envelope.message;
        (broker.receive(
            from,
            message,
            &mut self.network,
            &mut self.rng,
            now_ms,
            &mut self.trace,
        ))
        .await;
    }

    async fn tick_broker(&mut self) {
        let index = self.rng.range(0, BROKERS.len() as u64) as usize;
        let now_ms = self.now_ms;
        (self.brokers[index].tick(&mut self.network, &mut self.rng, now_ms)).await;
    }

    fn tick_controller(&mut self) {
        let now_ms = self.now_ms;
        self.controller.tick(&mut self.rng, now_ms, &mut self.trace);
        (self.controller).publish(&mut self.network, &mut self.rng, now_ms);
    }

    /// Brokers that are up and lead the partition in their own view.
    fn believed_leaders(&self) -> Vec<usize> {
        (0..self.brokers.len())
            .filter(|&i| {
                let partition = self.brokers[i].partition.as_ref();
                partition.is_some_and(|p| p.replicas.borrow().is_leader())
            })
            .collect()
    }

    async fn produce(&mut self) {
        let leaders = self.believed_leaders();
        if leaders.is_empty() {
            return;
        }
        let index = leaders[self.rng.range(0, leaders.len() as u64) as usize];
        let acks = if self.rng.chance(70) { ACKS_ALL } else { 1 };
        let id = self.next_id;
        self.next_id += 1;
        let broker = &mut self.brokers[index];
        let incarnation = broker.incarnation;
        let Some((result, offset, leader_epoch)) = broker.produce(id, acks).await else {
            return;
        };
        let what = format_args!(
            "produce {id} acks={acks} to {}: {result:?} at {offset} (epoch {leader_epoch})",
            BROKERS[index]
        );
        self.trace.line(self.now_ms, what);
        match result {
            Ok(()) if acks == ACKS_ALL => self.model.acknowledge(offset, id),
            Err(kafka_protocol::error::ResponseError::RequestTimedOut) if acks == ACKS_ALL => {
                self.pending.push(Pending {
                    broker: index,
                    incarnation,
                    offset,
                    leader_epoch,
                    id,
                    deadline_ms: self.now_ms + PRODUCE_TIMEOUT_MS,
                });
            }
            _ => {}
        }
    }

    /// Acknowledges the acks=all appends whose high watermark passed (the real rule,
    /// `Partition::replication_outcome`), and gives up on the others at their deadline.
    fn resolve_pending(&mut self) {
        let now_ms = self.now_ms;
        let mut acknowledged = Vec::new();
        self.pending.retain(|pending| {
            let broker = &self.brokers[pending.broker];
            let Some(partition) = broker.partition.as_ref() else {
                return false;
            };
            if broker.incarnation != pending.incarnation {
                return false;
            }
            let (offset, epoch) = (pending.offset, pending.leader_epoch);
            match partition.replication_outcome(offset, epoch, MIN_INSYNC_REPLICAS) {
                Some(Ok(())) => {
                    acknowledged.push((pending.offset, pending.id));
                    false
                }
                Some(Err(_)) => false,
                None => now_ms < pending.deadline_ms,
            }
        });
        for (offset, id) in acknowledged {
            self.trace
                .line(now_ms, format_args!("acknowledged {id} at {offset}"));
            self.model.acknowledge(offset, id);
        }
    }

    async fn consume(&mut self) {
        let leaders = self.believed_leaders();
        if leaders.is_empty() {
            return;
        }
        let index = leaders[self.rng.range(0, leaders.len() as u64) as usize];
        let partition = self.brokers[index].partition.clone().expect("up");
        let read = partition.read(self.consumer_offset, 64 << 10).await;
        if read.error.is_some() {
            return;
        }
        let mut rest = &read.records[..];
        while !rest.is_empty() {
            let header = record_batch::BatchHeader::parse(rest).expect("whole batches");
            let (offset, id) = (header.base_offset, header.max_timestamp);
            let line = format_args!("consume {id} at {offset} from {}", BROKERS[index]);
            self.trace.line(self.now_ms, line);
            self.model.consume(offset, id);
            self.consumer_offset = header.next_offset();
            rest = &rest[header.total_bytes()..];
        }
    }

    async fn crash(&mut self) {
        let up: Vec<usize> = (0..self.brokers.len())
            .filter(|&i| self.brokers[i].is_up())
            .collect();
        if self.brokers.len() - up.len() >= DOWN_MAX || up.is_empty() {
            return;
        }
        let index = up[self.rng.range(0, up.len() as u64) as usize];
        let power_loss = self.power_loss && self.rng.chance(30);
        let kind = if power_loss { "power loss" } else { "crash" };
        self.trace.line(
            self.now_ms,
            format_args!("{kind} of broker {}", BROKERS[index]),
        );
        self.network.forget(BROKERS[index]);
        self.pending.retain(|p| p.broker != index);
        self.brokers[index].crash(power_loss, &mut self.rng).await;
        self.model.forget_broker(index);
    }

    async fn restart(&mut self) {
        let down: Vec<usize> = (0..self.brokers.len())
            .filter(|&i| !self.brokers[i].is_up())
            .collect();
        if down.is_empty() {
            return;
        }
        let index = down[self.rng.range(0, down.len() as u64) as usize];
        self.trace.line(
            self.now_ms,
            format_args!("restart of broker {}", BROKERS[index]),
        );
        self.brokers[index].restart().await;
    }

    /// Cuts one broker off: from everyone, from the other brokers only, or from the controller
    /// only.
    fn cut(&mut self) {
        let node = BROKERS[self.rng.range(0, BROKERS.len() as u64) as usize];
        let others: Vec<i32> = match self.rng.range(0, 3) {
            0 => [CONTROLLER].into_iter().chain(BROKERS).collect(),
            1 => BROKERS.to_vec(),
            _ => vec![CONTROLLER],
        };
        self.network.isolate(node, others.into_iter());
        let cut = self.network.cut_links().clone();
        self.trace
            .line(self.now_ms, format_args!("cut {node}: links down {cut:?}"));
    }

    fn heal(&mut self) {
        if !self.network.cut_links().is_empty() {
            self.trace.line(self.now_ms, format_args!("heal"));
        }
        self.network.heal();
    }

    /// The end of a run: links healed and every broker up, for the quiet steps.
    pub async fn settle(&mut self) {
        self.heal();
        for index in 0..self.brokers.len() {
            if !self.brokers[index].is_up() {
                self.brokers[index].restart().await;
            }
        }
    }

    pub async fn close(mut self) {
        for broker in &mut self.brokers {
            broker.partition = None;
        }
        glommio::timer::sleep(std::time::Duration::from_micros(10)).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
