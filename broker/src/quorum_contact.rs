//! This broker's contact with the metadata quorum, shared by its shards: shard 0, which runs
//! the quorum node, records when it was last in contact with a working quorum
//! (`quorum::Quorum::contact`), and every shard reads it to know whether it is cut off.
//!
//! A broker out of contact for longer than the session timeout has been, or will be, fenced by
//! the active controller, and another broker leads its partitions: it stops acting as their
//! leader (`tasks/cut_off.rs`) until contact returns and the metadata it then learns says
//! what it leads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The last contact, as milliseconds after `origin` (an atomic, so every shard reads it
/// without asking shard 0).
pub struct QuorumContact {
    origin: Instant,
    last_contact_ms: AtomicU64,
    /// A one-voter quorum is its own majority: it is never cut off.
    alone: bool,
}

impl QuorumContact {
    /// Contact as of now: a broker starting has the session timeout to find its quorum.
    pub fn new(alone: bool) -> QuorumContact {
        QuorumContact {
            origin: Instant::now(),
            last_contact_ms: AtomicU64::new(0),
            alone,
        }
    }

    /// Whether the quorum is this broker alone (it is never cut off).
    pub fn is_alone(&self) -> bool {
        self.alone
    }

    /// Records the quorum node's last contact (`None`: none known); it never moves back.
    pub fn record(&self, contact: Option<Instant>) {
        let Some(at) = contact else {
            return;
        };
        let ms = u64::try_from(at.saturating_duration_since(self.origin).as_millis())
            .unwrap_or(u64::MAX);
        self.last_contact_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Whether the last contact is more than `session_timeout` before `now`.
    pub fn is_cut_off(&self, now: Instant, session_timeout: Duration) -> bool {
        if self.alone {
            return false;
        }
        let last =
            self.origin + Duration::from_millis(self.last_contact_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(last) > session_timeout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_is_cut_off_a_session_timeout_after_its_last_contact() {
        let contact = QuorumContact::new(false);
        let timeout = Duration::from_millis(3_000);
        let start = contact.origin;
        assert!(!contact.is_cut_off(start + Duration::from_millis(2_999), timeout));
        assert!(contact.is_cut_off(start + Duration::from_millis(3_001), timeout));
        contact.record(None);
        assert!(contact.is_cut_off(start + Duration::from_millis(3_001), timeout));
        contact.record(Some(start + Duration::from_millis(2_000)));
        assert!(!contact.is_cut_off(start + Duration::from_millis(4_900), timeout));
        // An older contact recorded late does not move it back.
        contact.record(Some(start + Duration::from_millis(500)));
        assert!(contact.is_cut_off(start + Duration::from_millis(5_001), timeout));
        assert!(!QuorumContact::new(true).is_cut_off(start + timeout * 10, timeout));
    }
}
