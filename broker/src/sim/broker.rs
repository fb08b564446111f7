//! One simulated broker: its real `Partition` (log on real files, replica table), the metadata it
//! has applied, and its fetcher for the partition when it follows, as a state machine driven by
//! the world's steps instead of a glommio task on a TCP connection.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use storage::fault::{CrashOptions, FaultIo};

use super::controller::{registration, SESSION_TIMEOUT_MS, TOPIC, TOPIC_ID};
use super::network::{Message, Network, CONTROLLER};
use super::{Rng, Trace};
use crate::cluster::metadata::{MetadataSnapshot, NO_LEADER};
use crate::cluster::topic_config::TopicConfig;
use crate::partition::{IsrChange, OpenOptions, Partition, PartitionRead, Replication};
use crate::replication::fetcher::{after_error, apply_records, Fetched};
use crate::replication::{truncation, wire, Followed};

/// `--replica-lag-time-max-ms`, scaled down like the session timeout.
pub const LAG_TIME_MAX_MS: i64 = 200;
/// A request unanswered for this long is given up (the connection's timeout) and sent again.
pub const REQUEST_TIMEOUT_MS: i64 = 150;
/// A partition the leader refused waits this long (`PARTITION_RETRY_BACKOFF`, scaled).
pub const RETRY_BACKOFF_MS: i64 = 50;
/// An ISR change whose outcome is open is proposed again after this long.
const ISR_RETRY_MS: i64 = 100;
/// A follower's fetch reads at most this much.
const FETCH_BYTES_MAX: usize = 64 << 10;

/// The fetcher's view of the followed partition.
pub struct Follow {
    pub followed: Followed,
    /// Where the next fetch starts; None until the "before fetching" step is done.
    pub fetch_offset: Option<i64>,
    /// When the request in flight (OffsetForLeaderEpoch or Fetch) was sent.
    waiting_since_ms: Option<i64>,
    retry_at_ms: i64,
    /// The leader answered OFFSET_OUT_OF_RANGE: once truncation is done, the leader's log
    /// start is asked before fetching (`truncation::start_at_leader_log_start`).
    out_of_range: bool,
    /// Truncation is done and the leader's log start is to be asked.
    truncated: bool,
}

impl Follow {
    /// The "before fetching" step's truncation is done: fetching starts at the log end, or the
    /// leader's log start is asked first after OFFSET_OUT_OF_RANGE.
    fn truncation_done(&mut self, log_end_offset: i64) {
        match self.out_of_range {
            true => self.truncated = true,
            false => self.fetch_offset = Some(log_end_offset),
        }
    }

    fn restart(&mut self, out_of_range: bool, retry_at_ms: i64) {
        self.fetch_offset = None;
        self.truncated = false;
        self.out_of_range |= out_of_range;
        self.retry_at_ms = retry_at_ms;
    }
}

pub struct SimBroker {
    pub id: i32,
    /// Grows at every start; messages carry it so that a restarted broker ignores answers
    /// meant for its earlier life.
    pub incarnation: u64,
    /// None while the broker is down.
    pub partition: Option<Rc<Partition>>,
    io: FaultIo,
    data_dir: PathBuf,
    pub view: Option<Arc<MetadataSnapshot>>,
    pub follow: Option<Follow>,
    isr_in_flight: Option<(IsrChange, i64)>,
    last_shrink_ms: i64,
    /// Bumped whenever the log may have changed (for the checker's cache of its contents).
    pub mutations: u64,
}

impl SimBroker {
    pub async fn start(id: i32, data_dir: PathBuf) -> SimBroker {
        let mut broker = SimBroker {
            id,
            incarnation: 1,
            partition: None,
            io: FaultIo::new(),
            data_dir,
            view: None,
            follow: None,
            isr_in_flight: None,
            last_shrink_ms: 0,
            mutations: 0,
        };
        broker.open(true).await;
        broker
    }

    async fn open(&mut self, created: bool) {
        let options = OpenOptions {
            storage: storage::StorageContext::default(),
            default_segment_bytes: 16 << 10,
            snapshot_interval_bytes: 1 << 30,
            power_loss_io: Some(self.io.clone()),
            node_id: self.id,
            cut_off: Rc::new(Cell::new(false)),
        };
        let config = TopicConfig::parse(&std::collections::BTreeMap::new());
        let dir = self.data_dir.join(format!("{TOPIC}-0"));
        let id = uuid::Uuid::from_u128(TOPIC_ID);
        let partition = Partition::open(dir, id, created, &config, &options).await;
        self.partition = Some(Rc::new(partition.expect("the simulated partition opens")));
        self.mutations += 1;
    }

    /// A crash: memory is gone; with `power_loss`, so is what was not fdatasync'd (a torn tail
    /// of whole blocks may survive).
    pub async fn crash(&mut self, power_loss: bool, rng: &mut Rng) {
        let partition = self.partition.take().expect("a live broker crashes");
        drop(partition);
        // Lets the log's own tasks (an epoch assignment) finish before its files are judged.
        glommio::timer::sleep(Duration::from_micros(10)).await;
        if power_loss {
            let options = CrashOptions {
                torn_blocks_kept: rng.range(0, 3),
                unsynced_files_lost: rng.chance(50),
            };
            self.io.crash(options).expect("the simulated power loss");
        }
        self.io = FaultIo::new();
        self.view = None;
        self.follow = None;
        self.isr_in_flight = None;
        self.mutations += 1;
    }

    pub async fn restart(&mut self) {
        self.incarnation += 1;
        self.open(false).await;
    }

    pub fn is_up(&self) -> bool {
        self.partition.is_some()
    }

    /// Installs a newer snapshot, as `Shard::apply_metadata` does: the partition's assignment
    /// (role, epoch, ISR), a new leader's epoch entry, and the fetcher's followed partition
    /// (started again when its leader or epoch changed).
    pub fn apply_view(&mut self, snapshot: Arc<MetadataSnapshot>, now_ms: i64) -> bool {
        let Some(partition) = self.partition.clone() else {
            return false;
        };
        if (self.view.as_ref()).is_some_and(|view| view.version >= snapshot.version) {
            return false;
        }
        let assignment = (snapshot.assignment(TOPIC, 0))
            .expect("the partition")
            .clone();
        self.view = Some(snapshot);
        partition.set_assignment(&assignment, now_ms);
        if assignment.leader == self.id {
            partition.assign_leader_epoch(assignment.leader_epoch);
            self.follow = None;
        } else if assignment.leader == NO_LEADER {
            self.follow = None;
        } else {
            let followed = Followed {
                topic: TOPIC.into(),
                partition: 0,
                topic_id: uuid::Uuid::from_u128(TOPIC_ID),
                leader: assignment.leader,
                leader_epoch: assignment.leader_epoch,
            };
            if (self.follow.as_ref()).is_none_or(|follow| follow.followed != followed) {
                self.follow = Some(Follow {
                    followed,
                    fetch_offset: None,
                    waiting_since_ms: None,
                    retry_at_ms: 0,
                    out_of_range: false,
                    truncated: false,
                });
            }
        }
        true
    }

    /// Periodic work: heartbeat (or registration after a restart), the leader's ISR shrink
    /// check and retried ISR proposal, and the fetcher's next request.
    pub async fn tick(&mut self, network: &mut Network, rng: &mut Rng, now_ms: i64) {
        let Some(partition) = self.partition.clone() else {
            return;
        };
        let registered = (self.view.as_ref())
            .and_then(|view| view.brokers.get(&self.id))
            .is_some_and(|b| b.incarnation == self.incarnation);
        let message = match registered {
            true => Message::Heartbeat {
                incarnation: self.incarnation,
            },
            false => Message::Register(registration(self.id, self.incarnation)),
        };
        network.send(rng, now_ms, self.id, CONTROLLER, message);
        self.isr_work(&partition, network, rng, now_ms);
        self.fetcher_step(&partition, network, rng, now_ms).await;
    }

    fn isr_work(
        &mut self,
        partition: &Partition,
        network: &mut Network,
        rng: &mut Rng,
        now_ms: i64,
    ) {
        if let Some((change, sent_ms)) = self.isr_in_flight.clone() {
            if now_ms - sent_ms < ISR_RETRY_MS {
                return;
            }
            // No answer: the outcome is open, as after a controller's timeout.
            let open = Err((ResponseError::RequestTimedOut, String::new()));
            self.isr_in_flight = None;
            if partition
                .replicas
                .borrow_mut()
                .finish_change(&change, &open)
            {
                self.propose(change, network, rng, now_ms);
            }
            return;
        }
        if now_ms - self.last_shrink_ms < LAG_TIME_MAX_MS / 2 {
            return;
        }
        self.last_shrink_ms = now_ms;
        let change = {
            let mut replicas = partition.replicas.borrow_mut();
            let log_end_offset = partition.log.log_end_offset();
            (replicas.shrink(log_end_offset, now_ms, LAG_TIME_MAX_MS))
                .map(|isr| replicas.start_change(isr))
        };
        if let Some(change) = change {
            self.propose(change, network, rng, now_ms);
        }
    }

    fn propose(&mut self, change: IsrChange, network: &mut Network, rng: &mut Rng, now_ms: i64) {
        self.isr_in_flight = Some((change.clone(), now_ms));
        let message = Message::ProposeIsr {
            incarnation: self.incarnation,
            change,
        };
        network.send(rng, now_ms, self.id, CONTROLLER, message);
    }

    /// The fetcher's next request: the "before fetching" step's question, or a Fetch.
    async fn fetcher_step(
        &mut self,
        partition: &Partition,
        network: &mut Network,
        rng: &mut Rng,
        now_ms: i64,
    ) {
        let incarnation = self.incarnation;
        let Some(follow) = self.follow.as_mut() else {
            return;
        };
        let waiting = (follow.waiting_since_ms).is_some_and(|t| now_ms - t < REQUEST_TIMEOUT_MS);
        if waiting || now_ms < follow.retry_at_ms {
            return;
        }
        follow.waiting_since_ms = None;
        let followed = follow.followed.clone();
        let message = match follow.fetch_offset {
            Some(offset) => Message::Fetch {
                incarnation,
                followed: followed.clone(),
                offset,
            },
            None if follow.truncated => Message::LogStartAsk {
                incarnation,
                followed: followed.clone(),
            },
            None => match partition.log.latest_epoch() {
                Some(asked) => Message::EpochAsk {
                    incarnation,
                    followed: followed.clone(),
                    asked,
                },
                None => {
                    // No epoch stored: nothing can have diverged below the high watermark.
                    let high_watermark = partition.log.high_watermark();
                    self.mutations += 1;
                    let follow = self.follow.as_mut().expect("followed");
                    match truncation::truncate(partition, high_watermark).await {
                        Ok(()) => follow.truncation_done(partition.log.log_end_offset()),
                        Err(_) => follow.retry_at_ms = now_ms + RETRY_BACKOFF_MS,
                    }
                    return;
                }
            },
        };
        self.follow.as_mut().expect("followed").waiting_since_ms = Some(now_ms);
        network.send(rng, now_ms, self.id, followed.leader, message);
    }

    /// Handles a message from `from` (a broker). It is long because it has one arm per kind
    /// of message, each a few lines, which reads better than a dispatch table.
    pub async fn receive(
        &mut self,
        from: i32,
        message: Message,
        network: &mut Network,
        rng: &mut Rng,
        now_ms: i64,
        trace: &mut Trace,
    ) {
        let Some(partition) = self.partition.clone() else {
            return;
        };
        match message {
            Message::Fetch {
                incarnation,
                followed,
                offset,
            } => {
                let reply =
                    self.serve_fetch(&partition, from, &followed, offset, now_ms, network, rng);
                let read = reply.await;
                let message = Message::FetchReply {
                    incarnation,
                    followed,
                    sent_offset: offset,
                    error: read.error,
                    records: read.records,
                    high_watermark: read.high_watermark,
                    log_start_offset: read.log_start_offset,
                };
                network.send(rng, now_ms, self.id, from, message);
            }
            Message::EpochAsk {
                incarnation,
                followed,
                asked,
            } => {
                let answer = answer_epoch(&partition, followed.leader_epoch, asked);
                let message = Message::EpochAnswer {
                    incarnation,
                    followed,
                    asked,
                    answer,
                };
                network.send(rng, now_ms, self.id, from, message);
            }
            Message::LogStartAsk {
                incarnation,
                followed,
            } => {
                let answer = answer_log_start(&partition, followed.leader_epoch);
                let message = Message::LogStartAnswer {
                    incarnation,
                    followed,
                    answer,
                };
                network.send(rng, now_ms, self.id, from, message);
            }
            Message::LogStartAnswer {
                incarnation,
                followed,
                answer,
            } if incarnation == self.incarnation => {
                self.on_log_start_answer(&partition, &followed, answer, now_ms, trace)
                    .await;
            }
            Message::EpochAnswer {
                incarnation,
                followed,
                asked,
                answer,
            } if incarnation == self.incarnation => {
                self.on_epoch_answer(&partition, &followed, asked, answer, now_ms, trace)
                    .await;
            }
            Message::FetchReply {
                incarnation,
                followed,
                sent_offset,
                error,
                records,
                high_watermark,
                log_start_offset,
            } if incarnation == self.incarnation => {
                let reply = (error, records, (high_watermark, log_start_offset));
                self.on_fetch_reply(&partition, &followed, sent_offset, reply, now_ms, trace)
                    .await;
            }
            Message::IsrResult {
                incarnation,
                change,
                result,
                snapshot,
            } if incarnation == self.incarnation => {
                self.apply_view(snapshot, now_ms);
                let in_flight = self.isr_in_flight.as_ref().map(|(c, _)| c);
                if in_flight == Some(&change) {
                    self.isr_in_flight = None;
                    if partition
                        .replicas
                        .borrow_mut()
                        .finish_change(&change, &result)
                    {
                        self.isr_in_flight = Some((change, now_ms));
                    }
                }
            }
            Message::Metadata(snapshot) if self.apply_view(snapshot.clone(), now_ms) => {
                let assignment = self.view.as_ref().and_then(|v| v.assignment(TOPIC, 0));
                let line = format_args!("broker {}: applies {assignment:?}", self.id);
                trace.line(now_ms, line);
            }
            _ => {}
        }
    }

    /// The leader's side of a follower's Fetch, as `shard::dispatch` serves it: the epoch
    /// check, then `read_for_follower`, proposing the follower's return to the ISR if due.
    #[allow(clippy::too_many_arguments)]
    async fn serve_fetch(
        &mut self,
        partition: &Partition,
        follower: i32,
        followed: &Followed,
        offset: i64,
        now_ms: i64,
        network: &mut Network,
        rng: &mut Rng,
    ) -> PartitionRead {
        if let Err(error) = partition.check_leader_epoch(followed.leader_epoch) {
            return PartitionRead::refused(error);
        }
        let live = (self.view.as_ref()).is_some_and(|view| view.is_live(follower));
        if !(live && partition.replicas.borrow().is_other_replica(follower)) {
            // Served as a consumer's fetch, as `dispatch::is_replica_fetch` decides.
            return partition.read(offset, FETCH_BYTES_MAX).await;
        }
        let (read, change) = partition
            .read_for_follower(follower, offset, FETCH_BYTES_MAX, now_ms)
            .await;
        if let Some(change) = change {
            if self.isr_in_flight.is_none() {
                self.propose(change, network, rng, now_ms);
            }
        }
        read
    }

    async fn on_epoch_answer(
        &mut self,
        partition: &Partition,
        followed: &Followed,
        asked: i32,
        answer: Result<(i32, i64), ResponseError>,
        now_ms: i64,
        trace: &mut Trace,
    ) {
        let Some(follow) = self.follow.as_mut() else {
            return;
        };
        if &follow.followed != followed || follow.fetch_offset.is_some() {
            return;
        }
        follow.waiting_since_ms = None;
        let answer = match answer {
            Ok(answer) => answer,
            Err(_) => {
                follow.retry_at_ms = now_ms + RETRY_BACKOFF_MS;
                return;
            }
        };
        let cut = truncation::cut_for_answer(&partition.log, answer);
        let log_end_offset = partition.log.log_end_offset();
        self.mutations += 1;
        let truncated = truncation::truncate(partition, cut.offset).await;
        let follow = self.follow.as_mut().expect("followed");
        if truncated.is_err() {
            follow.retry_at_ms = now_ms + RETRY_BACKOFF_MS;
            return;
        }
        if cut.offset < log_end_offset {
            let id = self.id;
            let line = format_args!(
                "broker {id}: answer {answer:?} to {asked}: cut at {}",
                cut.offset
            );
            trace.line(now_ms, line);
        }
        if truncation::ends_after_cut(&partition.log, asked, &cut) {
            follow.truncation_done(partition.log.log_end_offset());
        }
    }

    /// The leader's log start after OFFSET_OUT_OF_RANGE: the log restarts there if it passed
    /// the log end, and fetching starts.
    async fn on_log_start_answer(
        &mut self,
        partition: &Partition,
        followed: &Followed,
        answer: Result<i64, ResponseError>,
        now_ms: i64,
        trace: &mut Trace,
    ) {
        let Some(follow) = self.follow.as_mut() else {
            return;
        };
        if &follow.followed != followed || !follow.truncated {
            return;
        }
        follow.waiting_since_ms = None;
        let Ok(leader_log_start) = answer else {
            follow.retry_at_ms = now_ms + RETRY_BACKOFF_MS;
            return;
        };
        let log_end_offset = partition.log.log_end_offset();
        self.mutations += 1;
        let started = truncation::start_at_leader_log_start(partition, leader_log_start).await;
        let line = format_args!(
            "broker {}: leader's log start {leader_log_start}, log end {log_end_offset}: {started:?}",
            self.id
        );
        trace.line(now_ms, line);
        let follow = self.follow.as_mut().expect("followed");
        match started {
            Ok(offset) => {
                follow.fetch_offset = Some(offset);
                (follow.out_of_range, follow.truncated) = (false, false);
            }
            Err(_) => follow.retry_at_ms = now_ms + RETRY_BACKOFF_MS,
        }
    }

    async fn on_fetch_reply(
        &mut self,
        partition: &Partition,
        followed: &Followed,
        sent_offset: i64,
        (error, records, leader): (Option<ResponseError>, Bytes, (i64, i64)),
        now_ms: i64,
        trace: &mut Trace,
    ) {
        let Some(follow) = self.follow.as_mut() else {
            return;
        };
        if &follow.followed != followed || follow.fetch_offset != Some(sent_offset) {
            return;
        }
        follow.waiting_since_ms = None;
        let outcome = match error {
            Some(error) => after_error(error),
            None => {
                let view = self.view.clone();
                let current = || {
                    view.as_ref()
                        .is_some_and(|view| followed.is_current_in(view))
                };
                let records = wire::whole_batches(records);
                self.mutations += 1;
                apply_records(partition, records, leader, current).await
            }
        };
        if !matches!(outcome, Fetched::Appended { .. } | Fetched::Nothing) {
            let what = format_args!(
                "broker {}: fetch at {sent_offset}: {error:?} {outcome:?}",
                self.id
            );
            trace.line(now_ms, what);
        }
        let follow = self.follow.as_mut().expect("followed");
        match outcome {
            Fetched::Appended { log_end } | Fetched::StartedAt { log_end } => {
                follow.fetch_offset = Some(log_end)
            }
            Fetched::Restart => follow.restart(false, now_ms + RETRY_BACKOFF_MS),
            Fetched::OutOfRange => follow.restart(true, now_ms + RETRY_BACKOFF_MS),
            Fetched::RetryLater => follow.retry_at_ms = now_ms + RETRY_BACKOFF_MS,
            Fetched::Nothing => {}
        }
    }

    /// A produced batch of one record whose timestamp is `id`, appended with `acks` through the
    /// real `Partition::append`. For acks=all the wait is cut short (a zero timeout): the
    /// world then asks `replication_outcome` after every step. Returns the append's result and
    /// the record's offset (the log end before it: appends here are never concurrent).
    pub async fn produce(
        &mut self,
        id: i64,
        acks: i16,
    ) -> Option<(Result<(), ResponseError>, i64, i32)> {
        let partition = self.partition.clone()?;
        let offset = partition.log.log_end_offset();
        let leader_epoch = partition.leader_epoch.get();
        let replication = Replication {
            min_insync_replicas: super::controller::MIN_INSYNC_REPLICAS,
            timeout: Duration::ZERO,
        };
        self.mutations += 1;
        let result = partition.append(batch_of(id), acks, replication).await;
        Some((result.map(|_| ()), offset, leader_epoch))
    }
}

/// The leader's answer to OffsetForLeaderEpoch, as `shard::dispatch` and its handler give it.
fn answer_epoch(
    partition: &Partition,
    current_leader_epoch: i32,
    asked: i32,
) -> Result<(i32, i64), ResponseError> {
    if !partition.replicas.borrow().is_leader() {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    partition.check_leader_epoch(current_leader_epoch)?;
    Ok((partition.log.end_offset_for_epoch(asked))
        .unwrap_or((storage::UNDEFINED_EPOCH, storage::UNDEFINED_EPOCH_OFFSET)))
}

/// The leader's answer to ListOffsets EARLIEST, as `shard::dispatch` and its handler give it.
fn answer_log_start(
    partition: &Partition,
    current_leader_epoch: i32,
) -> Result<i64, ResponseError> {
    if !partition.replicas.borrow().is_leader() {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    partition.check_leader_epoch(current_leader_epoch)?;
    Ok(partition.log.log_start_offset())
}

/// One record, its timestamp (and value) the record's id.
fn batch_of(id: i64) -> storage::ValidatedBatches {
    let mut body = Vec::new();
    record_batch::encode_record(&mut body, 0, 0, None, Some(&id.to_be_bytes()), &[]);
    let fields = record_batch::BatchFields::plain(id);
    let batch = record_batch::encode_batch(&fields, 1, &body);
    storage::ValidatedBatches::validate(batch).expect("a valid batch")
}

/// A broker's requests and ISR checks run well within the session timeout, so a healthy
/// broker is never fenced for silence.
const _: () =
    assert!(REQUEST_TIMEOUT_MS < SESSION_TIMEOUT_MS && LAG_TIME_MAX_MS < SESSION_TIMEOUT_MS);
