//! Small file helpers on glommio's io_uring files: whole-file reads with a size bound, writes
//! that loop over short writes, and atomic replacement (temp, fdatasync, rename, fsync dir).

use std::io;
use std::path::{Path, PathBuf};

use glommio::io::{BufferedFile, Directory, OpenOptions};

/// Reads at most this much per read call, so a large file does not need one huge buffer at once.
const READ_CHUNK_BYTES: usize = 1 << 20;

pub fn io_error(error: glommio::GlommioError<()>) -> io::Error {
    error.into()
}

/// Reads the whole file, refusing one larger than `bytes_max`. `Ok(None)` if it does not exist.
pub async fn read_whole(path: &Path, bytes_max: u64) -> io::Result<Option<Vec<u8>>> {
    let file = match BufferedFile::open(path).await {
        Ok(file) => file,
        Err(error) => {
            let error = io_error(error);
            return if error.kind() == io::ErrorKind::NotFound {
                Ok(None)
            } else {
                Err(error)
            };
        }
    };
    let size = file.file_size().await.map_err(io_error)?;
    if size > bytes_max {
        let _ = file.close().await;
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is {size} bytes, over the limit of {bytes_max}",
                path.display()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    while (bytes.len() as u64) < size {
        let want = READ_CHUNK_BYTES.min((size - bytes.len() as u64) as usize);
        let chunk = file
            .read_at(bytes.len() as u64, want)
            .await
            .map_err(io_error)?;
        if chunk.is_empty() {
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    file.close().await.map_err(io_error)?;
    Ok(Some(bytes))
}

/// Writes all of `bytes` at `position`, looping over short writes.
pub async fn write_all_at(
    file: &BufferedFile,
    mut bytes: Vec<u8>,
    mut position: u64,
) -> io::Result<()> {
    while !bytes.is_empty() {
        let length = bytes.len();
        let written = file
            .write_at(bytes.clone(), position)
            .await
            .map_err(io_error)?;
        if written == 0 {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short write of zero bytes",
            ));
        }
        position += written as u64;
        bytes = if written == length {
            Vec::new()
        } else {
            bytes.split_off(written)
        };
    }
    Ok(())
}

/// Opens (creating if needed) a file for reading and appending at explicit positions.
pub async fn open_read_write(path: &Path) -> io::Result<BufferedFile> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .buffered_open(path)
        .await
        .map_err(io_error)
}

pub async fn sync_dir(dir: &Path) -> io::Result<()> {
    let directory = Directory::open(dir).await.map_err(io_error)?;
    directory.sync().await.map_err(io_error)?;
    directory.close().await.map_err(io_error)
}

pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("a file name").to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path.tmp`, fdatasyncs it and renames it over `path`. The caller fsyncs the
/// directory (once for several files) before relying on the new name.
pub async fn replace_file(path: &Path, bytes: Vec<u8>) -> io::Result<()> {
    let temp = temp_path(path);
    let file = BufferedFile::create(&temp).await.map_err(io_error)?;
    write_all_at(&file, bytes, 0).await?;
    file.fdatasync().await.map_err(io_error)?;
    file.close().await.map_err(io_error)?;
    glommio::io::rename(&temp, path).await.map_err(io_error)
}

/// `replace_file` and then the directory fsync that makes the rename durable.
pub async fn replace_file_durably(path: &Path, bytes: Vec<u8>) -> io::Result<()> {
    replace_file(path, bytes).await?;
    sync_dir(path.parent().expect("a file inside a directory")).await
}

pub async fn remove(path: &Path) -> io::Result<()> {
    glommio::io::remove(path).await.map_err(io_error)
}
