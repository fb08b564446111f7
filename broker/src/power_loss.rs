//! A simulated power failure for the durability tests: `sluice serve --simulate-power-loss`
//! (hidden from `--help`).
//!
//! A kill -9 loses nothing that reached the kernel, so it cannot show that an acknowledged
//! record, a committed offset or a topic was made durable with fdatasync. In this mode every
//! partition log (`__consumer_offsets` included) does its segment I/O through
//! [`storage::fault::FaultIo`], which remembers what each fdatasync made durable. When the file
//! [`TRIGGER_FILE_NAME`] appears in the data directory, every operation fails from then on, every
//! segment file goes back to what its last completed sync made durable (unsynced writes and
//! files whose directory entry was never synced are lost), and the process kills itself with
//! SIGKILL. The metadata quorum's files (`meta/quorum/`) are not simulated: the quorum
//! fdatasyncs for real before it acknowledges anything, so they keep at least what it promised.
//!
//! Off (the default), none of this runs: partitions use direct I/O.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use storage::fault::{CrashOptions, Fault, FaultIo, FaultPlan, Operations, EIO};

/// Created in the data directory by a test to cut the power.
pub const TRIGGER_FILE_NAME: &str = "power-loss";
/// How often each shard looks for the trigger file.
const TRIGGER_CHECK_INTERVAL: Duration = Duration::from_millis(10);
/// Longest wait, once the power is cut, for the file changes already in the kernel to finish;
/// a direct-I/O write takes milliseconds, so a longer wait means a lost completion.
const DRAIN_MAX: Duration = Duration::from_secs(10);
/// The preallocation step of segment files in this mode: `FaultIo` keeps two copies of each
/// file in memory and copies the whole file at every fdatasync, so files stay small.
pub const SEGMENT_PREALLOCATE_BYTES: u64 = 64 * 1024;

static ENABLED: AtomicBool = AtomicBool::new(false);
/// Shards whose files are back to their durable content.
static SHARDS_DOWN: AtomicUsize = AtomicUsize::new(0);

/// Turns the simulation on for this process; call before any file is written.
pub fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

/// The segment I/O of a shard's partition logs in this mode.
pub fn segment_io() -> Option<FaultIo> {
    enabled().then(FaultIo::new)
}

/// Which shard a watcher runs on, among how many.
pub struct WatchedShard {
    pub id: usize,
    pub count: usize,
}

/// Watches for the trigger file in `data_dir` and then brings this shard's files (those of
/// `io`) back to their durable content; the last shard to finish kills the process.
pub fn spawn_watcher(data_dir: &Path, shard: WatchedShard, io: FaultIo) {
    let trigger = data_dir.join(TRIGGER_FILE_NAME);
    glommio::spawn_local(async move {
        while !trigger.exists() {
            glommio::timer::sleep(TRIGGER_CHECK_INTERVAL).await;
        }
        io.inject(FaultPlan {
            fault: Fault::Errno(EIO),
            operations: Operations::All,
            after: 0,
            count: u64::MAX,
        });
        let deadline = Instant::now() + DRAIN_MAX;
        while io.changes_in_flight() > 0 {
            assert!(Instant::now() < deadline, "file changes still in flight");
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        io.crash(CrashOptions {
            torn_blocks_kept: 0,
            unsynced_files_lost: true,
        })
        .expect("segment files are rewritten");
        log::warn!(
            "shard {}: power cut; files are back to their durable content",
            shard.id
        );
        if SHARDS_DOWN.fetch_add(1, Ordering::SeqCst) + 1 == shard.count {
            let _ = std::fs::remove_file(&trigger);
            // SAFETY: kill(2) on this process with a valid signal number.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
    })
    .detach();
}
