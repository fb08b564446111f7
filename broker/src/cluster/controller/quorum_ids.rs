//! The one mapping between Kafka node ids and Raft ids: Raft reserves 0 for "none", so the Raft
//! id of node N is N + 1. Everything outside the quorum glue speaks node ids.

/// The Raft id of node `node_id` (0 or more).
pub fn raft_id(node_id: i32) -> u64 {
    assert!(node_id >= 0, "node ids are 0 or more");
    node_id as u64 + 1
}

/// The node id of Raft id `raft_id` (1 or more, from `raft_id`).
pub fn node_id(raft_id: u64) -> i32 {
    assert!(
        (1..=i32::MAX as u64 + 1).contains(&raft_id),
        "raft id {raft_id} is no node's"
    );
    (raft_id - 1) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_map_to_raft_ids_and_back() {
        for node in [0, 1, 7, i32::MAX] {
            assert!(raft_id(node) > 0);
            assert_eq!(node_id(raft_id(node)), node);
        }
    }
}
