//! One broker's view of the metadata quorum, in node ids and wall-clock times, as DescribeQuorum
//! reports it. Taken on the controller shard (where the quorum runs) and sent to the shard that
//! answers; archivable like every cross-shard reply.

/// The metadata quorum as this broker sees it.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct QuorumView {
    /// The leader's node id; -1 while none is known.
    pub leader_id: i32,
    /// The Raft term (DescribeQuorum's leader epoch).
    pub term: u64,
    /// The commit index this broker knows (the metadata log's high watermark).
    pub commit_index: u64,
    /// Every voter, by node id.
    pub voters: Vec<VoterView>,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct VoterView {
    pub node_id: i32,
    /// Its controller listener.
    pub host: String,
    pub port: u16,
    /// The index of its last log entry, where this broker knows it: its own always, the
    /// others' only while it leads (their matched index).
    pub log_end: Option<u64>,
    /// When this broker last heard from it (ms since the epoch); now for this broker itself.
    pub last_heard_ms: Option<i64>,
}
