//! The file operations a partition log performs, behind a small trait so tests can inject faults.
//!
//! [`LogIo`] opens segment files and syncs and edits directories; [`SegmentFile`] is one open
//! segment file. [`DirectIo`] is the real implementation: glommio `DmaFile`s opened with
//! `O_DIRECT`, so appends bypass the page cache. [`crate::fault::FaultIo`] wraps it for tests
//! and fails, shortens or discards operations on purpose.
//!
//! The methods return boxed futures so the traits can be used as trait objects: the log holds an
//! `Rc<dyn LogIo>` and each segment an `Rc<dyn SegmentFile>`, and neither `PartitionLog` nor its
//! callers are generic. One allocation per I/O operation is small next to the I/O itself.
//!
//! Errors are plain `io::Error`s with their `ErrorKind` kept (`StorageFull` for ENOSPC, `Other`
//! for EIO), which the log turns into [`crate::StorageError::Io`].

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

/// A boxed, `!Send` future of an I/O result.
pub type IoFuture<'a, T> = Pin<Box<dyn Future<Output = io::Result<T>> + 'a>>;

/// Creating a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist (a segment found by recovery).
    Existing,
    /// Create the file, emptying any leftover with the same name (a new segment at a roll).
    CreateEmpty,
}

/// File-system operations of a partition log that are not tied to one open file.
///
/// Recovery (`recovery.rs`) does not go through this trait: it runs before the log exists, with
/// blocking `std::fs` I/O, and reads whatever the files hold, which is what a crash test wants.
pub trait LogIo {
    /// Opens a segment file for reading and writing with direct I/O.
    fn open(&self, path: &Path, mode: OpenMode) -> IoFuture<'_, Rc<dyn SegmentFile>>;
    /// Makes the entries of `dir` durable (created and removed files).
    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()>;
}

/// One open segment file. Writes and reads must be aligned as [`SegmentFile::alignment`] says
/// (reads of any range are allowed; the implementation aligns them).
///
/// Concurrency: several reads and several writes may be in flight at once; the log never has
/// two writes of one block in flight (see `append_pipeline`).
pub trait SegmentFile {
    fn path(&self) -> &Path;
    /// The direct-I/O block size: write positions and lengths are multiples of it.
    fn alignment(&self) -> u64;
    /// A buffer of `len` bytes (contents unspecified) aligned for direct I/O; `len` is a multiple
    /// of [`SegmentFile::alignment`].
    fn alloc_dma_buffer(&self, len: usize) -> DmaBuffer;
    /// Writes the whole buffer at `position`; returns how many bytes were written, which is less
    /// than the buffer only for a short write.
    fn write_at(&self, buffer: Rc<DmaBuffer>, position: u64) -> IoFuture<'_, usize>;
    /// Reads up to `len` bytes at `position` (fewer at the end of the file).
    fn read_at(&self, position: u64, len: usize) -> IoFuture<'_, ReadResult>;
    /// Makes every completed write durable, and the file size with it.
    fn fdatasync(&self) -> IoFuture<'_, ()>;
    /// Sets the file size to `len`, dropping or zero-extending.
    fn truncate(&self, len: u64) -> IoFuture<'_, ()>;
    /// Allocates blocks up to `len` bytes and sets the file size to at least `len`
    /// (`fallocate` without `FALLOC_FL_KEEP_SIZE`); the new range reads as zeros.
    fn preallocate(&self, len: u64) -> IoFuture<'_, ()>;
    /// The file size in bytes.
    fn size(&self) -> IoFuture<'_, u64>;
    /// Unlinks the file; it stays readable through this handle until closed.
    fn remove(&self) -> IoFuture<'_, ()>;
    /// Closes the file. Called once, with the last reference.
    fn close(self: Rc<Self>) -> IoFuture<'static, ()>;

    fn align_down(&self, position: u64) -> u64 {
        position - position % self.alignment()
    }

    fn align_up(&self, position: u64) -> u64 {
        self.align_down(position + self.alignment() - 1)
    }
}

/// The real I/O: glommio `DmaFile`s (`O_DIRECT`) and glommio directory syncs.
#[derive(Debug, Default, Clone, Copy)]
pub struct DirectIo;

impl LogIo for DirectIo {
    fn open(&self, path: &Path, mode: OpenMode) -> IoFuture<'_, Rc<dyn SegmentFile>> {
        let path = path.to_path_buf();
        Box::pin(async move {
            let mut options = OpenOptions::new();
            options.read(true).write(true);
            if mode == OpenMode::CreateEmpty {
                options.create(true).truncate(true);
            }
            let file = options.dma_open(&path).await.map_err(io::Error::from)?;
            Ok(Rc::new(DirectFile { file, path }) as Rc<dyn SegmentFile>)
        })
    }

    fn sync_dir<'a>(&'a self, dir: &'a Path) -> IoFuture<'a, ()> {
        Box::pin(async move {
            let directory = glommio::io::Directory::open(dir).await?;
            let result = directory.sync().await;
            directory.close().await?;
            Ok(result?)
        })
    }
}

/// A segment file opened by [`DirectIo`].
pub struct DirectFile {
    file: DmaFile,
    path: PathBuf,
}

impl SegmentFile for DirectFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn alignment(&self) -> u64 {
        self.file.alignment()
    }

    fn alloc_dma_buffer(&self, len: usize) -> DmaBuffer {
        self.file.alloc_dma_buffer(len)
    }

    fn write_at(&self, buffer: Rc<DmaBuffer>, position: u64) -> IoFuture<'_, usize> {
        Box::pin(async move { Ok(self.file.write_rc_at(buffer, position).await?) })
    }

    fn read_at(&self, position: u64, len: usize) -> IoFuture<'_, ReadResult> {
        Box::pin(async move { Ok(self.file.read_at(position, len).await?) })
    }

    fn fdatasync(&self) -> IoFuture<'_, ()> {
        Box::pin(async move { Ok(self.file.fdatasync().await?) })
    }

    fn truncate(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move { Ok(self.file.truncate(len).await?) })
    }

    fn preallocate(&self, len: u64) -> IoFuture<'_, ()> {
        Box::pin(async move { Ok(self.file.pre_allocate(len, false).await?) })
    }

    fn size(&self) -> IoFuture<'_, u64> {
        Box::pin(async move { Ok(self.file.file_size().await?) })
    }

    fn remove(&self) -> IoFuture<'_, ()> {
        Box::pin(async move { Ok(self.file.remove().await?) })
    }

    fn close(self: Rc<Self>) -> IoFuture<'static, ()> {
        Box::pin(async move {
            match Rc::try_unwrap(self) {
                Ok(direct) => Ok(direct.file.close().await?),
                // Another reference (a read in flight) closes the file when it drops.
                Err(_) => Ok(()),
            }
        })
    }
}
