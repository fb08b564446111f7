//! Staying a member: heartbeats, leaving, and the timer that expires silent members.

use super::*;

impl Group {
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

    pub(super) fn after_departure(&mut self, now: Instant, config: &GroupConfig) {
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
}
