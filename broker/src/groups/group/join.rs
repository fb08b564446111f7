//! The join phase: JoinGroup admission (new, pending and static members), the rebalance it
//! starts, and the answers once every member has joined or the deadline passed.

use super::*;

impl Group {
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

    pub(super) fn check_join(
        &self,
        args: &JoinArgs,
        config: &GroupConfig,
    ) -> Option<ResponseError> {
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

    pub(super) fn join_unknown(
        &mut self,
        mut args: JoinArgs,
        now: Instant,
        config: &GroupConfig,
    ) -> Reply<JoinResult> {
        let new_id = format!(
            "{}-{}",
            args.client_id,
            crate::cluster::metadata::random_uuid().simple()
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
    pub(super) fn replace_static_member(
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

    pub(super) fn add_member_and_rebalance(
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

    pub(super) fn park_join(&mut self, member_id: &str) -> oneshot::Receiver<JoinResult> {
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
    pub(super) fn prepare_rebalance(&mut self, now: Instant, config: &GroupConfig) {
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

    pub(super) fn join_result_for(&self, member_id: &str) -> JoinResult {
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
    pub(super) fn select_protocol(&self) -> String {
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
}
