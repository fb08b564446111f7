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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

#[derive(Debug, Clone, Default, PartialEq)]
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

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncResult {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// A JoinGroup request's fields.
#[derive(Debug, Clone)]
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

    pub fn join(
        &mut self,
        args: JoinArgs,
        now: Instant,
        config: &GroupConfig,
    ) -> Reply<JoinResult> {
        if let Some(error) = self.check_join(&args, config) {
            return Reply::Now(JoinResult::error(error, &args.member_id));
        }
        if args.member_id.is_empty() {
            return self.join_unknown(args, now, config);
        }
        if let Some(instance) = &args.instance_id {
            if self
                .static_members
                .get(instance)
                .is_some_and(|id| *id != args.member_id)
            {
                return Reply::Now(JoinResult::error(
                    ResponseError::FencedInstanceId,
                    &args.member_id,
                ));
            }
        }
        if self.pending.remove(&args.member_id).is_some() {
            return self.add_member_and_rebalance(args, now, config);
        }
        let Some(member) = self.members.get_mut(&args.member_id) else {
            return Reply::Now(JoinResult::error(
                ResponseError::UnknownMemberId,
                &args.member_id,
            ));
        };
        member.last_heartbeat = now;
        let unchanged = member.protocols == args.protocols;
        member.protocols = args.protocols;
        member.session_timeout = args.session_timeout;
        member.rebalance_timeout = args.rebalance_timeout;
        let is_leader = self.leader.as_deref() == Some(args.member_id.as_str());
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance if unchanged && !is_leader => {
                Reply::Now(self.join_result_for(&args.member_id))
            }
            _ => {
                let receiver = self.park_join(&args.member_id);
                self.prepare_rebalance(now, config);
                self.try_complete_join(now);
                Reply::Later(receiver)
            }
        }
    }

    fn check_join(&self, args: &JoinArgs, config: &GroupConfig) -> Option<ResponseError> {
        if args.session_timeout < config.session_timeout_min
            || args.session_timeout > config.session_timeout_max
        {
            return Some(ResponseError::InvalidSessionTimeout);
        }
        if args.protocol_type.is_empty() || args.protocols.is_empty() {
            return Some(ResponseError::InconsistentGroupProtocol);
        }
        if protocols_bytes(&args.protocols) > MEMBER_METADATA_BYTES_MAX {
            return Some(ResponseError::InvalidRequest);
        }
        let others_bytes: usize = self
            .members
            .values()
            .filter(|m| m.id != args.member_id)
            .map(|m| protocols_bytes(&m.protocols))
            .sum();
        if others_bytes + protocols_bytes(&args.protocols) > GROUP_METADATA_BYTES_MAX {
            return Some(ResponseError::GroupMaxSizeReached);
        }
        if !self.is_empty() {
            if self
                .protocol_type
                .as_deref()
                .is_some_and(|t| t != args.protocol_type)
            {
                return Some(ResponseError::InconsistentGroupProtocol);
            }
            let others_support = |name: &str| {
                self.members
                    .values()
                    .filter(|m| m.id != args.member_id)
                    .all(|m| m.protocols.iter().any(|(p, _)| p == name))
            };
            if !args.protocols.iter().any(|(name, _)| others_support(name)) {
                return Some(ResponseError::InconsistentGroupProtocol);
            }
        }
        None
    }

    fn join_unknown(
        &mut self,
        mut args: JoinArgs,
        now: Instant,
        config: &GroupConfig,
    ) -> Reply<JoinResult> {
        let new_id = format!(
            "{}-{}",
            args.client_id,
            crate::metadata::random_uuid().simple()
        );
        if let Some(instance) = args.instance_id.clone() {
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(old_id, new_id, args, now, config);
            }
            args.member_id = new_id;
            return self.add_member_and_rebalance(args, now, config);
        }
        if args.require_known_member_id {
            if self.members.len() + self.pending.len() >= GROUP_MEMBERS_MAX {
                return Reply::Now(JoinResult::error(ResponseError::GroupMaxSizeReached, ""));
            }
            self.pending
                .insert(new_id.clone(), now + args.session_timeout);
            return Reply::Now(JoinResult::error(ResponseError::MemberIdRequired, &new_id));
        }
        args.member_id = new_id;
        self.add_member_and_rebalance(args, now, config)
    }

    /// A static member rejoining under a new member id takes the old member's place; in a stable
    /// group with unchanged protocols it keeps its assignment and nobody rebalances.
    fn replace_static_member(
        &mut self,
        old_id: String,
        new_id: String,
        args: JoinArgs,
        now: Instant,
        config: &GroupConfig,
    ) -> Reply<JoinResult> {
        let mut member = self
            .members
            .remove(&old_id)
            .expect("static members map to members");
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(JoinResult::error(ResponseError::FencedInstanceId, &old_id));
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(SyncResult {
                error: Some(ResponseError::FencedInstanceId),
                ..SyncResult::default()
            });
        }
        let unchanged = member.protocols == args.protocols;
        member.id = new_id.clone();
        member.protocols = args.protocols;
        member.last_heartbeat = now;
        member.session_timeout = args.session_timeout;
        member.rebalance_timeout = args.rebalance_timeout;
        self.members.insert(new_id.clone(), member);
        self.static_members
            .insert(args.instance_id.clone().expect("static"), new_id.clone());
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        if self.state == GroupState::Stable && unchanged {
            return Reply::Now(self.join_result_for(&new_id));
        }
        let receiver = self.park_join(&new_id);
        self.prepare_rebalance(now, config);
        self.try_complete_join(now);
        Reply::Later(receiver)
    }

    fn add_member_and_rebalance(
        &mut self,
        args: JoinArgs,
        now: Instant,
        config: &GroupConfig,
    ) -> Reply<JoinResult> {
        if self.members.len() >= GROUP_MEMBERS_MAX {
            return Reply::Now(JoinResult::error(
                ResponseError::GroupMaxSizeReached,
                &args.member_id,
            ));
        }
        if self.members.is_empty() {
            self.protocol_type = Some(args.protocol_type.clone());
        }
        if let Some(instance) = &args.instance_id {
            self.static_members
                .insert(instance.clone(), args.member_id.clone());
        }
        let id = args.member_id.clone();
        self.members.insert(
            id.clone(),
            Member {
                id: id.clone(),
                instance_id: args.instance_id,
                client_id: args.client_id,
                client_host: args.client_host,
                session_timeout: args.session_timeout,
                rebalance_timeout: args.rebalance_timeout,
                protocols: args.protocols,
                assignment: Bytes::new(),
                last_heartbeat: now,
                is_new: true,
                join_waiter: None,
                sync_waiter: None,
            },
        );
        let receiver = self.park_join(&id);
        self.prepare_rebalance(now, config);
        self.try_complete_join(now);
        Reply::Later(receiver)
    }

    fn park_join(&mut self, member_id: &str) -> oneshot::Receiver<JoinResult> {
        let (sender, receiver) = oneshot::channel();
        let member = self
            .members
            .get_mut(member_id)
            .expect("parked members exist");
        // A second JoinGroup from the same member replaces the first (its sender is dropped).
        member.join_waiter = Some(sender);
        receiver
    }

    /// Moves to PreparingRebalance (or extends the initial delay while it lasts).
    fn prepare_rebalance(&mut self, now: Instant, config: &GroupConfig) {
        let rebalance_timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        match self.state {
            GroupState::PreparingRebalance => {
                if let (Some(until), Some(started)) =
                    (self.initial_delay_until, self.rebalance_started)
                {
                    if now < until {
                        let extended =
                            (now + config.initial_rebalance_delay).min(started + rebalance_timeout);
                        self.initial_delay_until = Some(extended);
                        self.rebalance_deadline =
                            Some(extended.max(self.rebalance_deadline.unwrap_or(extended)));
                    }
                }
                return;
            }
            GroupState::CompletingRebalance => {
                for member in self.members.values_mut() {
                    member.assignment = Bytes::new();
                    if let Some(waiter) = member.sync_waiter.take() {
                        let error = Some(ResponseError::RebalanceInProgress);
                        let _ = waiter.send(SyncResult {
                            error,
                            ..SyncResult::default()
                        });
                    }
                }
            }
            GroupState::Empty => {
                let delay = config.initial_rebalance_delay.min(rebalance_timeout);
                self.initial_delay_until = Some(now + delay);
            }
            GroupState::Stable => {}
        }
        self.state = GroupState::PreparingRebalance;
        self.rebalance_started = Some(now);
        let deadline = now + rebalance_timeout;
        self.rebalance_deadline = Some(deadline.max(self.initial_delay_until.unwrap_or(now)));
    }

    /// Completes the join phase once every member has rejoined (after any initial delay) or the
    /// rebalance deadline passed; members that did not rejoin by then are dropped.
    pub fn try_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let deadline_passed = self.rebalance_deadline.is_some_and(|d| now >= d);
        let delay_over = self.initial_delay_until.is_none_or(|until| now >= until);
        let all_joined =
            self.pending.is_empty() && self.members.values().all(|m| m.join_waiter.is_some());
        if !(deadline_passed || (all_joined && delay_over)) {
            return;
        }
        let absent: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in absent {
            self.remove_member(&id);
        }
        self.pending.clear();
        self.initial_delay_until = None;
        self.rebalance_deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.become_empty();
            return;
        }
        self.protocol = Some(self.select_protocol());
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let result = self.join_result_for(&id);
            let member = self.members.get_mut(&id).expect("listed");
            member.last_heartbeat = now;
            member.is_new = false;
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(result);
            }
        }
    }

    fn join_result_for(&self, member_id: &str) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: Some(protocol),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    /// The protocol every member supports that most members rank highest among those.
    fn select_protocol(&self) -> String {
        let common = |name: &str| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(p, _)| p == name))
        };
        let mut votes: Vec<(String, usize)> = Vec::new();
        for member in self.members.values() {
            if let Some((choice, _)) = member.protocols.iter().find(|(p, _)| common(p)) {
                match votes.iter_mut().find(|(name, _)| name == choice) {
                    Some((_, count)) => *count += 1,
                    None => votes.push((choice.clone(), 1)),
                }
            }
        }
        // max_by_key returns the last maximum; iterate reversed so ties go to the first voted.
        votes
            .iter()
            .rev()
            .max_by_key(|(_, count)| *count)
            .map(|(name, _)| name.clone())
            .expect("join checked a common protocol")
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

    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Reply<SyncResult> {
        let fail = |error| {
            Reply::Now(SyncResult {
                error: Some(error),
                ..SyncResult::default()
            })
        };
        if let Err(error) = self.check_member(member_id, instance_id, generation) {
            return fail(error);
        }
        if assignments
            .iter()
            .any(|(_, a)| a.len() > MEMBER_METADATA_BYTES_MAX)
        {
            return fail(ResponseError::InvalidRequest);
        }
        self.members
            .get_mut(member_id)
            .expect("checked")
            .last_heartbeat = now;
        match self.state {
            GroupState::Empty => fail(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            GroupState::Stable => Reply::Now(self.sync_result_for(member_id)),
            GroupState::CompletingRebalance => {
                if self.leader.as_deref() != Some(member_id) {
                    let (sender, receiver) = oneshot::channel();
                    self.members
                        .get_mut(member_id)
                        .expect("checked")
                        .sync_waiter = Some(sender);
                    return Reply::Later(receiver);
                }
                let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
                for member in self.members.values_mut() {
                    member.assignment = assignments.remove(&member.id).unwrap_or_default();
                }
                self.state = GroupState::Stable;
                let ids: Vec<String> = self.members.keys().cloned().collect();
                for id in ids {
                    let result = self.sync_result_for(&id);
                    if let Some(waiter) =
                        self.members.get_mut(&id).and_then(|m| m.sync_waiter.take())
                    {
                        let _ = waiter.send(result);
                    }
                }
                Reply::Now(self.sync_result_for(member_id))
            }
        }
    }

    fn sync_result_for(&self, member_id: &str) -> SyncResult {
        SyncResult {
            error: None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|m| m.assignment.clone())
                .unwrap_or_default(),
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Empty {
            return Some(ResponseError::UnknownMemberId);
        }
        if let Err(error) = self.check_member(member_id, instance_id, generation) {
            return Some(error);
        }
        self.members
            .get_mut(member_id)
            .expect("checked")
            .last_heartbeat = now;
        (self.state == GroupState::PreparingRebalance).then_some(ResponseError::RebalanceInProgress)
    }

    /// Removes a member (by member id, or by instance id for a static member).
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
        config: &GroupConfig,
    ) -> Option<ResponseError> {
        let id = match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                Some(id) if member_id.is_empty() || id == member_id => id.clone(),
                Some(_) => return Some(ResponseError::FencedInstanceId),
                None => return Some(ResponseError::UnknownMemberId),
            },
            None => member_id.to_string(),
        };
        if self.pending.remove(&id).is_some() {
            return None;
        }
        if !self.members.contains_key(&id) {
            return Some(ResponseError::UnknownMemberId);
        }
        self.remove_member(&id);
        self.after_departure(now, config);
        None
    }

    fn after_departure(&mut self, now: Instant, config: &GroupConfig) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.generation += 1;
                    self.become_empty();
                } else {
                    self.prepare_rebalance(now, config);
                }
            }
            GroupState::PreparingRebalance => self.try_complete_join(now),
            GroupState::Empty => {}
        }
    }

    /// Expires members whose session lapsed and pending member ids that were never used, and
    /// completes a join phase whose deadline passed. Returns true when members were expired.
    pub fn tick(&mut self, now: Instant, config: &GroupConfig) -> bool {
        self.pending.retain(|_, expiry| *expiry > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                let session_lapsed = m.join_waiter.is_none()
                    && m.sync_waiter.is_none()
                    && m.last_heartbeat + m.session_timeout < now;
                session_lapsed || m.first_join_lapsed(now)
            })
            .map(|m| m.id.clone())
            .collect();
        for id in &expired {
            log::info!("group {}: member {id} expired", self.id);
            if let Some(waiter) = self.members.get_mut(id).and_then(|m| m.join_waiter.take()) {
                let _ = waiter.send(JoinResult::error(ResponseError::UnknownMemberId, id));
            }
            self.remove_member(id);
        }
        if !expired.is_empty() {
            self.after_departure(now, config);
        }
        self.try_complete_join(now);
        !expired.is_empty()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay: Duration::from_millis(100),
            ..GroupConfig::default()
        }
    }

    fn args(member_id: &str, client: &str) -> JoinArgs {
        JoinArgs {
            member_id: member_id.to_string(),
            instance_id: None,
            client_id: client.to_string(),
            client_host: "/127.0.0.1".to_string(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".to_string(),
            protocols: vec![
                ("range".to_string(), Bytes::from_static(b"r")),
                ("roundrobin".to_string(), Bytes::from_static(b"rr")),
            ],
            require_known_member_id: true,
        }
    }

    fn now_result<T>(reply: Reply<T>) -> T {
        match reply {
            Reply::Now(result) => result,
            Reply::Later(_) => panic!("expected an immediate answer"),
        }
    }

    fn later<T>(reply: Reply<T>) -> oneshot::Receiver<T> {
        match reply {
            Reply::Later(receiver) => receiver,
            Reply::Now(_) => panic!("expected to wait"),
        }
    }

    fn ready<T>(receiver: &mut oneshot::Receiver<T>) -> T {
        receiver
            .try_recv()
            .expect("not cancelled")
            .expect("answered")
    }

    /// Handshake then join; returns the member id and the parked join.
    fn join_new(
        group: &mut Group,
        client: &str,
        t: Instant,
    ) -> (String, oneshot::Receiver<JoinResult>) {
        let first = now_result(group.join(args("", client), t, &config()));
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        let id = first.member_id;
        let receiver = later(group.join(args(&id, client), t, &config()));
        (id, receiver)
    }

    #[test]
    fn two_members_join_sync_and_become_stable() {
        let t0 = Instant::now();
        let mut group = Group::new("g".into());
        let (a, mut join_a) = join_new(&mut group, "a", t0);
        let (b, mut join_b) = join_new(&mut group, "b", t0);
        assert_eq!(group.state, GroupState::PreparingRebalance);
        assert!(
            join_a.try_recv().unwrap().is_none(),
            "the initial delay holds the first generation"
        );
        group.tick(t0 + Duration::from_millis(150), &config());
        let (ra, rb) = (ready(&mut join_a), ready(&mut join_b));
        assert_eq!((ra.generation, rb.generation), (1, 1));
        assert_eq!(ra.protocol_name.as_deref(), Some("range"));
        let leader = ra.leader.clone();
        assert_eq!(rb.leader, leader);
        let (leader_id, follower_id) = if leader == a {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        let leader_result = if leader == a { &ra } else { &rb };
        assert_eq!(leader_result.members.len(), 2);
        let mut follower_sync = later(group.sync(&follower_id, None, 1, vec![], t0));
        let assignments = vec![
            (leader_id.clone(), Bytes::from_static(b"L")),
            (follower_id.clone(), Bytes::from_static(b"F")),
        ];
        let leader_sync = now_result(group.sync(&leader_id, None, 1, assignments, t0));
        assert_eq!(leader_sync.assignment, Bytes::from_static(b"L"));
        assert_eq!(
            ready(&mut follower_sync).assignment,
            Bytes::from_static(b"F")
        );
        assert_eq!(group.state, GroupState::Stable);
        assert_eq!(group.heartbeat(&follower_id, None, 1, t0), None);
        assert_eq!(
            group.heartbeat(&follower_id, None, 0, t0),
            Some(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            group.heartbeat("nobody", None, 1, t0),
            Some(ResponseError::UnknownMemberId)
        );
    }

    fn stable_pair(t0: Instant) -> (Group, String, String) {
        let mut group = Group::new("g".into());
        let (a, mut ja) = join_new(&mut group, "a", t0);
        let (b, mut jb) = join_new(&mut group, "b", t0);
        group.tick(t0 + Duration::from_millis(150), &config());
        let leader = ready(&mut ja).leader;
        ready(&mut jb);
        let follower = if leader == a { b.clone() } else { a.clone() };
        let _pending = group.sync(&follower, None, 1, vec![], t0);
        now_result(group.sync(&leader, None, 1, vec![], t0));
        assert_eq!(group.state, GroupState::Stable);
        (group, leader, follower)
    }

    #[test]
    fn expired_member_triggers_a_rebalance_without_it() {
        let t0 = Instant::now();
        let (mut group, leader, follower) = stable_pair(t0);
        let t1 = t0 + Duration::from_secs(8);
        assert_eq!(group.heartbeat(&leader, None, 1, t1), None);
        let t2 = t0 + Duration::from_secs(11);
        assert!(group.tick(t2, &config()), "the follower's session lapsed");
        assert!(!group.members.contains_key(&follower));
        assert_eq!(group.state, GroupState::PreparingRebalance);
        assert_eq!(
            group.heartbeat(&leader, None, 1, t2),
            Some(ResponseError::RebalanceInProgress)
        );
        let mut rejoin = later(group.join(args(&leader, "a"), t2, &config()));
        let result = ready(&mut rejoin);
        assert_eq!((result.generation, result.members.len()), (2, 1));
    }

    #[test]
    fn leaving_members_rebalance_and_the_last_one_empties_the_group() {
        let t0 = Instant::now();
        let (mut group, leader, follower) = stable_pair(t0);
        assert_eq!(group.leave(&follower, None, t0, &config()), None);
        assert_eq!(group.state, GroupState::PreparingRebalance);
        assert_eq!(
            group.leave(&follower, None, t0, &config()),
            Some(ResponseError::UnknownMemberId)
        );
        assert_eq!(group.leave(&leader, None, t0, &config()), None);
        assert_eq!(group.state, GroupState::Empty);
        assert!(
            group.check_commit("", None, -1).is_ok(),
            "an empty group takes simple commits"
        );
    }

    #[test]
    fn members_that_do_not_rejoin_are_dropped_at_the_deadline() {
        let t0 = Instant::now();
        let (mut group, leader, follower) = stable_pair(t0);
        let mut rejoin = later(group.join(args(&leader, "a"), t0, &config()));
        assert!(
            rejoin.try_recv().unwrap().is_none(),
            "waits for the follower"
        );
        assert_eq!(
            group.sync(&follower, None, 1, vec![], t0).now_error(),
            Some(ResponseError::RebalanceInProgress)
        );
        group.tick(t0 + Duration::from_secs(31), &config());
        let result = ready(&mut rejoin);
        assert_eq!(result.members.len(), 1);
        assert!(!group.members.contains_key(&follower));
    }

    #[test]
    fn static_member_rejoins_without_rebalance() {
        let t0 = Instant::now();
        let mut group = Group::new("g".into());
        let mut join = args("", "s");
        join.instance_id = Some("instance-1".into());
        let mut first = later(group.join(join.clone(), t0, &config()));
        group.tick(t0 + Duration::from_millis(150), &config());
        let result = ready(&mut first);
        now_result(group.sync(
            &result.member_id,
            Some("instance-1"),
            1,
            vec![(result.member_id.clone(), Bytes::from_static(b"A"))],
            t0,
        ));
        // The same instance comes back with no member id: same generation, same assignment.
        let again = now_result(group.join(join.clone(), t0, &config()));
        assert_eq!(again.generation, 1);
        assert_ne!(again.member_id, result.member_id);
        assert_eq!(group.state, GroupState::Stable);
        let sync = now_result(group.sync(&again.member_id, Some("instance-1"), 1, vec![], t0));
        assert_eq!(sync.assignment, Bytes::from_static(b"A"));
        // The old member id is fenced.
        assert_eq!(
            group.heartbeat(&result.member_id, Some("instance-1"), 1, t0),
            Some(ResponseError::FencedInstanceId)
        );
    }

    #[test]
    fn protocol_type_is_set_when_pending_members_join_together() {
        let t0 = Instant::now();
        let mut group = Group::new("g".into());
        let a = now_result(group.join(args("", "a"), t0, &config())).member_id;
        let b = now_result(group.join(args("", "b"), t0, &config())).member_id;
        let _ja = later(group.join(args(&a, "a"), t0, &config()));
        let _jb = later(group.join(args(&b, "b"), t0, &config()));
        assert_eq!(group.protocol_type.as_deref(), Some("consumer"));
    }

    #[test]
    fn join_errors() {
        let t0 = Instant::now();
        let mut group = Group::new("g".into());
        let mut short = args("", "a");
        short.session_timeout = Duration::from_millis(10);
        assert_eq!(
            now_result(group.join(short, t0, &config())).error,
            Some(ResponseError::InvalidSessionTimeout)
        );
        assert_eq!(
            now_result(group.join(args("ghost", "a"), t0, &config())).error,
            Some(ResponseError::UnknownMemberId)
        );
        let (_a, _join) = join_new(&mut group, "a", t0);
        let mut other = args("", "b");
        other.protocol_type = "connect".into();
        assert_eq!(
            now_result(group.join(other, t0, &config())).error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
        let mut disjoint = args("", "c");
        disjoint.protocols = vec![("sticky".into(), Bytes::new())];
        assert_eq!(
            now_result(group.join(disjoint, t0, &config())).error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
    }

    /// A member's JoinGroup with `bytes` of metadata split over two protocols.
    fn heavy_args(member_id: &str, client: &str, bytes: usize) -> JoinArgs {
        let mut heavy = args(member_id, client);
        let half = Bytes::from(vec![7u8; bytes / 2]);
        heavy.protocols = vec![("range".into(), half.clone()), ("roundrobin".into(), half)];
        heavy.rebalance_timeout = Duration::from_secs(86_400);
        heavy
    }

    #[test]
    fn an_abandoned_first_join_is_removed_after_its_session_timeout() {
        let t0 = Instant::now();
        let (mut group, leader, follower) = stable_pair(t0);
        let before = group.metadata_bytes();
        let first = now_result(group.join(heavy_args("", "c", 512 << 10), t0, &config()));
        let c = first.member_id;
        // c joins with a day of rebalance timeout; the old members keep heartbeating but never
        // rejoin, so the join phase cannot complete before that day is over.
        let mut join_c = later(group.join(heavy_args(&c, "c", 512 << 10), t0, &config()));
        assert!(group.metadata_bytes() >= before + (512 << 10));
        let session = args("", "c").session_timeout;
        for step in 1..=4 {
            let t = t0 + session / 4 * step;
            for id in [&leader, &follower] {
                let error = group.heartbeat(id, None, 1, t);
                assert_eq!(error, Some(ResponseError::RebalanceInProgress));
            }
            group.tick(t, &config());
            assert!(group.members.contains_key(&c), "still within its session");
        }
        group.tick(t0 + session + Duration::from_millis(1), &config());
        assert!(!group.members.contains_key(&c));
        assert_eq!(group.metadata_bytes(), before, "its metadata is freed");
        assert_eq!(
            ready(&mut join_c).error,
            Some(ResponseError::UnknownMemberId)
        );
        assert_eq!(group.members.len(), 2, "the members that heartbeat stay");
    }

    #[test]
    fn member_and_group_metadata_are_bounded() {
        let t0 = Instant::now();
        let mut group = Group::new("g".into());
        // Two protocols under the per-protocol size but over the per-member total.
        let too_big = heavy_args("", "a", MEMBER_METADATA_BYTES_MAX + 2);
        let result = now_result(group.join(too_big, t0, &config()));
        assert_eq!(result.error, Some(ResponseError::InvalidRequest));
        let member_bytes = MEMBER_METADATA_BYTES_MAX - 64;
        let fit = GROUP_METADATA_BYTES_MAX / member_bytes;
        let mut joins = Vec::new();
        for i in 0..fit {
            let id = now_result(group.join(args("", "m"), t0, &config())).member_id;
            let reply = group.join(
                heavy_args(&id, &format!("m{i}"), member_bytes),
                t0,
                &config(),
            );
            joins.push(later(reply));
        }
        let id = now_result(group.join(args("", "m"), t0, &config())).member_id;
        let last = group.join(heavy_args(&id, "last", member_bytes), t0, &config());
        assert_eq!(
            now_result(last).error,
            Some(ResponseError::GroupMaxSizeReached)
        );
        assert!(group.metadata_bytes() <= GROUP_METADATA_BYTES_MAX);
    }

    #[test]
    fn protocol_is_the_common_favourite() {
        let t0 = Instant::now();
        let mut group = Group::new("g".into());
        let mut a = args("", "a");
        a.protocols = vec![
            ("cooperative-sticky".into(), Bytes::new()),
            ("range".into(), Bytes::new()),
        ];
        a.require_known_member_id = false;
        let mut b = a.clone();
        b.protocols = vec![("range".into(), Bytes::new())];
        let mut ja = later(group.join(a, t0, &config()));
        let _jb = later(group.join(b, t0, &config()));
        group.tick(t0 + Duration::from_millis(150), &config());
        assert_eq!(ready(&mut ja).protocol_name.as_deref(), Some("range"));
    }

    impl<T> Reply<T> {
        fn now_error(self) -> Option<ResponseError>
        where
            T: HasError,
        {
            match self {
                Reply::Now(result) => result.error(),
                Reply::Later(_) => None,
            }
        }
    }

    trait HasError {
        fn error(&self) -> Option<ResponseError>;
    }

    impl HasError for SyncResult {
        fn error(&self) -> Option<ResponseError> {
            self.error
        }
    }
}
