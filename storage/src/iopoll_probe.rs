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
    /// Devices (st_dev) already probed on this thread.
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
    std::fs::write(&path, [0xa5u8; PROBE_FILE_BYTES])?;
    let opened = glommio::io::DmaFile::open(&path).await;
    std::fs::remove_file(&path)?;
    opened?.close().await?;
    PROBED_DEVICES.with(|probed| probed.borrow_mut().insert(device));
    Ok(())
}
