//! The sync phase: SyncGroup hands each member the leader's assignment.

use super::*;

impl Group {
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

    pub(super) fn sync_result_for(&self, member_id: &str) -> SyncResult {
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
}
