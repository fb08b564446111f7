//! The in-memory copy of the durable Raft state that raft-rs reads through its `Storage` trait.
//!
//! `disk::Disk` owns the files and updates this copy only after the bytes it describes are durable,
//! so everything `Storage` answers is persisted state (raft-rs keeps unpersisted entries in its
//! own unstable log).

use std::cell::RefCell;
use std::rc::Rc;

use prost::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// The durable state, as last persisted.
#[derive(Debug, Default)]
pub struct Core {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    /// The last snapshot persisted (metadata and the state machine's bytes): what a lagging peer
    /// is sent, and what a restart restores.
    pub snapshot: Snapshot,
    /// Entries after the snapshot's index, consecutive.
    pub entries: Vec<Entry>,
    /// Offset of each entry's frame in the current log file.
    pub positions: Vec<u64>,
}

impl Core {
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot
            .metadata
            .as_ref()
            .map_or(0, |metadata| metadata.index)
    }

    pub fn snapshot_term(&self) -> u64 {
        self.snapshot
            .metadata
            .as_ref()
            .map_or(0, |metadata| metadata.term)
    }

    pub fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    pub fn last_index(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }

    /// The term of `index`, if it is the snapshot's or one of the entries'.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index() {
            return Some(self.snapshot_term());
        }
        if index < self.first_index() || index > self.last_index() {
            return None;
        }
        Some(self.entries[(index - self.first_index()) as usize].term)
    }

    /// Checks the invariants the files must satisfy, for start-up and for asserts.
    pub fn check(&self) -> Result<(), String> {
        let first = self.first_index();
        for (offset, entry) in self.entries.iter().enumerate() {
            if entry.index != first + offset as u64 {
                return Err(format!(
                    "log entry {} where {} was expected",
                    entry.index,
                    first + offset as u64
                ));
            }
        }
        let mut term = self.snapshot_term();
        for entry in &self.entries {
            if entry.term < term {
                return Err(format!(
                    "log entry {} has term {} after term {term}",
                    entry.index, entry.term
                ));
            }
            term = entry.term;
        }
        if self.positions.len() != self.entries.len() {
            return Err("positions and entries differ in length".to_string());
        }
        Ok(())
    }
}

/// raft-rs's view of the durable state. Shared with `disk::Disk` on the driver's thread only.
#[derive(Clone)]
pub struct SharedStore {
    pub core: Rc<RefCell<Core>>,
}

fn store_error(error: StorageError) -> raft::Error {
    raft::Error::Store(error)
}

impl Storage for SharedStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let core = self.core.borrow();
        Ok(RaftState::new(
            core.hard_state.clone(),
            core.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let core = self.core.borrow();
        if low < core.first_index() {
            return Err(store_error(StorageError::Compacted));
        }
        assert!(
            high <= core.last_index() + 1,
            "entries up to {high} past the last index {}",
            core.last_index()
        );
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let first = core.first_index();
        let mut size = 0u64;
        let mut out = Vec::new();
        for entry in &core.entries[(low - first) as usize..(high - first) as usize] {
            size += entry.encoded_len() as u64;
            // raft-rs's rule: at least one entry, then stop before exceeding max_size.
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(entry.clone());
        }
        Ok(out)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let core = self.core.borrow();
        if index < core.snapshot_index() {
            return Err(store_error(StorageError::Compacted));
        }
        core.term_of(index)
            .ok_or_else(|| store_error(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.core.borrow().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.core.borrow().last_index())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let core = self.core.borrow();
        if core.snapshot_index() < request_index {
            return Err(store_error(StorageError::SnapshotTemporarilyUnavailable));
        }
        Ok(core.snapshot.clone())
    }
}
