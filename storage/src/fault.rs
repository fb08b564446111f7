//! A fault-injecting [`LogIo`] for tests: real `O_DIRECT` files underneath ([`DirectIo`]), with
//! injected errors, short writes and simulated crashes on top.
//!
//! # Fault model
//!
//! - **Fail after N operations.** [`FaultIo::inject`] arms a [`FaultPlan`]: the `after`-th
//!   operation of the chosen kinds from now on, and the `count - 1` after it, fail with an errno
//!   (EIO, ENOSPC) instead of running. A failed write or sync changes nothing on disk.
//! - **Short writes.** [`Fault::ShortWrite`] makes a write store only a block-aligned prefix
//!   (possibly empty) of its buffer and report that length.
//! - **Crash.** [`FaultIo::crash`] simulates a power failure after the log was dropped: every file
//!   goes back to what its last successful fdatasync made durable, optionally keeping a prefix of
//!   the blocks written since (a torn write, whole blocks only, as the disk is sector-atomic), and
//!   files whose directory entry was never synced may vanish. The log is then reopened and
//!   recovered from the real files.
//!
//! To know what is durable, each open file keeps two in-memory images: its current content (every
//! completed write, truncate and fallocate applied) and its synced content (the current one as of
//! its last successful fdatasync). fdatasync and directory syncs are only simulated, which keeps
//! the randomized tests fast; the data itself goes through real direct I/O. Simplifications: an
//! unlink is durable at once, and a file that exists when it is opened counts as durable (after
//! recovery it is).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::io::{DmaBuffer, ReadResult};

use crate::io::{DirectIo, IoFuture, LogIo, OpenMode, SegmentFile};

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The operation fails with this errno (e.g. `libc::EIO` = 5, `ENOSPC` = 28).
    Errno(i32),
    /// A write stores only a block-aligned prefix of its buffer and reports its length. Only
    /// writes count toward `after` for this fault.
    ShortWrite,
}

/// Which operations a [`FaultPlan`] counts and fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operations {
    /// Every operation: open, write, read, fdatasync, truncate, fallocate, unlink, directory sync.
    All,
    /// Operations that change a file: write, truncate, fallocate, open with create.
    Writes,
    /// fdatasync and directory syncs.
    Syncs,
    /// Reads.
    Reads,
    /// fallocate only: a failure while the active segment grows.
    Preallocations,
}

/// Errno values, so that callers need no libc.
pub const EIO: i32 = 5;
pub const ENOSPC: i32 = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPlan {
    pub fault: Fault,
    pub operations: Operations,
    /// How many matching operations succeed before the first failure.
    pub after: u64,
    /// How many matching operations fail, from the first one on (`u64::MAX`: until cleared).
    pub count: u64,
}

/// How a simulated crash treats what was not made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CrashOptions {
    /// Of each file's blocks that differ from the synced content, this many (the first ones by
    /// position) survive with their current content: a torn tail of unsynced writes.
    pub torn_blocks_kept: u64,
    /// Files created since the last directory sync disappear.
    pub unsynced_files_lost: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Open,
    Create,
    Write,
    Read,
    Sync,
    Truncate,
    Preallocate,
    Remove,
    SyncDir,
}

impl Kind {
    fn counted_by(self, operations: Operations) -> bool {
        match operations {
            Operations::All => true,
            Operations::Writes => matches!(
                self,
                Kind::Create | Kind::Write | Kind::Truncate | Kind::Preallocate
            ),
            Operations::Syncs => matches!(self, Kind::Sync | Kind::SyncDir),
            Operations::Reads => self == Kind::Read,
            Operations::Preallocations => self == Kind::Preallocate,
        }
    }
}

/// The durable and the current content of one file.
struct Image {
    current: Vec<u8>,
    synced: Vec<u8>,
    /// The directory entry is durable (the file existed at open, or a directory sync followed
    /// its creation).
    entry_synced: bool,
    alignment: u64,
}

#[derive(Default)]
struct State {
    plan: Cell<Option<FaultPlan>>,
    /// Matching operations seen since the plan was armed.
    seen: Cell<u64>,
    injected: Cell<u64>,
    /// Injected failures of file fdatasyncs (not directory syncs): after one, the log must fail
    /// every later sync until it is reopened.
    fdatasyncs_failed: Cell<u64>,
    images: RefCell<HashMap<PathBuf, Rc<RefCell<Image>>>>,
    /// Operations that change a file and have been submitted but not finished.
    changes_in_flight: Cell<u64>,
}

/// Counts one file-changing operation as in flight while it lives.
struct InFlight(Rc<State>);

impl InFlight {
    fn start(state: &Rc<State>) -> InFlight {
        state
            .changes_in_flight
            .set(state.changes_in_flight.get() + 1);
        InFlight(Rc::clone(state))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let in_flight = &self.0.changes_in_flight;
        assert!(in_flight.get() > 0, "an in-flight change was counted");
        in_flight.set(in_flight.get() - 1);
    }
}

impl State {
    /// The fault to inject into this operation, if any.
    fn check(&self, kind: Kind) -> Option<Fault> {
        let plan = self.plan.get()?;
        let counted = match plan.fault {
            Fault::ShortWrite => kind == Kind::Write,
            Fault::Errno(_) => kind.counted_by(plan.operations),
        };
        if !counted {
            return None;
        }
        let seen = self.seen.get();
        self.seen.set(seen + 1);
        if seen < plan.after || seen - plan.after >= plan.count {
            return None;
        }
        self.injected.set(self.injected.get() + 1);
        Some(plan.fault)
    }

    fn fail(&self, kind: Kind) -> io::Result<()> {
        match self.check(kind) {
            Some(Fault::Errno(errno)) => {
                if kind == Kind::Sync {
                    self.fdatasyncs_failed.set(self.fdatasyncs_failed.get() + 1);
                }
                Err(io::Error::from_raw_os_error(errno))
            }
            _ => Ok(()),
        }
    }
}

/// A [`LogIo`] that injects faults; see the module docs. Cloning shares the state, so a test
/// keeps one handle while the log holds another.
#[derive(Clone, Default)]
pub struct FaultIo {
    state: Rc<State>,
}

impl FaultIo {
    pub fn new() -> FaultIo {
        FaultIo::default()
    }

    /// Arms `plan`, replacing any earlier one; its operation count starts now.
    pub fn inject(&self, plan: FaultPlan) {
        self.state.seen.set(0);
        self.state.plan.set(Some(plan));
    }

    /// Disarms the plan: from now on every operation runs.
    pub fn clear(&self) {
        self.state.plan.set(None);
    }

    /// How many faults were injected since this `FaultIo` was made.
    pub fn injected(&self) -> u64 {
        self.state.injected.get()
    }

    /// How many file fdatasyncs (not directory syncs) failed by injection since this `FaultIo`
    /// was made.
    pub fn fdatasyncs_failed(&self) -> u64 {
        self.state.fdatasyncs_failed.get()
    }

    /// How many operations that change a file (open with create, write, truncate, fallocate,
    /// unlink) are running. A crash of a log that is still open waits, with every operation
    /// failing, until this is zero: a write still in the kernel could land after the rewrite.
    pub fn changes_in_flight(&self) -> u64 {
        self.state.changes_in_flight.get()
    }

    /// Simulates a power failure. Call it after the log was dropped and its tasks finished: each
    /// file the log opened that still exists is rewritten to its durable content (see
    /// [`CrashOptions`]), and forgotten. Disarms the plan.
    pub fn crash(&self, options: CrashOptions) -> io::Result<()> {
        self.clear();
        let images = std::mem::take(&mut *self.state.images.borrow_mut());
        for (path, image) in images {
            let image = image.borrow();
            if !path.exists() {
                // Removed outside this layer (recovery deletes segments past a cut): that
                // removal is durable, recovery synced the directory.
                continue;
            }
            if !image.entry_synced && options.unsynced_files_lost {
                std::fs::remove_file(&path)?;
                continue;
            }
            std::fs::write(&path, image.after_crash(options.torn_blocks_kept))?;
        }
        Ok(())
    }
}

impl Image {
    /// The synced content plus the first `torn_blocks_kept` blocks that differ from it.
    fn after_crash(&self, torn_blocks_kept: u64) -> Vec<u8> {
        let mut content = self.synced.clone();
        let alignment = self.alignment as usize;
        let mut kept = 0;
        let mut block_start = 0;
        while kept < torn_blocks_kept && block_start < self.current.len() {
            let block_end = (block_start + alignment).min(self.current.len());
            let current = &self.current[block_start..block_end];
            let synced = self
                .synced
                .get(block_start..block_end.min(self.synced.len()));
            if synced != Some(current) {
                if content.len() < block_end {
                    content.resize(block_end, 0);
                }
                content[block_start..block_end].copy_from_slice(current);
                kept += 1;
            }
            block_start = block_end;
        }
        content
    }
}

impl LogIo for FaultIo {
    fn open(&self, path: &Path, mode: OpenMode) -> IoFuture<'_, Rc<dyn SegmentFile>> {
        let path = path.to_path_buf();
        Box::pin(async move {
            let kind = match mode {
                OpenMode::Existing => Kind::Open,
                OpenMode::CreateEmpty => Kind::Create,
            };
            self.state.fail(kind)?;
            let _in_flight = InFlight::start(&self.state);
            let inner = DirectIo.open(&path, mode).await?;
            let content = match mode {
                OpenMode::Existing => std::fs::read(&path)?,
                OpenMode::CreateEmpty => Vec::new(),
            };
            let image = Rc::new(RefCell::new(Image {
                synced: content.clone(),
                current: content,
                entry_synced: mode == OpenMode::Existing,
                alignment: inner.alignment(),
            }));
            self.state
                .images
                .borrow_mut()
                .insert(path, Rc::clone(&image));
            let file = FaultFile {
                inner,
                image,
                state: Rc::clone(&self.state),
            };
            Ok(Rc::new(file) as Rc<dyn SegmentFile>)
        })
    }

    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            self.state.fail(Kind::SyncDir)?;
            for (path, image) in self.state.images.borrow().iter() {
                if path.parent() == Some(dir) {
                    image.borrow_mut().entry_synced = true;
                }
            }
            Ok(())
        })
    }
}

/// A segment file of [`FaultIo`].
struct FaultFile {
    inner: Rc<dyn SegmentFile>,
    image: Rc<RefCell<Image>>,
    state: Rc<State>,
}

impl FaultFile {
    /// A copy of the first `len` bytes of `buffer` in a new DMA buffer.
    fn prefix(&self, buffer: &DmaBuffer, len: usize) -> Rc<DmaBuffer> {
        let mut prefix = self.inner.alloc_dma_buffer(len);
        prefix
            .as_bytes_mut()
            .copy_from_slice(&buffer.as_bytes()[..len]);
        Rc::new(prefix)
    }
}

impl SegmentFile for FaultFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn alignment(&self) -> u64 {
        self.inner.alignment()
    }

    fn alloc_dma_buffer(&self, len: usize) -> DmaBuffer {
        self.inner.alloc_dma_buffer(len)
    }

    fn write_at(&self, buffer: Rc<DmaBuffer>, position: u64) -> IoFuture<'_, usize> {
        Box::pin(async move {
            let buffer = match self.state.check(Kind::Write) {
                Some(Fault::Errno(errno)) => {
                    // As from a real disk, the error arrives after the write was submitted,
                    // while the caller may have submitted others.
                    futures_lite::future::yield_now().await;
                    return Err(io::Error::from_raw_os_error(errno));
                }
                Some(Fault::ShortWrite) => {
                    let blocks = buffer.len() as u64 / self.alignment();
                    let kept = (self.state.seen.get() % blocks) * self.alignment();
                    if kept == 0 {
                        return Ok(0);
                    }
                    self.prefix(&buffer, kept as usize)
                }
                None => buffer,
            };
            let _in_flight = InFlight::start(&self.state);
            let written = self.inner.write_at(Rc::clone(&buffer), position).await?;
            let mut image = self.image.borrow_mut();
            let start = position as usize;
            let end = start + written;
            if image.current.len() < end {
                image.current.resize(end, 0);
            }
            image.current[start..end].copy_from_slice(&buffer.as_bytes()[..written]);
            Ok(written)
        })
    }

    fn read_at(&self, position: u64, len: usize) -> IoFuture<'_, ReadResult> {
        Box::pin(async move {
            self.state.fail(Kind::Read)?;
            self.inner.read_at(position, len).await
        })
    }

    fn fdatasync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.state.fail(Kind::Sync)?;
            let mut image = self.image.borrow_mut();
            image.synced = image.current.clone();
            Ok(())
        })
    }

    fn truncate(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.state.fail(Kind::Truncate)?;
            let _in_flight = InFlight::start(&self.state);
            self.inner.truncate(len).await?;
            self.image.borrow_mut().current.resize(len as usize, 0);
            Ok(())
        })
    }

    fn preallocate(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.state.fail(Kind::Preallocate)?;
            let _in_flight = InFlight::start(&self.state);
            self.inner.preallocate(len).await?;
            let mut image = self.image.borrow_mut();
            if image.current.len() < len as usize {
                image.current.resize(len as usize, 0);
            }
            Ok(())
        })
    }

    fn size(&self) -> IoFuture<'_, u64> {
        self.inner.size()
    }

    fn remove(&self) -> IoFuture<'_, ()> {
        Box::pin(async move {
            self.state.fail(Kind::Remove)?;
            let _in_flight = InFlight::start(&self.state);
            self.inner.remove().await?;
            self.state.images.borrow_mut().remove(self.inner.path());
            Ok(())
        })
    }

    fn close(self: Rc<Self>) -> IoFuture<'static, ()> {
        match Rc::try_unwrap(self) {
            Ok(file) => file.inner.close(),
            Err(_) => Box::pin(async { Ok(()) }),
        }
    }
}
