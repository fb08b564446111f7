//! Workaround for glommio 0.9's I/O-poll detection.
//!
//! When a `DmaFile` is opened, glommio decides once per thread and block device whether to use
//! its I/O-polling ring, by issuing one polled read at offset 0 of that file and treating success
//! as support. On an empty file that read short-circuits at end-of-file and succeeds without
//! reaching the device, so a device without polling support (virtio, most cloud disks) is taken
//! for a polling one and every later read fails with EOPNOTSUPP. Empty files are common here: a
//! new partition or a freshly rolled segment. So before the first `DmaFile` on a device is opened
//! on this thread, we open a small non-empty probe file on it, which makes glommio probe with a
//! real read and cache the right answer.

use std::cell::RefCell;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::StorageError;

/// Name of the short-lived probe file created in a partition directory.
const PROBE_FILE_NAME: &str = ".iopoll-probe";
/// Larger than any logical block size, so the probe read is served by the device.
const PROBE_FILE_BYTES: usize = 4096;

thread_local! {
    /// Devices (st_dev) already probed on this thread. Thread-local, not in the storage context:
    /// the glommio decision it tracks is made once per thread, whatever context opens the file.
    static PROBED_DEVICES: RefCell<HashSet<u64>> = RefCell::new(HashSet::new());
}

/// Makes sure glommio's per-thread I/O-poll decision for the device holding `dir` was made with
/// a real read. Cheap after the first call per device and thread.
pub(crate) async fn ensure_probed(dir: &Path) -> Result<(), StorageError> {
    let device = std::fs::metadata(dir)?.dev();
    if PROBED_DEVICES.with(|probed| probed.borrow().contains(&device)) {
        return Ok(());
    }
    let path = dir.join(PROBE_FILE_NAME);
    let opened = match std::fs::write(&path, [0xa5u8; PROBE_FILE_BYTES]) {
        Ok(()) => {
            let opened = glommio::io::DmaFile::open(&path).await;
            std::fs::remove_file(&path)?;
            opened
        }
        // A full disk still serves reads: probe with a file that is already there.
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            let _ = std::fs::remove_file(&path);
            let Some(existing) = existing_probe_file(dir, device) else {
                log::warn!("cannot probe I/O polling for {}: {e}", dir.display());
                return Ok(());
            };
            glommio::io::DmaFile::open(&existing).await
        }
        Err(e) => return Err(e.into()),
    };
    opened?.close().await?;
    PROBED_DEVICES.with(|probed| probed.borrow_mut().insert(device));
    Ok(())
}

/// Directories looked into for an existing probe file: bounds the search on a full disk.
const PROBE_SEARCH_DIRS_MAX: usize = 256;

/// A file of at least `PROBE_FILE_BYTES` on `device`, in `dir` or a sibling directory (the other
/// partitions of the data directory).
fn existing_probe_file(dir: &Path, device: u64) -> Option<std::path::PathBuf> {
    let siblings = dir
        .parent()
        .and_then(|parent| std::fs::read_dir(parent).ok());
    let dirs = std::iter::once(dir.to_path_buf())
        .chain(siblings.into_iter().flatten().flatten().map(|e| e.path()))
        .take(PROBE_SEARCH_DIRS_MAX);
    for candidate_dir in dirs {
        let Ok(entries) = std::fs::read_dir(&candidate_dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let fits = entry.metadata().is_ok_and(|m| {
                m.is_file() && m.dev() == device && m.len() >= PROBE_FILE_BYTES as u64
            });
            if fits {
                return Some(entry.path());
            }
        }
    }
    None
}
