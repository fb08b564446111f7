//! Which groups a shard's table holds: those of the `__consumer_offsets` partitions this broker
//! leads, each replayed from its log when the broker becomes its leader.
//!
//! `Shard::apply_metadata` hands over the led partitions ([`lead_changed`]). A partition newly
//! led is marked loading, its log is replayed into a table of its own, and the result goes into
//! the shard's table only if the partition is still led by the same change (a later role change
//! discards it). Until then every request for its groups gets COORDINATOR_LOAD_IN_PROGRESS and
//! nothing is appended for them, so a replay never races an append. A partition no longer led
//! takes its groups out of the table; their members are sent elsewhere by NOT_COORDINATOR.

use std::collections::HashMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;

use super::group::Group;
use super::store::{self, GroupRecord};
use super::{GroupCoordinator, GroupHost};

/// Bytes read at a time while replaying `__consumer_offsets`.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// The state of one led `__consumer_offsets` partition on its owner shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lead {
    /// Being replayed by the replay numbered so.
    Loading(u64),
    /// Its groups are in the table.
    Loaded,
}

impl GroupCoordinator {
    /// Ok if the groups of `group`'s partition are in the table; COORDINATOR_LOAD_IN_PROGRESS
    /// while they are replayed, NOT_COORDINATOR if this shard does not lead the partition (the
    /// routing's snapshot is newer or older than this shard's).
    pub fn check_loaded(&self, group: &str) -> Result<(), ResponseError> {
        match self.led.borrow().get(&store::offsets_partition(group)) {
            Some(Lead::Loaded) => Ok(()),
            Some(Lead::Loading(_)) => Err(ResponseError::CoordinatorLoadInProgress),
            None => Err(ResponseError::NotCoordinator),
        }
    }

    /// Records that this shard leads exactly `led`: drops the groups of partitions no longer led
    /// and returns the newly led ones, marked loading, with the number of their replay.
    fn set_led(&self, led: &[i32]) -> Vec<(i32, u64)> {
        let mut states = self.led.borrow_mut();
        let dropped: Vec<i32> = (states.keys().copied())
            .filter(|partition| !led.contains(partition))
            .collect();
        for partition in &dropped {
            states.remove(partition);
        }
        if !dropped.is_empty() {
            let mut groups = self.groups.borrow_mut();
            groups.retain(|name, _| !dropped.contains(&store::offsets_partition(name)));
        }
        let mut started = Vec::new();
        for partition in led {
            if !states.contains_key(partition) {
                let number = self.loads_started.get() + 1;
                self.loads_started.set(number);
                states.insert(*partition, Lead::Loading(number));
                started.push((*partition, number));
            }
        }
        started
    }

    /// Installs the groups replayed by replay `number` of `partition`, unless a role change
    /// overtook it.
    fn finish_load(&self, partition: i32, number: u64, replayed: HashMap<String, Group>) -> bool {
        let mut states = self.led.borrow_mut();
        if states.get(&partition) != Some(&Lead::Loading(number)) {
            return false;
        }
        states.insert(partition, Lead::Loaded);
        self.groups.borrow_mut().extend(replayed);
        true
    }

    /// Forgets a failed replay: the partition's groups are not served until it is led anew.
    fn fail_load(&self, partition: i32, number: u64) {
        let mut states = self.led.borrow_mut();
        if states.get(&partition) == Some(&Lead::Loading(number)) {
            states.remove(&partition);
        }
    }
}

/// This shard now leads exactly the `__consumer_offsets` partitions `led` (each owned here and
/// open): replays the newly led ones, one after the other, and drops the groups of the others.
pub async fn lead_changed(host: &impl GroupHost, led: Vec<i32>) {
    for (partition, number) in host.groups().set_led(&led) {
        match replay_partition(host, partition).await {
            Ok(replayed) => {
                let count = replayed.len();
                if host.groups().finish_load(partition, number, replayed) {
                    log::info!(
                        "shard {}: loaded {count} groups of {}-{partition}",
                        host.shard_id(),
                        store::OFFSETS_TOPIC
                    );
                }
            }
            Err(error) => {
                log::error!(
                    "shard {}: replaying {}-{partition} failed: {error}",
                    host.shard_id(),
                    store::OFFSETS_TOPIC
                );
                host.groups().fail_load(partition, number);
            }
        }
    }
}

/// The groups stored in partition `partition` of `__consumer_offsets`, replayed from its log.
async fn replay_partition(
    host: &impl GroupHost,
    partition: i32,
) -> Result<HashMap<String, Group>, storage::StorageError> {
    let mut groups = HashMap::new();
    let Some(state) = host.offsets_partition(partition) else {
        return Ok(groups);
    };
    let mut offset = state.log.log_start_offset();
    while offset < state.log.log_end_offset() {
        let bytes = state.log.read(offset, REPLAY_READ_BYTES).await?;
        offset = next_offset_after(&bytes);
        for record in store::decode_batches(bytes) {
            replay(&mut groups, record);
        }
        glommio::yield_if_needed().await;
    }
    Ok(groups)
}

fn replay(groups: &mut HashMap<String, Group>, record: GroupRecord) {
    match record {
        GroupRecord::Offset {
            group,
            topic,
            partition,
            value,
        } => match value {
            Some(value) => {
                groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group))
                    .offsets
                    .insert((topic, partition), value);
            }
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    g.offsets.remove(&(topic, partition));
                }
            }
        },
        GroupRecord::Group { group, value } => match value {
            Some((generation, protocol_type)) => {
                let g = groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group));
                g.generation = generation;
                g.protocol_type = Some(protocol_type);
            }
            None => {
                groups.remove(&group);
            }
        },
    }
}

/// The offset after the last batch in `bytes` (whole stored batches).
fn next_offset_after(bytes: &Bytes) -> i64 {
    let mut rest = &bytes[..];
    let mut next = -1;
    while !rest.is_empty() {
        let header = record_batch::BatchHeader::parse(rest).expect("storage returns whole batches");
        next = header.next_offset();
        rest = &rest[header.total_bytes()..];
    }
    assert!(next >= 0, "a read below the log end returns whole batches");
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A group name stored in `partition` of `__consumer_offsets`.
    fn group_in(partition: i32) -> String {
        (0..)
            .map(|i| format!("g{i}"))
            .find(|name| store::offsets_partition(name) == partition)
            .unwrap()
    }

    #[test]
    fn groups_are_served_only_once_their_replay_is_installed() {
        let coordinator = GroupCoordinator::default();
        let (a, b) = (group_in(3), group_in(7));
        assert_eq!(
            coordinator.check_loaded(&a),
            Err(ResponseError::NotCoordinator)
        );
        let started = coordinator.set_led(&[3, 7]);
        assert_eq!(started.len(), 2);
        assert_eq!(
            coordinator.check_loaded(&a),
            Err(ResponseError::CoordinatorLoadInProgress)
        );
        // Leading the same partitions again starts no second replay.
        assert!(coordinator.set_led(&[3, 7]).is_empty());
        for (partition, number) in started {
            let name = group_in(partition);
            let replayed = HashMap::from([(name.clone(), Group::new(name))]);
            assert!(coordinator.finish_load(partition, number, replayed));
        }
        assert_eq!(coordinator.check_loaded(&a), Ok(()));
        assert_eq!(coordinator.group_names().len(), 2);
        // Partition 7 is no longer led: its group leaves the table, partition 3's stays.
        assert!(coordinator.set_led(&[3]).is_empty());
        assert_eq!(coordinator.group_names(), vec![a.clone()]);
        assert_eq!(
            coordinator.check_loaded(&b),
            Err(ResponseError::NotCoordinator)
        );
    }

    #[test]
    fn a_replay_overtaken_by_a_role_change_is_discarded() {
        let coordinator = GroupCoordinator::default();
        let name = group_in(5);
        let [(_, first)] = coordinator.set_led(&[5])[..] else {
            panic!("one replay starts")
        };
        // Led, not led, led again before the first replay finished.
        coordinator.set_led(&[]);
        let [(_, second)] = coordinator.set_led(&[5])[..] else {
            panic!("one replay starts")
        };
        let stale = HashMap::from([(name.clone(), Group::new(name.clone()))]);
        assert!(!coordinator.finish_load(5, first, stale));
        assert!(coordinator.group_names().is_empty());
        assert_eq!(
            coordinator.check_loaded(&name),
            Err(ResponseError::CoordinatorLoadInProgress)
        );
        coordinator.fail_load(5, first);
        assert_eq!(
            coordinator.check_loaded(&name),
            Err(ResponseError::CoordinatorLoadInProgress)
        );
        coordinator.fail_load(5, second);
        assert_eq!(
            coordinator.check_loaded(&name),
            Err(ResponseError::NotCoordinator)
        );
    }
}
