//! What the fetchers of one shard share with it: the partitions each follows, their fetch
//! positions, and the narrow view of the shard a fetcher needs (`ReplicaHost`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use crate::cluster::metadata::MetadataSnapshot;
use crate::partition::Partition;

/// What a fetcher needs of the shard that owns the partitions it follows. `Shard` implements
/// it; nothing in `replication` reaches the shard otherwise.
pub trait ReplicaHost {
    /// The shard's current metadata snapshot.
    fn metadata(&self) -> Arc<MetadataSnapshot>;
    /// An open partition this shard owns.
    fn followed_partition(&self, topic: &str, partition: i32) -> Option<Rc<Partition>>;
}

/// The settings every fetcher of a broker shares, from the command line.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// This broker's node id: the Fetch's replica id.
    pub node_id: i32,
    pub shard_id: usize,
    pub wait_max_ms: u64,
    pub partition_bytes_max: usize,
    pub response_bytes_max: usize,
}

/// One partition this shard follows, as its snapshot assigns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Followed {
    pub topic: String,
    pub partition: i32,
    pub topic_id: uuid::Uuid,
    pub leader: i32,
    pub leader_epoch: i32,
}

impl Followed {
    /// Whether `snapshot` still assigns the partition as this entry was made: same topic id,
    /// same leader, same epoch. A fetch response is applied only then.
    pub fn is_current_in(&self, snapshot: &MetadataSnapshot) -> bool {
        let Some(topic) = snapshot.topics.get(&self.topic) else {
            return false;
        };
        let assignment = topic.assignment(self.partition);
        topic.id == self.topic_id
            && assignment
                .is_some_and(|a| a.leader == self.leader && a.leader_epoch == self.leader_epoch)
    }
}

/// The fetch position of one followed partition.
#[derive(Debug)]
pub struct FollowState {
    pub followed: Followed,
    /// Where the next fetch starts; None until the "before fetching" step
    /// (`truncation::fetch_start`) has run for this leader epoch.
    pub fetch_offset: Option<i64>,
    /// The offset of the fetch in flight, if this partition is in it.
    pub sent_offset: Option<i64>,
    /// Not fetched before this instant (after a refusal or a failed append).
    pub retry_at: Option<Instant>,
    /// The leader answered OFFSET_OUT_OF_RANGE: the next start also compares the local log end
    /// with the leader's log start.
    pub out_of_range: bool,
}

impl FollowState {
    fn new(followed: Followed) -> FollowState {
        FollowState {
            followed,
            fetch_offset: None,
            sent_offset: None,
            retry_at: None,
            out_of_range: false,
        }
    }

    /// Whether the partition may be started or fetched at `now`.
    pub fn is_due(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|at| at <= now)
    }
}

/// The partitions one fetcher follows from one leader, shared by the fetcher task and the
/// shard (which changes them in `Replication::set_followed`). Concurrency: one executor; no
/// borrow is held across an await.
pub struct FetcherState {
    pub leader: i32,
    /// By topic, then partition.
    pub partitions: RefCell<HashMap<String, HashMap<i32, FollowState>>>,
    /// Set when the shard follows nothing from this leader any more: the task ends.
    pub stopped: Cell<bool>,
    wake_sender: LocalSender<()>,
    wake_receiver: LocalReceiver<()>,
}

impl FetcherState {
    pub fn new(leader: i32) -> FetcherState {
        let (wake_sender, wake_receiver) = local_channel::new_bounded(1);
        FetcherState {
            leader,
            partitions: RefCell::new(HashMap::new()),
            stopped: Cell::new(false),
            wake_sender,
            wake_receiver,
        }
    }

    /// Makes `followed` the partitions of this fetcher: unchanged ones keep their position, new
    /// ones and those whose assignment changed (a new epoch) start again with the "before
    /// fetching" step, and the rest are dropped. Wakes the task.
    pub fn set_partitions(&self, followed: Vec<Followed>) {
        let mut partitions = self.partitions.borrow_mut();
        let mut kept: HashMap<String, HashMap<i32, FollowState>> = HashMap::new();
        for entry in followed {
            let old = partitions
                .get_mut(&entry.topic)
                .and_then(|topic| topic.remove(&entry.partition))
                .filter(|old| old.followed == entry);
            let state = old.unwrap_or_else(|| FollowState::new(entry.clone()));
            let topic = kept.entry(entry.topic).or_default();
            topic.insert(entry.partition, state);
        }
        *partitions = kept;
        drop(partitions);
        self.wake();
    }

    /// Ends the task after its current step.
    pub fn stop(&self) {
        self.stopped.set(true);
        self.partitions.borrow_mut().clear();
        self.wake();
    }

    fn wake(&self) {
        // Full means a wake-up is already pending, which is all that is needed.
        let _ = self.wake_sender.try_send(());
    }

    /// Waits until the partitions change or `timeout` passes.
    pub async fn wait_for_change(&self, timeout: Duration) {
        let woken = async {
            self.wake_receiver.recv().await;
        };
        futures_lite::future::or(woken, glommio::timer::sleep(timeout)).await;
    }

    /// Runs `change` on the state of a partition if it is still followed as `followed`.
    pub fn update<T>(
        &self,
        followed: &Followed,
        change: impl FnOnce(&mut FollowState) -> T,
    ) -> Option<T> {
        let mut partitions = self.partitions.borrow_mut();
        let state = partitions
            .get_mut(&followed.topic)?
            .get_mut(&followed.partition)?;
        (state.followed == *followed).then(|| change(state))
    }
}

/// Shared between the shard and one fetcher task.
pub type SharedFetcher = Rc<FetcherState>;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::cluster::metadata::{PartitionAssignment, TopicMeta};

    fn followed(partition: i32, leader_epoch: i32) -> Followed {
        Followed {
            topic: "t".to_string(),
            partition,
            topic_id: uuid::Uuid::from_u128(1),
            leader: 2,
            leader_epoch,
        }
    }

    fn snapshot(topic_id: u128, leader: i32, leader_epoch: i32) -> MetadataSnapshot {
        let mut assignment = PartitionAssignment::new(vec![leader, 1, 3]);
        assignment.leader_epoch = leader_epoch;
        let topic = TopicMeta::new(
            "t".to_string(),
            uuid::Uuid::from_u128(topic_id),
            vec![assignment],
            BTreeMap::new(),
        );
        MetadataSnapshot {
            version: 1,
            cluster_id: "c".to_string(),
            topics: BTreeMap::from([("t".to_string(), topic)]),
            brokers: BTreeMap::new(),
            broker_configs: BTreeMap::new(),
            broker_default_configs: BTreeMap::new(),
            producer_ids_end: 0,
        }
    }

    #[test]
    fn a_response_applies_only_while_the_snapshot_names_the_same_leader_epoch_and_topic() {
        let entry = followed(0, 4);
        assert!(entry.is_current_in(&snapshot(1, 2, 4)));
        assert!(!entry.is_current_in(&snapshot(1, 2, 5)), "a new epoch");
        assert!(!entry.is_current_in(&snapshot(1, 3, 4)), "another leader");
        assert!(
            !entry.is_current_in(&snapshot(9, 2, 4)),
            "a re-created topic"
        );
        assert!(
            !followed(1, 4).is_current_in(&snapshot(1, 2, 4)),
            "no such partition"
        );
        let mut deleted = snapshot(1, 2, 4);
        deleted.topics.clear();
        assert!(!entry.is_current_in(&deleted));
    }

    #[test]
    fn unchanged_partitions_keep_their_position_and_changed_ones_start_again() {
        let state = FetcherState::new(2);
        state.set_partitions(vec![followed(0, 4), followed(1, 4), followed(2, 4)]);
        for partition in 0..3 {
            state.update(&followed(partition, 4), |s| s.fetch_offset = Some(100));
        }
        // Partition 1 moved to epoch 5, partition 2 is no longer followed.
        state.set_partitions(vec![followed(0, 4), followed(1, 5)]);
        assert_eq!(
            state.update(&followed(0, 4), |s| s.fetch_offset),
            Some(Some(100))
        );
        assert_eq!(
            state.update(&followed(1, 5), |s| s.fetch_offset),
            Some(None)
        );
        assert_eq!(
            state.update(&followed(1, 4), |s| s.fetch_offset),
            None,
            "old epoch"
        );
        assert_eq!(state.update(&followed(2, 4), |s| s.fetch_offset), None);
        state.stop();
        assert!(state.stopped.get());
        assert_eq!(state.update(&followed(0, 4), |s| s.fetch_offset), None);
    }
}
