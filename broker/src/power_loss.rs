//! A simulated power failure for the durability tests: `sluice serve --simulate-power-loss`
//! (hidden from `--help`).
//!
//! A kill -9 loses nothing that reached the kernel, so it cannot show that an acknowledged
//! record, a committed offset or a topic was made durable with fdatasync. In this mode every
//! partition log (`__consumer_offsets` included) does its segment I/O through
//! [`storage::fault::FaultIo`], which remembers what each fdatasync made durable, and the
//! metadata files written with `data_dir::persist_atomically` are tracked the same way. When the file
//! [`TRIGGER_FILE_NAME`] appears in the data directory, every operation fails from then on, every
//! file goes back to what its last completed sync made durable (unsynced writes and files whose
//! directory entry was never synced are lost), and the process kills itself with SIGKILL.
//!
//! Off (the default), none of this runs: partitions use direct I/O and
//! `data_dir::persist_atomically` only checks a flag.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
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
static LEDGER: Mutex<Ledger> = Mutex::new(Ledger::new());
/// Shards whose files are back to their durable content.
static SHARDS_DOWN: AtomicUsize = AtomicUsize::new(0);

/// What a power failure leaves of the files written with `data_dir::persist_atomically`.
struct Ledger {
    /// The content each replaced file has after a crash (`None`: no file).
    durable: BTreeMap<PathBuf, Option<Vec<u8>>>,
    /// Temporary files whose content an fsync made durable.
    synced: BTreeMap<PathBuf, Vec<u8>>,
    /// Renames whose directory was not synced since: target and durable content of the source.
    renamed: BTreeMap<PathBuf, Option<Vec<u8>>>,
    power_cut: bool,
}

impl Ledger {
    const fn new() -> Ledger {
        Ledger {
            durable: BTreeMap::new(),
            synced: BTreeMap::new(),
            renamed: BTreeMap::new(),
            power_cut: false,
        }
    }

    fn before_rename(&mut self, from: &Path, to: &Path) {
        self.durable
            .entry(to.to_path_buf())
            .or_insert_with(|| std::fs::read(to).ok());
        self.renamed
            .insert(to.to_path_buf(), self.synced.remove(from));
    }

    /// A directory sync makes its renames durable; a renamed file that was never synced comes
    /// back empty, as from a file system that allocates blocks late.
    fn dir_synced(&mut self, dir: &Path) {
        let durable = &mut self.durable;
        self.renamed.retain(|path, content| {
            if path.parent() != Some(dir) {
                return true;
            }
            durable.insert(path.clone(), Some(content.take().unwrap_or_default()));
            false
        });
    }

    /// Cuts the power once: later replacements fail, and each tracked file is rewritten to its
    /// durable content.
    fn cut(&mut self) -> io::Result<()> {
        if std::mem::replace(&mut self.power_cut, true) {
            return Ok(());
        }
        for (path, content) in std::mem::take(&mut self.durable) {
            match content {
                Some(content) => std::fs::write(&path, content)?,
                None if path.exists() => std::fs::remove_file(&path)?,
                None => {}
            }
        }
        for temporary in self.synced.keys() {
            let _ = std::fs::remove_file(temporary);
        }
        Ok(())
    }
}

/// Turns the simulation on for this process; call before any file is written.
pub fn enable() {
    ENABLED.store(true, Ordering::SeqCst);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::SeqCst)
}

/// The file-system steps of `data_dir::persist_atomically`; each sync also tells the ledger what
/// it made durable, so that leaving a sync out loses the file in a simulated power cut.
pub struct Steps(Option<MutexGuard<'static, Ledger>>);

impl Steps {
    /// Holds the ledger while the simulation is on; an error once the power is cut.
    pub fn begin() -> io::Result<Steps> {
        if !enabled() {
            return Ok(Steps(None));
        }
        let ledger = LEDGER.lock().expect("no thread panics holding the ledger");
        if ledger.power_cut {
            return Err(io::Error::from_raw_os_error(EIO));
        }
        Ok(Steps(Some(ledger)))
    }

    pub fn sync_file(
        &mut self,
        file: &std::fs::File,
        path: &Path,
        contents: &[u8],
    ) -> io::Result<()> {
        file.sync_all()?;
        if let Some(ledger) = self.0.as_mut() {
            ledger.synced.insert(path.to_path_buf(), contents.to_vec());
        }
        Ok(())
    }

    pub fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        if let Some(ledger) = self.0.as_mut() {
            ledger.before_rename(from, to);
        }
        std::fs::rename(from, to)
    }

    pub fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()?;
        if let Some(ledger) = self.0.as_mut() {
            ledger.dir_synced(dir);
        }
        Ok(())
    }
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
        LEDGER
            .lock()
            .expect("no thread panics holding the ledger")
            .cut()
            .expect("metadata files are rewritten");
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
