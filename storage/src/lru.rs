//! The one least-recently-used map of the storage caches: entries under `u64` keys, each with a
//! cost (its bytes, or 1 for a count), kept within a budget of cost by evicting the least
//! recently used entries first. The sealed-index cache, the readahead cache and the cache of
//! open sealed-segment files are each one of these.
//!
//! Recency is a counter stamped on each entry at every hit; eviction scans for the smallest
//! stamp. The maps hold at most a few hundred entries (their budgets divided by their entry
//! sizes), and eviction happens only on an insert over budget, so a scan is cheaper than keeping
//! an ordered list up to date on every hit.

use std::collections::HashMap;

/// A budgeted LRU map; see the module doc. Not shared between threads: each storage context
/// owns its maps.
pub(crate) struct Lru<V> {
    entries: HashMap<u64, Entry<V>>,
    cost: usize,
    cost_max: usize,
    clock: u64,
}

struct Entry<V> {
    value: V,
    cost: usize,
    last_used: u64,
}

impl<V> Lru<V> {
    pub fn new(cost_max: usize) -> Lru<V> {
        Lru {
            entries: HashMap::new(),
            cost: 0,
            cost_max,
            clock: 0,
        }
    }

    /// The value under `key`, marked as just used.
    pub fn get(&mut self, key: u64) -> Option<&V> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.entries.get_mut(&key)?;
        entry.last_used = clock;
        Some(&entry.value)
    }

    /// Puts `value` under `key` (replacing what was there), evicting the least recently used
    /// entries to stay within the budget. A value costing more than the whole budget is not
    /// kept: it is returned.
    pub fn insert(&mut self, key: u64, value: V, cost: usize) -> Option<V> {
        self.remove(key);
        if cost > self.cost_max {
            return Some(value);
        }
        while self.cost + cost > self.cost_max {
            self.evict_least_recently_used();
        }
        self.clock += 1;
        let last_used = self.clock;
        self.cost += cost;
        let entry = Entry {
            value,
            cost,
            last_used,
        };
        self.entries.insert(key, entry);
        assert!(self.cost <= self.cost_max);
        None
    }

    /// Takes the value under `key` out of the map.
    pub fn remove(&mut self, key: u64) -> Option<V> {
        let entry = self.entries.remove(&key)?;
        self.cost -= entry.cost;
        Some(entry.value)
    }

    /// Changes the budget, evicting the least recently used entries to meet it.
    pub fn set_cost_max(&mut self, cost_max: usize) {
        self.cost_max = cost_max;
        while self.cost > self.cost_max {
            self.evict_least_recently_used();
        }
    }

    pub fn cost(&self) -> usize {
        self.cost
    }

    pub fn cost_max(&self) -> usize {
        self.cost_max
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn evict_least_recently_used(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, entry)| entry.last_used)
            .map(|(key, _)| *key)
            .expect("over budget with nothing cached");
        self.remove(oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_first_within_the_budget() {
        let mut lru = Lru::new(3);
        for key in 1..=3 {
            assert!(lru.insert(key, key * 10, 1).is_none());
        }
        assert_eq!(lru.get(1), Some(&10));
        lru.insert(4, 40, 1);
        assert_eq!(lru.get(2), None, "the least recently used goes first");
        assert_eq!(lru.get(1), Some(&10));
        assert_eq!((lru.cost(), lru.len()), (3, 3));
        lru.set_cost_max(1);
        assert_eq!(lru.len(), 1);
        assert_eq!(lru.get(1), Some(&10), "the most recently used stays");
    }

    #[test]
    fn replaces_a_key_and_refuses_what_exceeds_the_budget() {
        let mut lru = Lru::new(10);
        lru.insert(1, "a", 4);
        lru.insert(1, "b", 6);
        assert_eq!((lru.cost(), lru.get(1)), (6, Some(&"b")));
        assert_eq!(lru.insert(2, "c", 11), Some("c"));
        assert_eq!(lru.get(2), None);
        assert_eq!(lru.cost(), 6);
        assert_eq!(lru.remove(1), Some("b"));
        assert_eq!((lru.cost(), lru.len()), (0, 0));
    }
}
