//! A partition this shard owns: its log, the idempotent-producer state derived from it, and
//! its flush policy. Its operations (`ops.rs`) and flush rules (`flush.rs`) need only the
//! partition, never the shard.
//!
//! Invariant: only the owner shard appends to, reads from or waits on a partition's log.

mod flush;
mod follow;
mod ops;
pub mod replicas;

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use record_batch::BatchHeader;
use storage::{LogConfig, PartitionLog};

use crate::cluster::metadata::PartitionAssignment;
use crate::cluster::topic_config::TopicConfig;
use crate::producers::{BatchIdentity, ProducerStates};

pub use flush::FlushPolicy;
pub use ops::{first_of, wait_for_any, Replication, WaitFor};
pub use replicas::{IsrChange, Replicas, Role};

/// DeleteRecords offset meaning "up to the high watermark".
pub const DELETE_RECORDS_TO_HIGH_WATERMARK: i64 = -1;

/// ListOffsets' timestamp asking for the record with the largest timestamp (KIP-734, v7+).
pub const MAX_TIMESTAMP: i64 = -3;

/// Acks value meaning "answer once the append is durable" (acks=all).
pub const ACKS_ALL: i16 = -1;

/// Result of an append on the owner shard.
#[derive(Debug, Clone, Copy, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Appended {
    pub base_offset: i64,
    pub log_start_offset: i64,
}

/// One partition to read, with its place in the request.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct ReadSpec {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: usize,
    /// The fetcher's `current_leader_epoch`; -1 asks for no check.
    pub current_leader_epoch: i32,
}

/// One partition a fetch's long poll waits on.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct WaitSpec {
    pub topic: String,
    pub partition: i32,
    /// The fetch offset: data past it ends the wait.
    pub offset: i64,
    /// The high watermark the fetch's first read answered. A follower's wait also ends when the
    /// leader's moves past it: a follower learns the high watermark only from fetch responses,
    /// and serves its own consumers only below it (KIP-392).
    pub high_watermark: i64,
}

/// What a fetch learns about one partition.
#[derive(Debug, Clone, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PartitionRead {
    pub error: Option<ResponseError>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: Bytes,
    /// The replica the consumer should fetch this partition from instead (no records then):
    /// the leader's answer to a consumer in another rack (KIP-392).
    pub preferred_read_replica: Option<i32>,
    /// A follower's fetch moved the high watermark: the follower cannot know the new one yet,
    /// so the fetch is answered at once rather than after its long poll.
    pub high_watermark_moved: bool,
}

impl PartitionRead {
    /// The read of a partition refused with `error`.
    pub fn refused(error: ResponseError) -> PartitionRead {
        PartitionRead {
            error: Some(error),
            high_watermark: -1,
            log_start_offset: -1,
            records: Bytes::new(),
            preferred_read_replica: None,
            high_watermark_moved: false,
        }
    }
}

/// Bytes read at a time while rebuilding producer state from a log.
const PRODUCER_SCAN_READ_BYTES: usize = 1 << 20;

/// A partition this shard owns.
pub struct Partition {
    pub log: PartitionLog,
    pub producers: RefCell<ProducerStates>,
    pub dir: PathBuf,
    /// Bytes appended since the last producer-state snapshot.
    appended_since_snapshot: Cell<u64>,
    /// A producer-state snapshot is written after this many appended bytes.
    snapshot_interval_bytes: u64,
    /// The topic's `flush.messages` and `flush.ms`.
    pub flush: Cell<FlushPolicy>,
    /// When `flush.ms` last synced (or found nothing to sync), ms since the Unix epoch.
    last_flush_ms: Cell<i64>,
    /// The partition leader epoch this broker appends under, stamped into every batch: the
    /// assignment's epoch in the shard's metadata (`Shard::apply_metadata` keeps it current).
    pub leader_epoch: Cell<i32>,
    /// The role this broker has for the partition and, as its leader, what it knows of the
    /// followers (`replicas.rs`). Borrowed only between awaits.
    pub replicas: RefCell<Replicas>,
    /// Wakes followers' long polls when the log end grows (a leader's append).
    log_end_grew: Rc<storage::Notify>,
    /// Wakes acks=all producers when the assignment changes (leader, epoch, ISR) or this
    /// broker is cut off.
    assignment_changed: Rc<storage::Notify>,
    /// This broker is cut off from its metadata quorum (the shard's flag, see
    /// `crate::quorum_contact`): it has been or will be fenced, so it acts as no partition's
    /// leader whatever its snapshot says.
    cut_off: Rc<Cell<bool>>,
    /// Appends of fetched batches whose producer state is not yet observed (`follow.rs`); a
    /// produced append waits for them, so that a broker that became leader meanwhile knows
    /// every idempotent batch they hold before it checks a retry against its producer state.
    replicated_in_flight: Cell<u32>,
    /// Wakes produced appends waiting for `replicated_in_flight` to reach zero.
    replicated_settled: Rc<storage::Notify>,
}

/// How to open a partition, from the broker's settings.
pub struct OpenOptions {
    /// The caches the shard's partition logs share, within the shard's budgets.
    pub storage: storage::StorageContext,
    /// The broker's `--segment-bytes`, for topics that set no `segment.bytes`.
    pub default_segment_bytes: u64,
    pub snapshot_interval_bytes: u64,
    /// The segment I/O when a power loss is simulated; direct otherwise.
    pub power_loss_io: Option<storage::fault::FaultIo>,
    /// This broker's node id, for the partition's replica table.
    pub node_id: i32,
    /// The shard's flag: this broker is cut off from its metadata quorum and leads nothing.
    pub cut_off: Rc<Cell<bool>>,
}

impl OpenOptions {
    /// The storage settings of a partition of a topic with `config`.
    pub fn log_config(&self, config: &TopicConfig) -> LogConfig {
        let log_config = LogConfig {
            segment_bytes: config.segment_bytes.unwrap_or(self.default_segment_bytes),
            index_interval_bytes: config.index_interval_bytes,
            segment_ms: config.segment_ms,
            ..LogConfig::default()
        };
        match self.power_loss_io {
            Some(_) => LogConfig {
                segment_preallocate_bytes: crate::power_loss::SEGMENT_PREALLOCATE_BYTES,
                ..log_config
            },
            None => log_config,
        }
    }
}

impl Partition {
    /// This broker leads the partition at `leader_epoch`: if its log has not seen that epoch,
    /// the epoch starts at the log end (Kafka's `assign` when a broker becomes leader), after
    /// every append already called, so OffsetForLeaderEpoch ends the previous epoch there even
    /// before the first batch of this one. Runs in its own task; a failure (the log closed or
    /// a failed write could not be repaired) is logged, and the first append of the epoch adds
    /// the entry anyway.
    pub fn assign_leader_epoch(&self, leader_epoch: i32) {
        if self
            .log
            .latest_epoch()
            .is_some_and(|latest| latest >= leader_epoch)
        {
            return;
        }
        let assigned = self.log.assign_epoch(leader_epoch);
        let dir = self.dir.clone();
        glommio::spawn_local(async move {
            if let Err(error) = assigned.await {
                log::warn!(
                    "{}: leader epoch {leader_epoch} not assigned: {error}",
                    dir.display()
                );
            }
        })
        .detach();
    }

    /// Opens the partition in `dir` of topic `topic_id`; `created` says the topic or partition
    /// was created just now, so that no data found in its directory may be served. On failure
    /// returns what went wrong, naming the directory.
    pub async fn open(
        dir: PathBuf,
        topic_id: uuid::Uuid,
        created: bool,
        config: &TopicConfig,
        options: &OpenOptions,
    ) -> Result<Partition, String> {
        let failed =
            |what: &str, e: &dyn std::fmt::Display| format!("cannot {what} {}: {e}", dir.display());
        claim_partition_dir(&dir, topic_id, created).map_err(|e| failed("claim", &e))?;
        let log_config = options.log_config(config);
        let opened = match &options.power_loss_io {
            Some(io) => {
                let io = Rc::new(io.clone());
                PartitionLog::open_with_io(&options.storage, &dir, log_config, io).await
            }
            None => PartitionLog::open(&options.storage, &dir, log_config).await,
        };
        let log = opened.map_err(|e| failed("open", &e))?;
        let producers = rebuild_producer_states(&log, &dir)
            .await
            .map_err(|e| failed("scan", &e))?;
        Ok(Partition {
            log,
            producers: RefCell::new(producers),
            dir,
            appended_since_snapshot: Cell::new(0),
            snapshot_interval_bytes: options.snapshot_interval_bytes,
            flush: Cell::new(FlushPolicy::of(config)),
            last_flush_ms: Cell::new(crate::clock::now_ms()),
            leader_epoch: Cell::new(crate::cluster::metadata::FIRST_LEADER_EPOCH),
            replicas: RefCell::new(Replicas::new(options.node_id)),
            log_end_grew: Rc::new(storage::Notify::default()),
            assignment_changed: Rc::new(storage::Notify::default()),
            cut_off: options.cut_off.clone(),
            replicated_in_flight: Cell::new(0),
            replicated_settled: Rc::new(storage::Notify::default()),
        })
    }

    /// Whether this broker acts as the partition's leader: its snapshot names it, and it is not
    /// cut off from its metadata quorum.
    pub fn acts_as_leader(&self) -> bool {
        self.replicas.borrow().is_leader() && !self.cut_off.get()
    }

    /// Whether this broker is cut off from its metadata quorum (it serves no reads or appends).
    pub fn is_cut_off(&self) -> bool {
        self.cut_off.get()
    }

    /// The shard was cut off from its quorum, or is in contact again: producers waiting for
    /// acks=all look again (and answer NOT_LEADER_OR_FOLLOWER), and so do followers' long polls.
    pub fn cut_off_changed(&self) {
        self.assignment_changed.notify_all();
        self.log_end_grew.notify_all();
    }

    /// Takes the partition's assignment from a new snapshot: its leader epoch, its role and
    /// ISR. A smaller ISR may let the high watermark move up, and waiting acks=all producers
    /// look again. `now_ms` is the time (the clock's, or a simulation's).
    pub fn set_assignment(&self, assignment: &PartitionAssignment, now_ms: i64) {
        self.leader_epoch.set(assignment.leader_epoch);
        let log_end_offset = self.log.log_end_offset();
        (self.replicas.borrow_mut()).set_assignment(assignment, log_end_offset, now_ms);
        self.advance_high_watermark();
        self.assignment_changed.notify_all();
    }

    /// As leader, moves the high watermark up to what the ISR holds (see `replicas.rs`); it
    /// never moves down, and a follower's is set by what it fetches.
    pub fn advance_high_watermark(&self) {
        let replicas = self.replicas.borrow();
        if !replicas.is_leader() {
            return;
        }
        let high_watermark = replicas.high_watermark(self.log.log_end_offset());
        drop(replicas);
        if high_watermark > self.log.high_watermark() {
            self.log.advance_high_watermark(high_watermark);
        }
    }

    /// Tells followers' long polls that the log end grew and lets the high watermark follow.
    /// Every append as leader calls it once the append is published.
    pub fn appended_as_leader(&self) {
        self.log_end_grew.notify_all();
        self.advance_high_watermark();
    }

    /// Applies changed topic configs: the log from its next append, the flush policy at once.
    pub fn set_config(&self, config: &TopicConfig, options: &OpenOptions) {
        self.log.set_config(options.log_config(config));
        self.flush.set(FlushPolicy::of(config));
    }
}

/// Makes `dir` a directory of topic `id` before its log is opened. A directory left by an
/// earlier topic of the same name (its `topic_id` differs) is removed; one without a `topic_id`
/// is adopted at start-up (written by an older version), but moved aside, never served, when the
/// partition was just created. Failing to record the id on a full disk only costs the proof of
/// ownership, so it is logged, not fatal.
fn claim_partition_dir(dir: &Path, id: uuid::Uuid, created: bool) -> std::io::Result<()> {
    match crate::data_dir::read_topic_id(dir)? {
        Some(found) if found == id => return Ok(()),
        Some(found) => {
            log::warn!(
                "removing {}: left by deleted topic id {found}",
                dir.display()
            );
            std::fs::remove_dir_all(dir)?;
        }
        None if created && dir.exists() => {
            let aside = dir.with_file_name(format!(
                "{}.{}-stray",
                dir.file_name()
                    .expect("a partition directory name")
                    .to_string_lossy(),
                id.simple()
            ));
            log::warn!(
                "moving {} to {}: it predates the new partition",
                dir.display(),
                aside.display()
            );
            std::fs::rename(dir, &aside)?;
        }
        None => {}
    }
    std::fs::create_dir_all(dir)?;
    if let Err(e) = crate::data_dir::write_topic_id(dir, id) {
        log::warn!("cannot record the topic id in {}: {e}", dir.display());
    }
    Ok(())
}

/// Rebuilds producer state: the last snapshot, if it still matches the log, plus the batches
/// after it; otherwise every stored batch. (A snapshot past the log end describes batches a
/// crash cut off, and one before the log start may miss producers: both are ignored.)
pub(super) async fn rebuild_producer_states(
    log: &PartitionLog,
    dir: &Path,
) -> Result<ProducerStates, storage::StorageError> {
    let (mut states, mut offset) = match ProducerStates::read_snapshot(dir) {
        Some((states, next)) if next >= log.log_start_offset() && next <= log.log_end_offset() => {
            (states, next)
        }
        _ => (ProducerStates::default(), log.log_start_offset()),
    };
    while offset < log.log_end_offset() {
        let bytes = match log.read(offset, PRODUCER_SCAN_READ_BYTES).await {
            // A fenced range holds no batch storage can vouch for: its producers are not
            // remembered, as if the batches had expired.
            Err(storage::StorageError::CorruptRange { next_offset, .. }) => {
                offset = next_offset;
                continue;
            }
            result => result?,
        };
        assert!(
            !bytes.is_empty(),
            "a read below the log end returns a batch"
        );
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let header = BatchHeader::parse(rest).expect("storage returns whole batches");
            let identity = BatchIdentity::of(&header);
            states.observe_stored(&identity, header.base_offset, header.max_timestamp);
            offset = header.next_offset();
            rest = &rest[header.total_bytes()..];
        }
        glommio::yield_if_needed().await;
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_partition_never_takes_over_old_data() {
        let data_dir = std::env::temp_dir().join(format!(
            "sluice-claim-{}",
            crate::cluster::metadata::random_uuid().simple()
        ));
        let (old, new) = (
            crate::cluster::metadata::random_uuid(),
            crate::cluster::metadata::random_uuid(),
        );
        let dir = data_dir.join("t-0");
        let read_id = |dir: &std::path::Path| crate::data_dir::read_topic_id(dir).unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("old.log"), b"old").unwrap();
        // Without a topic id, an existing directory is adopted at start-up...
        claim_partition_dir(&dir, old, false).unwrap();
        assert!(dir.join("old.log").exists());
        assert_eq!(read_id(&dir), Some(old));
        // ...and a directory of an earlier topic of the same name is removed.
        claim_partition_dir(&dir, new, true).unwrap();
        assert!(!dir.join("old.log").exists());
        assert_eq!(read_id(&dir), Some(new));
        // A directory without an id that a just-created partition finds is moved aside.
        std::fs::remove_file(dir.join(crate::data_dir::TOPIC_ID_FILE_NAME)).unwrap();
        std::fs::write(dir.join("stray.log"), b"stray").unwrap();
        claim_partition_dir(&dir, new, true).unwrap();
        assert!(!dir.join("stray.log").exists());
        let aside = data_dir.join(format!("t-0.{}-stray", new.simple()));
        assert!(aside.join("stray.log").exists());
        std::fs::remove_dir_all(&data_dir).unwrap();
    }
}
