//! What the checker compares the brokers' logs with: the records acknowledged with acks=all and
//! the records the consumer read, and what it remembers between steps.

use std::collections::BTreeMap;

/// (offset, record id, batch leader epoch) of each stored record.
pub type Contents = Vec<(i64, i64, i32)>;

#[derive(Default)]
pub struct Model {
    /// offset -> record id, acknowledged with acks=all.
    pub acknowledged: BTreeMap<i64, i64>,
    /// offset -> record id, read by the consumer.
    pub consumed: BTreeMap<i64, i64>,
    /// A violation found while recording (two records at one offset).
    pub broken: Option<String>,
    /// Per broker index: (incarnation, leader epoch, high watermark) while it led.
    pub led: BTreeMap<usize, (u64, i32, i64)>,
    /// Per broker index: the largest leader epoch it applied.
    pub epochs: BTreeMap<usize, i32>,
    /// Per broker index: (mutation count, contents) of its log as last read.
    pub cache: BTreeMap<usize, (u64, u64, Contents)>,
}

impl Model {
    pub fn acknowledge(&mut self, offset: i64, id: i64) {
        if let Some(earlier) = self.acknowledged.insert(offset, id) {
            self.broken = Some(format!(
                "records {earlier} and {id} were both acknowledged at offset {offset}"
            ));
        }
    }

    pub fn consume(&mut self, offset: i64, id: i64) {
        match self.consumed.insert(offset, id) {
            Some(earlier) if earlier != id => {
                let what = format!("the consumer read {earlier}, then {id}, at offset {offset}");
                self.broken = Some(what);
            }
            _ => {}
        }
    }

    /// A crash: the broker's leadership ends and its log is read afresh.
    pub fn forget_broker(&mut self, index: usize) {
        self.led.remove(&index);
        self.cache.remove(&index);
    }
}
