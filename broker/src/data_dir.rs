//! What the broker owns in its data directory, and the checks start-up makes there.
//!
//! A partition directory is `<topic>-<partition>` and holds a `topic_id` file naming the topic
//! it was created for. The file is what proves ownership: start-up removes a partition directory
//! only when its `topic_id` names a topic that the metadata no longer lists with that partition
//! on this broker (a deletion that a crash interrupted, or a reassignment that completed while
//! the broker was down), and leaves every other directory alone, whatever its name. A directory of
//! a listed topic without the file (written by an older version) gets it when opened.
//!
//! `meta/reserve` holds a few MiB of zeros that a metadata change releases when the disk is
//! (nearly) full, so that the metadata quorum can still write its log and DeleteTopics, the way
//! to get space back, still works (see `release_reserve_if_full`).
//!
//! Invariant: start-up never deletes a directory without a `topic_id` file, and a partition is
//! never opened on a directory whose `topic_id` names another topic.

use std::io::Write;
use std::path::{Path, PathBuf};

/// File in each partition directory naming, as a UUID, the topic it belongs to.
pub const TOPIC_ID_FILE_NAME: &str = "topic_id";

/// Bytes kept in `meta/reserve` for metadata changes on a full disk: more than the metadata
/// file of thousands of topics, and small next to any data disk.
pub const METADATA_RESERVE_BYTES: usize = 4 << 20;

/// Name of the empty file start-up creates and removes to check the directory is writable.
const WRITE_PROBE_FILE_NAME: &str = ".write-probe";

/// Directory of one partition's log: `<data_dir>/<topic>-<partition>`, as Kafka lays it out.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// A directory named like a partition: `<topic>-<partition>` with a legal topic name.
pub struct PartitionDir {
    pub path: PathBuf,
    pub topic: String,
    pub partition: i32,
}

/// The directories in `data_dir` named like partitions (whoever made them); none if `data_dir`
/// does not exist yet.
pub fn partition_dirs(data_dir: &Path) -> std::io::Result<Vec<PartitionDir>> {
    let mut dirs = Vec::new();
    let entries = match std::fs::read_dir(data_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(dirs),
        entries => entries?,
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((topic, partition)) = name.rsplit_once('-') else {
            continue;
        };
        let Ok(partition) = partition.parse::<i32>() else {
            continue;
        };
        if partition < 0
            || crate::topic_name::validate_topic_name(topic).is_err()
            || !entry.file_type()?.is_dir()
        {
            continue;
        }
        dirs.push(PartitionDir {
            path: entry.path(),
            topic: topic.to_string(),
            partition,
        });
    }
    Ok(dirs)
}

/// The partition directories that hold log segments: data that metadata must describe.
pub fn dirs_with_segments(data_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for dir in partition_dirs(data_dir)? {
        for entry in std::fs::read_dir(&dir.path)? {
            let name = entry?.file_name();
            if storage::parse_segment_file_name(&name.to_string_lossy()).is_some() {
                found.push(dir.path);
                break;
            }
        }
    }
    Ok(found)
}

/// The topic id recorded in a partition directory; `None` if there is none (or it is unreadable,
/// which proves nothing either).
pub fn read_topic_id(partition_dir: &Path) -> std::io::Result<Option<uuid::Uuid>> {
    let path = partition_dir.join(TOPIC_ID_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(uuid::Uuid::parse_str(text.trim()).ok().or_else(|| {
            log::warn!("{} does not hold a topic id", path.display());
            None
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records which topic `partition_dir` belongs to. Not fsync'd: a file that a crash loses or
/// tears reads as no id, which proves nothing, so the directory is kept (adopted if its topic is
/// listed, moved aside if a new partition finds it); the cost of a sync per new partition would
/// buy nothing.
pub fn write_topic_id(partition_dir: &Path, id: uuid::Uuid) -> std::io::Result<()> {
    std::fs::write(
        partition_dir.join(TOPIC_ID_FILE_NAME),
        id.hyphenated().to_string(),
    )
}

/// Fails with a clear message if files cannot be created in `data_dir` (a read-only mount, no
/// permission): every partition would fail to open. A full disk passes: the broker then serves
/// reads and refuses appends until space returns.
pub fn ensure_writable(data_dir: &Path) -> anyhow::Result<()> {
    let probe = data_dir.join(WRITE_PROBE_FILE_NAME);
    match std::fs::File::create(&probe) {
        Ok(_) => std::fs::remove_file(&probe).map_err(|e| not_writable(data_dir, e)),
        Err(e) if e.kind() == std::io::ErrorKind::StorageFull => {
            log::warn!(
                "{} is full: appends fail until space is freed",
                data_dir.display()
            );
            Ok(())
        }
        Err(e) => Err(not_writable(data_dir, e)),
    }
}

fn not_writable(data_dir: &Path, e: std::io::Error) -> anyhow::Error {
    anyhow::anyhow!("data directory {} is not writable: {e}", data_dir.display())
}

/// Removes the partition directories whose `topic_id` names a topic that the metadata does not
/// list with that partition on this broker: what a crash left of a deletion, or a copy a
/// reassignment moved away while the broker was down (no ISR the metadata holds counts on it).
/// Others stay. `listed(topic, partition)` is the id of the topic the metadata lists with that
/// partition among this broker's replicas.
pub fn remove_unlisted_partitions(
    data_dir: &Path,
    listed: impl Fn(&str, i32) -> Option<uuid::Uuid>,
) -> std::io::Result<()> {
    for dir in partition_dirs(data_dir)? {
        match (read_topic_id(&dir.path)?, listed(&dir.topic, dir.partition)) {
            (Some(id), Some(listed_id)) if id == listed_id => {}
            (Some(id), _) => {
                log::warn!(
                    "removing {}: the metadata does not list it on this broker for topic id {id}",
                    dir.path.display()
                );
                std::fs::remove_dir_all(&dir.path)?;
            }
            (None, Some(_)) => {}
            (None, None) => log::warn!(
                "leaving {} alone: no topic lists it and it holds no {TOPIC_ID_FILE_NAME}",
                dir.path.display()
            ),
        }
    }
    Ok(())
}

fn reserve_path(data_dir: &Path) -> PathBuf {
    data_dir.join("meta").join("reserve")
}

/// Creates `meta/reserve` if it is missing and there is room; a disk too full for it is only
/// logged (the next call tries again).
pub fn ensure_reserve(data_dir: &Path) {
    let path = reserve_path(data_dir);
    if path.exists() {
        return;
    }
    let written = std::fs::File::create(&path).and_then(|mut file| {
        file.write_all(&vec![0u8; METADATA_RESERVE_BYTES])?;
        file.sync_all()
    });
    if let Err(e) = written {
        log::warn!("cannot create {}: {e}", path.display());
        // A partial reserve would pass for a whole one.
        let _ = std::fs::remove_file(&path);
    }
}

/// Free bytes below which the reserve is released before a metadata write: more than the
/// quorum writes for one change (an entry, a hard state file, a snapshot of the metadata).
const METADATA_HEADROOM_BYTES: u64 = 1 << 20;

/// Releases the reserve if the data directory's file system has less than
/// `METADATA_HEADROOM_BYTES` free. The quorum stops at a failed write (its disk can no longer
/// be trusted), so room must be made before it writes, not after.
pub fn release_reserve_if_full(data_dir: &Path) {
    if free_bytes(data_dir).is_some_and(|free| free < METADATA_HEADROOM_BYTES) {
        release_reserve(data_dir);
    }
}

/// Bytes an unprivileged writer may still use on `path`'s file system.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data, for which all zeros is a valid value.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: the path is a NUL-terminated string and `stat` a struct the call only writes.
    let result = unsafe { libc::statvfs(path.as_ptr(), &mut stat) };
    (result == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Frees the reserve; true if there was one to free.
pub fn release_reserve(data_dir: &Path) -> bool {
    let path = reserve_path(data_dir);
    match std::fs::remove_file(&path) {
        Ok(()) => {
            log::warn!("the disk is full: released {}", path.display());
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::random_uuid;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-data-dir-{}", random_uuid().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn start_up_removes_only_partitions_of_deleted_topics_and_moved_away() {
        use crate::cluster::controller::command::empty_snapshot;
        use crate::cluster::metadata::{PartitionAssignment, TopicMeta};
        let data_dir = temp_dir();
        let (listed, deleted) = (random_uuid(), random_uuid());
        // The metadata lists topic "t" with two partitions: 0 on this broker (1) and another,
        // 1 moved to brokers 2 and 3.
        let mut snapshot = empty_snapshot();
        let assignments = vec![
            PartitionAssignment::new(vec![1, 2]),
            PartitionAssignment::new(vec![2, 3]),
        ];
        let topic = TopicMeta::new("t".into(), listed, assignments, Default::default());
        snapshot.topics.insert("t".into(), topic);
        for (name, id) in [
            ("t-0", Some(listed)),
            ("t-1", Some(listed)),
            ("t-2", Some(listed)),
            ("gone-0", Some(deleted)),
            ("notes-1", None),
            ("backup-2024", None),
            ("t-5", None),
        ] {
            let dir = data_dir.join(name);
            std::fs::create_dir_all(&dir).unwrap();
            if let Some(id) = id {
                write_topic_id(&dir, id).unwrap();
            }
        }
        remove_unlisted_partitions(&data_dir, |topic, partition| {
            snapshot.topic_id_on(topic, partition, 1)
        })
        .unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&data_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["backup-2024", "notes-1", "t-0", "t-5"]);
        std::fs::remove_dir_all(&data_dir).unwrap();
    }
}
