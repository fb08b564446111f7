//! One consumer group's membership state machine (Kafka's classic group protocol).
//!
//! ```text
//!            join                      all joined / deadline          leader's SyncGroup
//!   Empty ─────────► PreparingRebalance ─────────► CompletingRebalance ─────────► Stable
//!     ▲                ▲  ▲                              │                         │
//!     │ last member    │  └──────── join, leave, expiry ─┘                         │
//!     └── leaves ──────┴──────────────────── join, leave, expiry ──────────────────┘
//! ```
//!
//! All methods take the current time, so tests drive the clock. JoinGroup and SyncGroup calls
//! that must wait park a oneshot sender in their member; completing the phase answers them all.
//! Pure state: no I/O. The coordinator persists what must survive a restart (committed offsets,
//! the generation) around these calls.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;

use super::store::CommittedOffset;

mod join;
mod membership;
mod sync;
#[cfg(test)]
mod tests;

/// Members one group may have; a join beyond this gets GROUP_MAX_SIZE_REACHED (Kafka's
/// `group.max.size` is unbounded by default; a bound keeps one group from exhausting memory).
pub const GROUP_MEMBERS_MAX: usize = 1000;

/// Bytes of protocol names and metadata one member may list in JoinGroup (all its protocols
/// together), and of one assignment in SyncGroup; INVALID_REQUEST beyond. Real consumers send a
/// few KiB: their subscription and owned partitions.
pub const MEMBER_METADATA_BYTES_MAX: usize = 1 << 20;

/// Bytes of protocol metadata one group keeps over all its members; a join beyond it gets
/// GROUP_MAX_SIZE_REACHED. Kafka stores a group's metadata in one record of at most 1 MiB by
/// default; this bound is looser but keeps `GROUP_MEMBERS_MAX` members of
/// `MEMBER_METADATA_BYTES_MAX` each (1 GiB) out of reach.
pub const GROUP_METADATA_BYTES_MAX: usize = 64 << 20;

const _: () = assert!(MEMBER_METADATA_BYTES_MAX <= GROUP_METADATA_BYTES_MAX);

/// Longest a new member waits in its first join before it is removed, whatever its session
/// timeout (Kafka's `GroupCoordinator.NewMemberJoinTimeoutMs`): a client that abandons its
/// JoinGroup does not hold its metadata until a rebalance timeout it chose.
pub const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// Coordinator settings that shape rebalances.
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    /// Kafka's `group.initial.rebalance.delay.ms`: a group leaving Empty waits this long for
    /// more members before its first generation.
    pub initial_rebalance_delay: Duration,
    pub session_timeout_min: Duration,
    pub session_timeout_max: Duration,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(3000),
            session_timeout_min: Duration::from_millis(6000),
            session_timeout_max: Duration::from_millis(1_800_000),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct JoinResult {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only for the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinResult {
    fn error(error: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: Some(error),
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinResult::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// A JoinGroup request's fields.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct JoinArgs {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: an unknown member first gets MEMBER_ID_REQUIRED with its id.
    pub require_known_member_id: bool,
}

pub enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    last_heartbeat: Instant,
    /// True until the member's first join completes: until then its metadata is dropped when
    /// the join lapses (see [`Member::first_join_lapsed`]).
    is_new: bool,
    join_waiter: Option<oneshot::Sender<JoinResult>>,
    sync_waiter: Option<oneshot::Sender<SyncResult>>,
}

impl Member {
    /// Whether this member is waiting in its first join for longer than its session timeout (or
    /// [`NEW_MEMBER_JOIN_TIMEOUT`]) since it last joined.
    fn first_join_lapsed(&self, now: Instant) -> bool {
        let timeout = self.session_timeout.min(NEW_MEMBER_JOIN_TIMEOUT);
        self.is_new && self.join_waiter.is_some() && self.last_heartbeat + timeout < now
    }

    /// This member's metadata for `protocol`.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, until they join or expire.
    pending: HashMap<String, Instant>,
    /// group.instance.id → member id.
    static_members: HashMap<String, String>,
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    rebalance_deadline: Option<Instant>,
    initial_delay_until: Option<Instant>,
    rebalance_started: Option<Instant>,
}

impl Group {
    pub fn new(id: String) -> Group {
        Group {
            id,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            offsets: BTreeMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            rebalance_started: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    fn remove_member(&mut self, member_id: &str) {
        if let Some(member) = self.members.remove(member_id) {
            if let Some(instance) = &member.instance_id {
                if self
                    .static_members
                    .get(instance)
                    .is_some_and(|id| id == member_id)
                {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
    }

    fn become_empty(&mut self) {
        self.state = GroupState::Empty;
        self.protocol = None;
        self.leader = None;
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
    }

    /// Checks that a request comes from a current member of this generation.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id {
            if self
                .static_members
                .get(instance)
                .is_some_and(|id| id != member_id)
            {
                return Err(ResponseError::FencedInstanceId);
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Bytes of protocol metadata the members hold.
    #[cfg(test)]
    fn metadata_bytes(&self) -> usize {
        self.members
            .values()
            .map(|m| protocols_bytes(&m.protocols))
            .sum()
    }

    /// Whether an OffsetCommit with these fields may store offsets.
    pub fn check_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if generation < 0 && member_id.is_empty() {
            // A commit from outside the group protocol (assign() consumers, admin tools).
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        self.check_member(member_id, instance_id, generation)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }
}

/// Bytes of protocol names and metadata a member lists.
fn protocols_bytes(protocols: &[(String, Bytes)]) -> usize {
    protocols.iter().map(|(name, m)| name.len() + m.len()).sum()
}
