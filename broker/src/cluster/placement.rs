//! Where each partition lives: the shard that owns it.

/// The shard that owns a partition. A pure function of the topic name, the partition and the
/// shard count, so every shard agrees without asking; consecutive partitions of one topic go to
/// consecutive shards.
pub fn shard_for(topic: &str, partition: i32, shard_count: usize) -> usize {
    assert!(shard_count > 0);
    assert!(partition >= 0);
    // FNV-1a: stable across builds and platforms, unlike std's randomly seeded hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in topic.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash.wrapping_add(partition as u64) % shard_count as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_for_spreads_partitions_of_a_topic() {
        for shards in 1..6 {
            let owners: Vec<usize> = (0..shards as i32)
                .map(|p| shard_for("orders", p, shards))
                .collect();
            let mut sorted = owners.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                shards,
                "every shard owns one of {shards} partitions"
            );
        }
        assert_eq!(shard_for("orders", 7, 4), shard_for("orders", 7, 4));
    }
}
