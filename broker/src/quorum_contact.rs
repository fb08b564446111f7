//! This broker's contact with the metadata quorum, shared by its shards: shard 0, which runs
//! the quorum node, records when it was last in contact with a working quorum
//! (`quorum::Quorum::contact`), and every shard reads it to know whether it is cut off.
//!
//! A broker out of contact for longer than its lease has been, or will be, fenced by the active
//! controller, and another broker leads its partitions: it stops acting as their leader
//! (`tasks/cut_off.rs`) until contact returns and the metadata it then learns says what it
//! leads. A contact counts only once every shard serves the metadata committed before it
//! ([`ContactGate`]): a broker cut off and fenced meanwhile must not lead again from the stale
//! snapshot in which it led.
//!
//! **Why the lease ends before the fence.** Let T be `--session-timeout-ms` and H the last
//! moment the active controller received a message from this broker. The controller fences a
//! broker silent for more than T (`cluster/liveness.rs`, checked every `FENCING_CHECK_MS`, which
//! only delays it), and another broker leads only once that fence has committed, so not
//! before H + T. The quorum credits this broker with contact S only for a read-index round trip
//! whose request the leader received after S (`quorum::Quorum::contact`), so S ≤ H; a
//! controller elected since counts from its election, which follows the majority's
//! acknowledgement of that round trip, so from a moment after S too. Shard 0 records S every
//! [`CONTACT_RECORD_MS`] (a late record only makes the contact older) and each shard checks it
//! every [`CUT_OFF_CHECK_MS`], cut off once the contact is more than the lease
//! L = T − CUT_OFF_CHECK_MS − CONTACT_RECORD_MS − [`CUT_OFF_MARGIN_MS`] old. So it stops leading
//! by S + L + CUT_OFF_CHECK_MS = S + T − CONTACT_RECORD_MS − CUT_OFF_MARGIN_MS < S + T ≤ H + T,
//! strictly before it can be fenced. The margin absorbs a check scheduled late and the two
//! machines' clock rates differing over T. Not covered: a new controller counts the leader it
//! followed from its own last message from it (`liveness.rs`), which is before S if that old
//! leader's messages to it alone were lost while a third voter still acknowledged it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often a shard looks at the quorum contact (`tasks/cut_off.rs`).
pub const CUT_OFF_CHECK_MS: u64 = 100;

/// How often shard 0 records the quorum node's contact (`cluster::controller::start`).
pub const CONTACT_RECORD_MS: u64 = 100;

/// What the lease keeps back from the session timeout beyond the two intervals above: a check
/// run late by a busy shard, and clocks whose rates differ over a session timeout.
pub const CUT_OFF_MARGIN_MS: u64 = 200;

/// The shortest `--session-timeout-ms` accepted: the lease is then at least half of it.
pub const SESSION_TIMEOUT_MIN_MS: u64 =
    2 * (CUT_OFF_CHECK_MS + CONTACT_RECORD_MS + CUT_OFF_MARGIN_MS);

/// How long after its last contact a broker may still lead (see the module documentation).
pub fn lease(session_timeout: Duration) -> Duration {
    let kept_back = CUT_OFF_CHECK_MS + CONTACT_RECORD_MS + CUT_OFF_MARGIN_MS;
    session_timeout.saturating_sub(Duration::from_millis(kept_back))
}

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

    /// Whether the last contact is more than the [`lease`] of `session_timeout` before `now`.
    pub fn is_cut_off(&self, now: Instant, session_timeout: Duration) -> bool {
        if self.alone {
            return false;
        }
        now.saturating_duration_since(self.last_contact()) > lease(session_timeout)
    }

    /// The last contact recorded. Milliseconds are rounded down, so it is never later than the
    /// contact itself.
    fn last_contact(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_contact_ms.load(Ordering::Relaxed))
    }
}

/// Where the metadata stands when shard 0 records a contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetadataProgress {
    /// The quorum node's applied index.
    pub applied_index: u64,
    /// The version of the metadata state as applied (the index of its last command).
    pub version: u64,
    /// The version every shard serves.
    pub published_version: u64,
}

/// A contact with the commit index the leader gave with it, waiting for that index to be applied
/// and then for the metadata version it produced to be served by every shard.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    lease: quorum::Lease,
    version: Option<u64>,
}

/// Holds each contact back until the metadata committed before it is served by every shard, so
/// a cut-off broker stays cut off until it acts on the snapshot that fenced it (if one did).
/// One contact waits at a time: the newest one offered once the previous one passed, so a
/// stream of metadata changes delays the recorded contact by a poll at most, never for good.
#[derive(Default)]
pub struct ContactGate {
    waiting: Option<Waiting>,
    passed: Option<std::time::Instant>,
}

impl ContactGate {
    /// Offers the quorum's latest lease with the metadata's progress; returns the contact to
    /// record, if one passed.
    pub fn pass(
        &mut self,
        lease: Option<quorum::Lease>,
        progress: MetadataProgress,
    ) -> Option<Instant> {
        if let Some(lease) = lease {
            let newer = self.passed.is_none_or(|passed| lease.at > passed);
            if self.waiting.is_none() && newer {
                self.waiting = Some(Waiting {
                    lease,
                    version: None,
                });
            }
        }
        let waiting = self.waiting.as_mut()?;
        if waiting.version.is_none() && progress.applied_index >= waiting.lease.commit_index {
            waiting.version = Some(progress.version);
        }
        let served = (waiting.version).is_some_and(|version| progress.published_version >= version);
        if !served {
            return None;
        }
        let at = waiting.lease.at;
        self.waiting = None;
        self.passed = Some(at);
        Some(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_is_cut_off_a_lease_after_its_last_contact() {
        let contact = QuorumContact::new(false);
        let timeout = Duration::from_millis(3_000);
        // 3,000 ms less both polls (100 ms each) and the 200 ms margin.
        assert_eq!(lease(timeout), Duration::from_millis(2_600));
        let start = contact.origin;
        let at = |ms| start + Duration::from_millis(ms);
        assert!(!contact.is_cut_off(at(2_600), timeout));
        assert!(contact.is_cut_off(at(2_601), timeout));
        contact.record(None);
        assert!(contact.is_cut_off(at(2_601), timeout));
        contact.record(Some(at(2_000)));
        assert!(!contact.is_cut_off(at(4_600), timeout));
        // An older contact recorded late does not move it back.
        contact.record(Some(at(500)));
        assert!(contact.is_cut_off(at(4_601), timeout));
        assert!(!QuorumContact::new(true).is_cut_off(start + timeout * 10, timeout));
    }

    /// The lease's inequality with the controller's rule: a broker last heard at H is fenced
    /// once silent for more than T (`liveness::changes_due`, with the time as an argument: a
    /// paused clock). The broker's contact S is at most H; checked every CUT_OFF_CHECK_MS, it is
    /// cut off at a check no later than the last one before the controller may fence it.
    #[test]
    fn a_broker_stops_leading_before_the_controller_may_fence_it() {
        let contact = QuorumContact::new(false);
        let start = contact.origin;
        for timeout_ms in [SESSION_TIMEOUT_MIN_MS, 3_000, 9_000] {
            let timeout = Duration::from_millis(timeout_ms);
            let heard = start + Duration::from_millis(timeout_ms);
            let contact = QuorumContact::new(false);
            contact.record(Some(heard));
            // The first check at or after the lease's end, whatever the checks' phase.
            for phase_ms in 0..CUT_OFF_CHECK_MS {
                let mut check = heard + Duration::from_millis(phase_ms);
                while !contact.is_cut_off(check, timeout) {
                    check += Duration::from_millis(CUT_OFF_CHECK_MS);
                }
                let fenced_at_earliest = heard + timeout;
                let room = fenced_at_earliest.saturating_duration_since(check);
                assert!(
                    room >= Duration::from_millis(CONTACT_RECORD_MS + CUT_OFF_MARGIN_MS - 1),
                    "timeout {timeout_ms} ms, phase {phase_ms} ms: cut off only {room:?} before the fence"
                );
            }
        }
        assert!(!contact.is_cut_off(start, Duration::from_millis(SESSION_TIMEOUT_MIN_MS)));
    }

    /// A broker cut off, then in contact again: it stays cut off until its quorum node has
    /// applied the commit index the leader gave with the contact and every shard serves the
    /// metadata that produced, and then is in contact as of that round trip.
    #[test]
    fn a_contact_counts_once_the_metadata_committed_before_it_is_served() {
        let contact = QuorumContact::new(false);
        let timeout = Duration::from_millis(3_000);
        let at = |ms| contact.origin + Duration::from_millis(ms);
        let mut gate = ContactGate::default();
        let progress = |applied_index, version, published_version| MetadataProgress {
            applied_index,
            version,
            published_version,
        };
        let lease = |ms, commit_index| {
            Some(quorum::Lease {
                at: at(ms),
                commit_index,
            })
        };
        contact.record(gate.pass(lease(100, 10), progress(10, 9, 9)));
        assert!(!contact.is_cut_off(at(2_700), timeout));
        assert!(contact.is_cut_off(at(2_701), timeout));
        // Contact returns at 5 s; the leader had committed up to 40 (the fence of this broker).
        contact.record(gate.pass(lease(5_000, 40), progress(12, 11, 11)));
        assert!(contact.is_cut_off(at(5_100), timeout), "applied 12 of 40");
        contact.record(gate.pass(lease(5_100, 41), progress(40, 38, 11)));
        assert!(
            contact.is_cut_off(at(5_200), timeout),
            "version 38 not yet served"
        );
        contact.record(gate.pass(lease(5_200, 41), progress(41, 41, 38)));
        assert!(
            !contact.is_cut_off(at(5_300), timeout),
            "served the version of index 40"
        );
        assert!(
            contact.is_cut_off(at(7_601), timeout),
            "in contact as of the 5 s round trip"
        );
        // The next contact offered is the newest; one already passed is not offered again.
        contact.record(gate.pass(lease(5_300, 41), progress(41, 41, 41)));
        assert!(!contact.is_cut_off(at(7_900), timeout));
        assert_eq!(gate.pass(lease(5_300, 41), progress(41, 41, 41)), None);
        assert_eq!(gate.pass(None, progress(41, 41, 41)), None);
    }
}
