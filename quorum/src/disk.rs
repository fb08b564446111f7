//! The Raft directory on disk, and the only code that writes it.
//!
//! | file                      | content                                                          |
//! |---------------------------|------------------------------------------------------------------|
//! | `hardstate`               | CRC32C u32 LE, then a length-prefixed prost HardState and ConfState |
//! | `snapshot-<index:020>`    | CRC32C u32 LE, then a prost Snapshot (metadata + state machine bytes) |
//! | `log-<index:020>`         | frames (`frame.rs`) of the entries after `index`, consecutive     |
//!
//! A snapshot and the log that follows it form a pair named by the same index; `log-0` has no
//! snapshot. A compaction or an installed snapshot writes the new log, then the new snapshot,
//! fsyncs the directory, and only then removes the older pair, so a crash at any step leaves a
//! whole pair. Start-up takes the highest whole pair and removes everything else.
//!
//! **Invariant:** the in-memory `Core` changes only after the bytes it reflects are durable.
//! **Invariant:** a failed write (ENOSPC, EIO) is retried (`retry.rs`) until it succeeds or the
//! node stops, and the caller goes on only after success: every write method is one idempotent
//! attempt at a time (a retried append rewrites the same bytes at the same place), so the node
//! never acknowledges what it did not persist, and resumes by itself once there is space again.

use std::cell::{Cell, RefCell};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::BufferedFile;
use prost::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};

use crate::files::{self, io_error};
use crate::frame;
use crate::retry::Retry;
use crate::store::{Core, SharedStore};

/// The largest snapshot file start-up reads: it must fit a Raft message to reach other nodes.
pub const SNAPSHOT_FILE_BYTES_MAX: u64 = crate::transport::MESSAGE_BYTES_MAX as u64;
/// The largest hard state file (a few integers and the voter ids).
const HARD_STATE_FILE_BYTES_MAX: u64 = 64 * 1024;
/// The largest log file start-up reads. The driver compacts after `snapshot_every` entries or
/// once the log passes `LOG_COMPACT_BYTES`, and a leader holds at most 64 MiB uncommitted, so a
/// log the node wrote itself stays far below this; it only stops a runaway file.
pub const LOG_FILE_BYTES_MAX: u64 = 1 << 30;
/// A log file past this many bytes is compacted at the next applied entry, whatever
/// `snapshot_every` says (large entries would otherwise reach `LOG_FILE_BYTES_MAX`).
pub const LOG_COMPACT_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("I/O error in the Raft directory: {0}")]
    Io(#[from] io::Error),
    #[error("the Raft directory {dir} is inconsistent: {reason}")]
    Inconsistent { dir: PathBuf, reason: String },
    /// The state machine refused the snapshot (see `StateMachine::restore`).
    #[error("the state machine cannot restore the snapshot at index {index}: {reason}")]
    Unrestorable { index: u64, reason: String },
}

fn snapshot_name(index: u64) -> String {
    format!("snapshot-{index:020}")
}

fn log_name(index: u64) -> String {
    format!("log-{index:020}")
}

/// The durable Raft state of one node: its files and the in-memory `Core` raft-rs reads.
pub struct Disk {
    dir: PathBuf,
    log: BufferedFile,
    /// The index the current log file follows (its snapshot's index).
    log_base: u64,
    log_bytes: u64,
    core: Rc<RefCell<Core>>,
    /// Set when the node is stopping: a failing write then stops being retried.
    pub stopping: Rc<Cell<bool>>,
    /// Tests fill the disk: while set, every write fails with ENOSPC before touching a file.
    #[cfg(test)]
    pub full: Rc<Cell<bool>>,
    /// The writes refused so while `full`.
    #[cfg(test)]
    pub refused: Rc<Cell<u64>>,
}

impl Disk {
    /// Opens (or initialises with `voters`) the directory: loads the newest whole snapshot and log
    /// pair and the hard state, cuts a torn or corrupt log tail, removes leftovers, and refuses
    /// anything else that does not fit together.
    pub async fn open(dir: &Path, voters: &[u64]) -> Result<Disk, DiskError> {
        glommio::io::Directory::create(dir)
            .await
            .map_err(io_error)?
            .close()
            .await
            .map_err(io_error)?;
        let inconsistent = |reason: String| DiskError::Inconsistent {
            dir: dir.to_path_buf(),
            reason,
        };
        let listing = list(dir)?;
        if listing.logs.is_empty() && listing.snapshots.is_empty() {
            initialise(dir, voters).await?;
            return Box::pin(Disk::open(dir, voters)).await;
        }
        let base = listing
            .logs
            .iter()
            .copied()
            .filter(|index| *index == 0 || listing.snapshots.contains(index))
            .max()
            .ok_or_else(|| inconsistent("no log file with its snapshot".to_string()))?;
        for index in listing.logs.iter().filter(|index| **index != base) {
            files::remove(&dir.join(log_name(*index))).await?;
        }
        for index in listing.snapshots.iter().filter(|index| **index != base) {
            files::remove(&dir.join(snapshot_name(*index))).await?;
        }
        for temp in &listing.temps {
            files::remove(&dir.join(temp)).await?;
        }
        let snapshot = if base == 0 {
            Snapshot::default()
        } else {
            read_snapshot(dir, base).await?
        };
        let (hard_state, conf_state) = read_hard_state(dir)
            .await?
            .ok_or_else(|| inconsistent("no hardstate file".to_string()))?;
        let (log, log_bytes, entries, positions) = open_log(dir, base).await?;
        let mut core = Core {
            hard_state,
            conf_state,
            snapshot,
            entries,
            positions,
        };
        core.check().map_err(inconsistent)?;
        check_voters(&core, voters).map_err(inconsistent)?;
        clamp_commit(&mut core, dir);
        Ok(Disk {
            dir: dir.to_path_buf(),
            log,
            log_base: base,
            log_bytes,
            core: Rc::new(RefCell::new(core)),
            stopping: Rc::new(Cell::new(false)),
            #[cfg(test)]
            full: Rc::new(Cell::new(false)),
            #[cfg(test)]
            refused: Rc::new(Cell::new(0)),
        })
    }

    pub fn store(&self) -> SharedStore {
        SharedStore {
            core: self.core.clone(),
        }
    }

    /// The current log file's length: what a restart reads.
    pub fn log_bytes(&self) -> u64 {
        self.log_bytes
    }

    pub fn core(&self) -> std::cell::Ref<'_, Core> {
        self.core.borrow()
    }

    /// Appends `entries` durably (write, fdatasync), first cutting the log where they conflict
    /// with it: raft-rs hands entries starting at or before our last index when a new leader
    /// overwrites an uncommitted suffix. A failed attempt is retried until it succeeds.
    pub async fn append(&mut self, entries: &[Entry]) -> Result<(), DiskError> {
        if entries.is_empty() {
            return Ok(());
        }
        let stopping = self.stopping.clone();
        let mut retry = Retry::new("appending to the Raft log", &stopping);
        loop {
            match self.append_once(entries).await {
                Err(DiskError::Io(error)) if retry.again(&error).await => continue,
                result => {
                    retry.succeeded();
                    return result;
                }
            }
        }
    }

    /// One attempt of [`Disk::append`]. After a failure the log file may hold a cut suffix or
    /// part of the new frames past `log_bytes`; the next attempt writes them again over it.
    async fn append_once(&mut self, entries: &[Entry]) -> Result<(), DiskError> {
        self.check_space()?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let (cut_at, keep) = {
            let core = self.core.borrow();
            assert!(
                first.index > core.snapshot_index(),
                "append of {} at or below the snapshot",
                first.index
            );
            assert!(
                first.index <= core.last_index() + 1,
                "append of {} leaves a gap after {}",
                first.index,
                core.last_index()
            );
            let keep = (first.index - core.first_index()) as usize;
            (core.positions.get(keep).copied(), keep)
        };
        if let Some(position) = cut_at {
            self.log.truncate(position).await.map_err(io_error)?;
            self.log_bytes = position;
            let mut core = self.core.borrow_mut();
            core.entries.truncate(keep);
            core.positions.truncate(keep);
        }
        let mut bytes = Vec::new();
        let mut positions = Vec::with_capacity(entries.len());
        for entry in entries {
            positions.push(self.log_bytes + bytes.len() as u64);
            frame::encode_entry(entry, &mut bytes);
        }
        let length = bytes.len() as u64;
        files::write_all_at(&self.log, bytes, self.log_bytes).await?;
        self.log.fdatasync().await.map_err(io_error)?;
        self.log_bytes += length;
        let mut core = self.core.borrow_mut();
        core.entries.extend_from_slice(entries);
        core.positions.extend(positions);
        debug_assert!(core.check().is_ok());
        Ok(())
    }

    /// Persists the hard state (term, vote, commit) with the conf state, atomically; a failed
    /// attempt is retried until it succeeds (the file is replaced whole, so this is idempotent).
    pub async fn save_hard_state(&mut self, hard_state: &HardState) -> Result<(), DiskError> {
        let conf_state = self.core.borrow().conf_state.clone();
        let stopping = self.stopping.clone();
        let mut retry = Retry::new("writing the Raft hard state", &stopping);
        loop {
            let attempt = async {
                self.check_space()?;
                write_hard_state(&self.dir, hard_state, &conf_state).await
            };
            match attempt.await {
                Err(DiskError::Io(error)) if retry.again(&error).await => continue,
                result => {
                    retry.succeeded();
                    result?;
                    break;
                }
            }
        }
        self.core.borrow_mut().hard_state = hard_state.clone();
        Ok(())
    }

    /// Fails a write with ENOSPC while a test has filled the disk (`full`).
    fn check_space(&self) -> Result<(), DiskError> {
        #[cfg(test)]
        if self.full.get() {
            self.refused.set(self.refused.get() + 1);
            return Err(DiskError::Io(io::Error::from_raw_os_error(28)));
        }
        Ok(())
    }

    /// Records a commit index in memory only: the commit index is recomputed from a quorum after
    /// a restart, so it need not be durable; the next hard state write carries it.
    pub fn note_commit(&mut self, commit: u64) {
        let mut core = self.core.borrow_mut();
        core.hard_state.commit = core.hard_state.commit.max(commit);
    }

    /// Installs a snapshot received from the leader: it replaces the whole log. A failed
    /// attempt is retried until it succeeds; one that switched to the snapshot's pair before it
    /// failed resumes at the hard state.
    pub async fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), DiskError> {
        let metadata = snapshot.metadata.clone().unwrap_or_default();
        // The new hard and conf states are built aside and enter `Core` only once written.
        let mut hard_state = self.core.borrow().hard_state.clone();
        hard_state.term = hard_state.term.max(metadata.term);
        hard_state.commit = hard_state.commit.max(metadata.index);
        let conf_state = metadata.conf_state.clone().unwrap_or_default();
        let stopping = self.stopping.clone();
        let mut retry = Retry::new("installing a Raft snapshot", &stopping);
        loop {
            let attempt = async {
                self.check_space()?;
                if self.log_base != metadata.index {
                    self.switch_to(snapshot.clone(), Vec::new()).await?;
                }
                write_hard_state(&self.dir, &hard_state, &conf_state).await
            };
            match attempt.await {
                Err(DiskError::Io(error)) if retry.again(&error).await => continue,
                result => {
                    retry.succeeded();
                    result?;
                    break;
                }
            }
        }
        let mut core = self.core.borrow_mut();
        core.hard_state = hard_state;
        core.conf_state = conf_state;
        Ok(())
    }

    /// Takes a local snapshot at `index` (applied, so present in the log) with the state
    /// machine's bytes, and drops the entries it covers from memory and disk. One attempt: a
    /// failure changes nothing the node relies on, and the driver tries again later.
    pub async fn compact(&mut self, index: u64, data: Vec<u8>) -> Result<(), DiskError> {
        self.check_space()?;
        let (snapshot, kept) = {
            let core = self.core.borrow();
            let term = core
                .term_of(index)
                .expect("compaction at an index in the log");
            let metadata = SnapshotMetadata {
                conf_state: Some(core.conf_state.clone()),
                index,
                term,
            };
            let kept = core.entries[(index - core.snapshot_index()) as usize..].to_vec();
            (
                Snapshot {
                    data,
                    metadata: Some(metadata),
                },
                kept,
            )
        };
        self.switch_to(snapshot, kept).await
    }

    /// Writes `log-<index>` holding `kept`, then `snapshot-<index>`, fsyncs the directory, makes
    /// them current, and removes the previous pair.
    async fn switch_to(&mut self, snapshot: Snapshot, kept: Vec<Entry>) -> Result<(), DiskError> {
        let index = snapshot
            .metadata
            .as_ref()
            .map_or(0, |metadata| metadata.index);
        assert!(
            index > self.log_base,
            "snapshot {index} not after the current one {}",
            self.log_base
        );
        let mut bytes = Vec::new();
        let mut positions = Vec::with_capacity(kept.len());
        for entry in &kept {
            positions.push(bytes.len() as u64);
            frame::encode_entry(entry, &mut bytes);
        }
        let log_bytes = bytes.len() as u64;
        let log_path = self.dir.join(log_name(index));
        files::replace_file(&log_path, bytes).await?;
        files::replace_file(
            &self.dir.join(snapshot_name(index)),
            encode_snapshot(&snapshot),
        )
        .await?;
        files::sync_dir(&self.dir).await?;
        let log = files::open_read_write(&log_path).await?;
        let old_log = std::mem::replace(&mut self.log, log);
        let _ = old_log.close().await;
        let old_base = std::mem::replace(&mut self.log_base, index);
        self.log_bytes = log_bytes;
        {
            let mut core = self.core.borrow_mut();
            core.snapshot = snapshot;
            core.entries = kept;
            core.positions = positions;
            debug_assert!(core.check().is_ok());
        }
        // The new pair is current and durable: a failure to remove the old one is only logged,
        // and start-up removes it (it keeps the newest whole pair).
        let mut old = vec![self.dir.join(log_name(old_base))];
        if old_base != 0 {
            old.push(self.dir.join(snapshot_name(old_base)));
        }
        for path in old {
            if let Err(error) = files::remove(&path).await {
                log::warn!("cannot remove {}: {error}", path.display());
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Listing {
    logs: Vec<u64>,
    snapshots: Vec<u64>,
    temps: Vec<String>,
}

/// Lists the directory once at start-up (glommio has no io_uring readdir).
fn list(dir: &Path) -> Result<Listing, DiskError> {
    let mut listing = Listing::default();
    for item in std::fs::read_dir(dir)? {
        let name = item?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tmp") {
            listing.temps.push(name);
        } else if let Some(index) = name
            .strip_prefix("log-")
            .and_then(|index| index.parse().ok())
        {
            listing.logs.push(index);
        } else if let Some(index) = name
            .strip_prefix("snapshot-")
            .and_then(|index| index.parse().ok())
        {
            listing.snapshots.push(index);
        }
    }
    Ok(listing)
}

async fn initialise(dir: &Path, voters: &[u64]) -> Result<(), DiskError> {
    let conf_state = ConfState {
        voters: voters.to_vec(),
        ..Default::default()
    };
    write_hard_state(dir, &HardState::default(), &conf_state).await?;
    files::replace_file_durably(&dir.join(log_name(0)), Vec::new()).await?;
    Ok(())
}

/// Opens `log-<base>`, decodes it, and cuts a torn or corrupt tail (fdatasync after the cut).
async fn open_log(
    dir: &Path,
    base: u64,
) -> Result<(BufferedFile, u64, Vec<Entry>, Vec<u64>), DiskError> {
    let path = dir.join(log_name(base));
    let bytes = files::read_whole(&path, LOG_FILE_BYTES_MAX)
        .await?
        .unwrap_or_default();
    let decoded = frame::decode_frames(&bytes);
    let log = files::open_read_write(&path).await?;
    if let Some(problem) = &decoded.tail {
        log::warn!(
            "{}: cutting the log tail at byte {} of {} ({problem:?})",
            path.display(),
            decoded.valid_bytes,
            bytes.len()
        );
        log.truncate(decoded.valid_bytes).await.map_err(io_error)?;
        log.fdatasync().await.map_err(io_error)?;
    }
    Ok((log, decoded.valid_bytes, decoded.entries, decoded.positions))
}

fn check_voters(core: &Core, voters: &[u64]) -> Result<(), String> {
    let mut stored = core.conf_state.voters.clone();
    let mut wanted = voters.to_vec();
    stored.sort_unstable();
    wanted.sort_unstable();
    if stored != wanted {
        return Err(format!(
            "the directory's voters are {stored:?}, the configuration's {wanted:?}"
        ));
    }
    Ok(())
}

/// The commit index must lie within [snapshot, last index]. Below the snapshot it is raised
/// (the snapshot holds only committed state). Past the log's end (a tail lost after its commit
/// was recorded) it is lowered: the node re-learns it from the leader.
fn clamp_commit(core: &mut Core, dir: &Path) {
    let (low, high) = (core.snapshot_index(), core.last_index());
    let commit = core.hard_state.commit;
    if commit > high {
        log::warn!(
            "{}: commit index {commit} is past the log end {high}; using {high}",
            dir.display()
        );
    }
    core.hard_state.commit = commit.clamp(low, high);
}

fn checksummed(payload: Vec<u8>) -> Vec<u8> {
    let mut bytes = crc32c::crc32c(&payload).to_le_bytes().to_vec();
    bytes.extend_from_slice(&payload);
    bytes
}

fn verified<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a [u8], DiskError> {
    let bad = || DiskError::Inconsistent {
        dir: path.to_path_buf(),
        reason: "checksum mismatch".to_string(),
    };
    if bytes.len() < 4 {
        return Err(bad());
    }
    let (crc, payload) = bytes.split_at(4);
    if crc32c::crc32c(payload).to_le_bytes() != crc {
        return Err(bad());
    }
    Ok(payload)
}

fn encode_snapshot(snapshot: &Snapshot) -> Vec<u8> {
    checksummed(snapshot.encode_to_vec())
}

async fn read_snapshot(dir: &Path, index: u64) -> Result<Snapshot, DiskError> {
    let path = dir.join(snapshot_name(index));
    let bytes = files::read_whole(&path, SNAPSHOT_FILE_BYTES_MAX)
        .await?
        .unwrap_or_default();
    let snapshot =
        Snapshot::decode(verified(&bytes, &path)?).map_err(|error| DiskError::Inconsistent {
            dir: path.clone(),
            reason: format!("undecodable snapshot: {error}"),
        })?;
    if snapshot.metadata.as_ref().map(|metadata| metadata.index) != Some(index) {
        return Err(DiskError::Inconsistent {
            dir: path,
            reason: "snapshot index differs from its name".to_string(),
        });
    }
    Ok(snapshot)
}

async fn write_hard_state(
    dir: &Path,
    hard_state: &HardState,
    conf_state: &ConfState,
) -> Result<(), DiskError> {
    let mut payload = Vec::new();
    hard_state
        .encode_length_delimited(&mut payload)
        .expect("a Vec grows");
    conf_state
        .encode_length_delimited(&mut payload)
        .expect("a Vec grows");
    files::replace_file_durably(&dir.join("hardstate"), checksummed(payload)).await?;
    Ok(())
}

async fn read_hard_state(dir: &Path) -> Result<Option<(HardState, ConfState)>, DiskError> {
    let path = dir.join("hardstate");
    let Some(bytes) = files::read_whole(&path, HARD_STATE_FILE_BYTES_MAX).await? else {
        return Ok(None);
    };
    let mut payload = verified(&bytes, &path)?;
    let undecodable = |error: prost::DecodeError| DiskError::Inconsistent {
        dir: path.clone(),
        reason: format!("undecodable hard state: {error}"),
    };
    let hard_state = HardState::decode_length_delimited(&mut payload).map_err(undecodable)?;
    let conf_state = ConfState::decode_length_delimited(&mut payload).map_err(undecodable)?;
    Ok(Some((hard_state, conf_state)))
}
