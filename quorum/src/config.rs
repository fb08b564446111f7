//! What a node needs to know to join its quorum: its id, its controller address, the fixed voter
//! set (the `--controller-voters` syntax `id@host:port,...`), its directory and its timings.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

/// Voters in one quorum. Kafka's KRaft quorums have 3 or 5; more only slows every commit.
pub const VOTERS_MAX: usize = 15;

/// The longest cluster id the handshake carries (it is one length byte on the wire).
pub const CLUSTER_ID_BYTES_MAX: usize = 255;

/// One voter of the quorum: its Raft id (> 0) and the address its controller listener binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Voter {
    pub id: u64,
    pub address: SocketAddr,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VotersParseError {
    #[error("the voter list is empty")]
    Empty,
    #[error("more than {VOTERS_MAX} voters")]
    TooMany,
    #[error("voter `{0}` is not of the form id@host:port")]
    Syntax(String),
    #[error("voter `{0}` has an id that is not a positive integer")]
    BadId(String),
    #[error("voter `{0}` has an address that does not resolve to host:port")]
    BadAddress(String),
    #[error("voter id {0} appears twice")]
    DuplicateId(u64),
    #[error("address {0} appears twice")]
    DuplicateAddress(SocketAddr),
}

/// Parses `1@10.0.0.1:9093,2@10.0.0.2:9093,...` (`--controller-voters`). Host names resolve once,
/// here, to their first address. Ids must be positive (Raft reserves 0 for "none") and distinct,
/// and so must addresses. Whitespace around entries is ignored.
pub fn parse_voters(text: &str) -> Result<Vec<Voter>, VotersParseError> {
    let entries: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(VotersParseError::Empty);
    }
    if entries.len() > VOTERS_MAX {
        return Err(VotersParseError::TooMany);
    }
    let mut voters: Vec<Voter> = Vec::with_capacity(entries.len());
    for entry in entries {
        let voter = parse_voter(entry)?;
        if voters.iter().any(|known| known.id == voter.id) {
            return Err(VotersParseError::DuplicateId(voter.id));
        }
        if voters.iter().any(|known| known.address == voter.address) {
            return Err(VotersParseError::DuplicateAddress(voter.address));
        }
        voters.push(voter);
    }
    Ok(voters)
}

fn parse_voter(entry: &str) -> Result<Voter, VotersParseError> {
    let (id, address) = entry
        .split_once('@')
        .ok_or_else(|| VotersParseError::Syntax(entry.to_string()))?;
    if address.is_empty() || !address.contains(':') {
        return Err(VotersParseError::Syntax(entry.to_string()));
    }
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| VotersParseError::BadId(entry.to_string()))?;
    if id == 0 {
        return Err(VotersParseError::BadId(entry.to_string()));
    }
    let address = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addresses| addresses.next())
        .ok_or_else(|| VotersParseError::BadAddress(entry.to_string()))?;
    Ok(Voter { id, address })
}

/// A node's configuration. `Config::new` fills the timings with the defaults below.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's Raft id; it must be one of `voters`.
    pub node_id: u64,
    /// Every voter, this node included. Fixed for the life of the directory.
    pub voters: Vec<Voter>,
    /// Where this node's controller listener binds (usually its own entry of `voters`).
    pub listen: SocketAddr,
    /// The Raft directory: log files, hard state, snapshot.
    pub dir: PathBuf,
    /// Carried in every handshake: nodes of another cluster are refused.
    pub cluster_id: String,
    pub tick: Duration,
    /// Ticks without a heartbeat before a follower campaigns (raft-rs randomises it up to twice).
    pub election_ticks: usize,
    pub heartbeat_ticks: usize,
    /// Applied entries between two snapshots (then older log entries are dropped).
    pub snapshot_every: u64,
    /// How long `propose` waits for its entry to be applied before giving up (retriable).
    pub propose_timeout: Duration,
}

pub const TICK_DEFAULT: Duration = Duration::from_millis(100);
pub const ELECTION_TICKS_DEFAULT: usize = 10;
pub const HEARTBEAT_TICKS_DEFAULT: usize = 1;
pub const SNAPSHOT_EVERY_DEFAULT: u64 = 1_000;
pub const PROPOSE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("node id {0} is not one of the voters")]
    NotAVoter(u64),
    #[error("the cluster id is empty or longer than {CLUSTER_ID_BYTES_MAX} bytes")]
    BadClusterId,
    #[error("heartbeat ticks must be at least 1 and fewer than election ticks")]
    BadTicks,
    #[error("snapshot_every must be at least 1")]
    BadSnapshotEvery,
    #[error(transparent)]
    Voters(#[from] VotersParseError),
}

impl Config {
    /// A configuration with default timings; `listen` is this node's entry in `voters`.
    pub fn new(
        node_id: u64,
        voters: Vec<Voter>,
        dir: PathBuf,
        cluster_id: &str,
    ) -> Result<Config, ConfigError> {
        let listen = voters
            .iter()
            .find(|voter| voter.id == node_id)
            .map(|voter| voter.address)
            .ok_or(ConfigError::NotAVoter(node_id))?;
        let config = Config {
            node_id,
            voters,
            listen,
            dir,
            cluster_id: cluster_id.to_string(),
            tick: TICK_DEFAULT,
            election_ticks: ELECTION_TICKS_DEFAULT,
            heartbeat_ticks: HEARTBEAT_TICKS_DEFAULT,
            snapshot_every: SNAPSHOT_EVERY_DEFAULT,
            propose_timeout: PROPOSE_TIMEOUT_DEFAULT,
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.voters.is_empty() {
            return Err(VotersParseError::Empty.into());
        }
        if self.voters.len() > VOTERS_MAX {
            return Err(VotersParseError::TooMany.into());
        }
        if !self.voters.iter().any(|voter| voter.id == self.node_id) {
            return Err(ConfigError::NotAVoter(self.node_id));
        }
        if self.cluster_id.is_empty() || self.cluster_id.len() > CLUSTER_ID_BYTES_MAX {
            return Err(ConfigError::BadClusterId);
        }
        if self.heartbeat_ticks == 0 || self.heartbeat_ticks >= self.election_ticks {
            return Err(ConfigError::BadTicks);
        }
        if self.snapshot_every == 0 {
            return Err(ConfigError::BadSnapshotEvery);
        }
        Ok(())
    }

    pub fn voter_ids(&self) -> Vec<u64> {
        self.voters.iter().map(|voter| voter.id).collect()
    }
}
