//! File descriptors: the broker raises its soft limit to the hard limit at start and divides
//! what it got between partitions, sealed-segment files and connections, so that no part can
//! starve the others (at the limit, every open, accept and socket fails with EMFILE).
//!
//! Each open partition holds one descriptor (its active segment's file); each shard keeps at
//! most `sealed_segment_files_per_shard` files of sealed segments open (storage's
//! `segment_files` cache) and serves at most `connections_per_shard` connections. The rest is a
//! fixed reserve for what every process and shard needs.

/// Descriptors kept for the process: stdio, the log, the metadata and producer-id files while
/// they are replaced. A broker with two shards and only `__consumer_offsets` held 16 in all
/// besides its partitions.
pub const FDS_RESERVED_PROCESS: u64 = 32;

/// Descriptors kept for each shard: its three io_uring rings, eventfds and listener (about 5
/// measured), plus short-lived files: index and snapshot writes, directory syncs, recovery's
/// reads, reopened sealed segments and files that glommio closes with its next I/O cycle.
pub const FDS_RESERVED_PER_SHARD: u64 = 16;

/// Connections may take one part in this many of the descriptors left after the reserve.
const CONNECTIONS_FD_SHARE_DIVISOR: u64 = 4;

/// Cached sealed-segment files may take one part in this many of them.
const SEALED_SEGMENT_FILES_FD_SHARE_DIVISOR: u64 = 8;

/// Fewest descriptors per shard left for partitions after the reserve and the other shares:
/// below this a broker cannot even open `__consumer_offsets` (50 partitions) on a few shards.
const PARTITION_FDS_PER_SHARD_MIN: u64 = 64;

/// How the descriptor limit is divided (see the module documentation). Archivable: a metadata
/// command carries its proposer's budget, so that every node refuses the same partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct FdBudget {
    /// The soft `RLIMIT_NOFILE` after raising it.
    pub limit: u64,
    pub connections_per_shard: usize,
    pub sealed_segment_files_per_shard: usize,
    /// Partitions of all topics together, each holding one descriptor.
    pub partitions_max: u64,
}

impl FdBudget {
    /// Divides `limit` descriptors for `shards` shards, each serving at most
    /// `shard_connections_max` connections; an error if too few are left for partitions.
    pub fn new(
        limit: u64,
        shards: usize,
        shard_connections_max: usize,
    ) -> Result<FdBudget, String> {
        assert!(shards > 0);
        let shard_count = shards as u64;
        let reserved = FDS_RESERVED_PROCESS + FDS_RESERVED_PER_SHARD * shard_count;
        let available = limit.saturating_sub(reserved);
        let connections_per_shard = (available / CONNECTIONS_FD_SHARE_DIVISOR / shard_count)
            .min(shard_connections_max as u64);
        let sealed_files_per_shard =
            (available / SEALED_SEGMENT_FILES_FD_SHARE_DIVISOR / shard_count)
                .min(storage::SEALED_SEGMENT_FILES_DEFAULT as u64)
                .max(1);
        let partitions_max = available
            .saturating_sub((connections_per_shard + sealed_files_per_shard) * shard_count);
        if partitions_max < PARTITION_FDS_PER_SHARD_MIN * shard_count {
            return Err(format!(
                "the file descriptor limit {limit} is too low for {shards} shards: raise it \
                 (ulimit -n, LimitNOFILE) to at least {}",
                reserved + 2 * PARTITION_FDS_PER_SHARD_MIN * shard_count
            ));
        }
        let budget = FdBudget {
            limit,
            connections_per_shard: connections_per_shard as usize,
            sealed_segment_files_per_shard: sealed_files_per_shard as usize,
            partitions_max,
        };
        assert!(budget.descriptors_max(shards) <= limit);
        Ok(budget)
    }

    /// Most descriptors the budgeted parts and the reserve can hold together.
    fn descriptors_max(&self, shards: usize) -> u64 {
        let shard_count = shards as u64;
        let per_shard = FDS_RESERVED_PER_SHARD
            + self.connections_per_shard as u64
            + self.sealed_segment_files_per_shard as u64;
        FDS_RESERVED_PROCESS + per_shard * shard_count + self.partitions_max
    }

    /// A refusal message if `partitions` partitions in all would not fit.
    pub fn check_partitions(&self, partitions: u64) -> Result<(), String> {
        if partitions <= self.partitions_max {
            return Ok(());
        }
        Err(format!(
            "the broker's file descriptor limit ({}) leaves room for {} partitions in all, one \
             descriptor each; this needs {partitions}",
            self.limit, self.partitions_max
        ))
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the new soft limit. The soft
/// limit is often 1,024 while the hard one is far higher; every partition holds a descriptor.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit the call fills in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit the call only reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_limit_is_divided_and_a_tiny_one_refused() {
        let budget = FdBudget::new(1024, 2, 10_000).unwrap();
        assert_eq!(budget.connections_per_shard, 120);
        assert_eq!(budget.sealed_segment_files_per_shard, 60);
        assert_eq!(budget.partitions_max, 600);
        assert!(budget.check_partitions(600).is_ok());
        assert!(budget.check_partitions(601).is_err());
        assert!(FdBudget::new(200, 2, 10_000).is_err());
        assert!(FdBudget::new(0, 1, 10_000).is_err());
    }

    #[test]
    fn a_large_limit_keeps_the_fixed_maximums() {
        let budget = FdBudget::new(1 << 20, 4, 10_000).unwrap();
        assert_eq!(budget.connections_per_shard, 10_000);
        assert_eq!(
            budget.sealed_segment_files_per_shard,
            storage::SEALED_SEGMENT_FILES_DEFAULT
        );
        assert!(budget.descriptors_max(4) <= 1 << 20);
    }
}
