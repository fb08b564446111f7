//! A node's contact with a working quorum, proven by a round trip: every tick the node asks
//! for a read index (raft-rs's `read_index`, ReadOnlySafe). A follower's request goes to its
//! leader, which answers only once a majority has acknowledged a heartbeat sent after the
//! request arrived; a leader's own request waits for the same majority. The answer carries the
//! leader's commit index when it took the request. The request's context is the time it was
//! made, so an answer proves that, at some moment after that time, the leader received our
//! message and still led a majority: that send time, not the arrival of any message, is the
//! contact it is credited with (a follower that hears its leader but is not heard gains no
//! contact).

use std::time::{Duration, Instant};

/// A contact proven by a read-index round trip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// When the request went out, on this node's clock: the leader received it later.
    pub at: Instant,
    /// The leader's commit index when it took the request: once this node has applied it, its
    /// state holds every entry committed before its contact (a fence of this broker included).
    pub commit_index: u64,
}

/// A read-index request's context: 8 bytes, the nanoseconds from `origin` to `at`.
pub fn request_context(origin: Instant, at: Instant) -> Vec<u8> {
    let nanos = u64::try_from(at.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX);
    nanos.to_le_bytes().to_vec()
}

/// The lease an answer to a request with `context` proves, if the context is one of ours and
/// its time is not after `now` (a context from another life of the node could be).
pub fn lease_of(origin: Instant, now: Instant, context: &[u8], commit_index: u64) -> Option<Lease> {
    let nanos = u64::from_le_bytes(context.try_into().ok()?);
    let at = origin.checked_add(Duration::from_nanos(nanos))?;
    (at <= now).then_some(Lease { at, commit_index })
}

/// The later of two leases (by request time); a late answer to an older request never moves
/// the contact back, and the commit index goes with the time it was learned at.
pub fn newer(current: Option<Lease>, answer: Lease) -> Option<Lease> {
    match current {
        Some(current) if current.at >= answer.at => Some(current),
        _ => Some(answer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_the_time_its_request_went_out() {
        let origin = Instant::now();
        let sent = origin + Duration::from_millis(1_500);
        let context = request_context(origin, sent);
        let now = sent + Duration::from_millis(40);
        let lease = lease_of(origin, now, &context, 17).expect("our own context");
        assert_eq!(
            lease,
            Lease {
                at: sent,
                commit_index: 17
            }
        );
        // A context from the future (another life) or of another shape proves nothing.
        assert_eq!(lease_of(origin, origin, &context, 17), None);
        assert_eq!(lease_of(origin, now, b"short", 17), None);
        let older = Lease {
            at: origin,
            commit_index: 20,
        };
        assert_eq!(newer(Some(lease), older), Some(lease));
        assert_eq!(newer(Some(older), lease), Some(lease));
        assert_eq!(newer(None, older), Some(older));
    }
}
