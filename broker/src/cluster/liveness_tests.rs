use super::*;

const TIMEOUT: Duration = Duration::from_millis(9_000);

fn brokers(states: &[(i32, bool)]) -> BTreeMap<i32, BrokerRegistration> {
    states
        .iter()
        .map(|(id, fenced)| {
            let registration = BrokerRegistration {
                id: *id,
                incarnation: 100 + *id as u64,
                host: "localhost".to_string(),
                port: 9092,
                rack: None,
                fenced: *fenced,
                shutting_down: false,
            };
            (*id, registration)
        })
        .collect()
}

fn peer(node_id: i32, last_heard: Option<Instant>, matched: Option<u64>) -> PeerLiveness {
    PeerLiveness {
        node_id,
        last_heard,
        matched,
    }
}

fn view(start: Instant, now: Duration, peers: &[PeerLiveness]) -> LivenessView<'_> {
    LivenessView {
        controller_id: 1,
        leading_since: start,
        previous_leader_id: None,
        now: start + now,
        session_timeout: TIMEOUT,
        commit_index: 50,
        peers,
    }
}

#[test]
fn a_broker_silent_past_the_session_timeout_is_fenced_and_the_others_are_not() {
    let start = Instant::now();
    let at = |ms: u64| Some(start + Duration::from_millis(ms));
    let brokers = brokers(&[(1, false), (2, false), (3, false)]);
    let peers = [peer(2, at(1_000), Some(50)), peer(3, at(10_000), Some(50))];
    // 9 s after broker 2 was last heard: not yet past the timeout.
    assert_eq!(
        changes_due(
            &brokers,
            &view(start, Duration::from_millis(10_000), &peers)
        ),
        vec![]
    );
    assert_eq!(
        changes_due(
            &brokers,
            &view(start, Duration::from_millis(10_001), &peers)
        ),
        vec![LivenessChange::Fence {
            id: 2,
            incarnation: 102
        }]
    );
}

#[test]
fn a_new_controller_starts_every_timer_afresh() {
    let start = Instant::now();
    let brokers = brokers(&[(1, false), (2, false), (3, false)]);
    // Broker 2 was last heard long before this node led; broker 3 never in this node's life.
    let long_ago = start.checked_sub(Duration::from_secs(60));
    let peers = [peer(2, long_ago, None), peer(3, None, None)];
    assert_eq!(changes_due(&brokers, &view(start, TIMEOUT, &peers)), vec![]);
    let later = changes_due(
        &brokers,
        &view(start, TIMEOUT + Duration::from_millis(1), &peers),
    );
    assert_eq!(
        later,
        vec![
            LivenessChange::Fence {
                id: 2,
                incarnation: 102
            },
            LivenessChange::Fence {
                id: 3,
                incarnation: 103
            }
        ]
    );
}

#[test]
fn a_fenced_broker_is_unfenced_once_heard_lately_with_its_log_caught_up() {
    let start = Instant::now();
    let now = Duration::from_secs(30);
    let at = |ms: u64| Some(start + Duration::from_millis(ms));
    let brokers = brokers(&[(1, false), (2, true), (3, true), (4, true)]);
    let peers = [
        // Heard 1 s ago and caught up.
        peer(2, at(29_000), Some(50)),
        // Heard 1 s ago, but its log lags the commit index.
        peer(3, at(29_000), Some(49)),
        // Caught up, but heard 5 s ago: more than half the session timeout.
        peer(4, at(25_000), Some(50)),
    ];
    assert_eq!(
        changes_due(&brokers, &view(start, now, &peers)),
        vec![LivenessChange::Unfence {
            id: 2,
            incarnation: 102
        }]
    );
}

#[test]
fn a_broker_shutting_down_is_not_unfenced_however_lately_heard() {
    let start = Instant::now();
    let now = Duration::from_secs(30);
    let mut brokers = brokers(&[(1, false), (2, true)]);
    brokers.get_mut(&2).unwrap().shutting_down = true;
    let peers = [peer(
        2,
        Some(start + Duration::from_millis(29_900)),
        Some(50),
    )];
    assert_eq!(changes_due(&brokers, &view(start, now, &peers)), vec![]);
}

#[test]
fn the_controller_never_fences_itself_and_unfences_itself_if_fenced_before() {
    let start = Instant::now();
    let live = brokers(&[(1, false)]);
    assert_eq!(
        changes_due(&live, &view(start, Duration::from_secs(60), &[])),
        vec![]
    );
    let fenced = brokers(&[(1, true)]);
    assert_eq!(
        changes_due(&fenced, &view(start, Duration::ZERO, &[])),
        vec![LivenessChange::Unfence {
            id: 1,
            incarnation: 101
        }]
    );
}

#[test]
fn a_registered_broker_that_is_no_voter_is_never_heard_and_is_fenced() {
    let start = Instant::now();
    let brokers = brokers(&[(1, false), (7, false)]);
    assert_eq!(
        changes_due(&brokers, &view(start, TIMEOUT * 2, &[])),
        vec![LivenessChange::Fence {
            id: 7,
            incarnation: 107
        }]
    );
}

#[test]
fn the_previous_leader_is_fenced_a_session_timeout_after_it_was_last_heard() {
    // This node (1) was elected 2 s after it last heard broker 2, the leader it followed;
    // broker 3, which a follower does not hear, was last heard long before.
    let heard = Instant::now();
    let start = heard + Duration::from_millis(2_000);
    let brokers = brokers(&[(1, false), (2, false), (3, false)]);
    let peers = [peer(2, Some(heard), None), peer(3, None, None)];
    let at = |ms: u64| LivenessView {
        previous_leader_id: Some(2),
        ..view(start, Duration::from_millis(ms), &peers)
    };
    assert_eq!(changes_due(&brokers, &at(7_000)), vec![]);
    assert_eq!(
        changes_due(&brokers, &at(7_001)),
        vec![LivenessChange::Fence {
            id: 2,
            incarnation: 102
        }]
    );
    // Broker 3's timer started afresh at the election.
    assert_eq!(changes_due(&brokers, &at(9_000)).len(), 1);
    assert_eq!(
        changes_due(&brokers, &at(9_001))[1],
        LivenessChange::Fence {
            id: 3,
            incarnation: 103
        }
    );
    // Without a previous leader, broker 2's timer also starts at the election.
    let afresh = view(start, Duration::from_millis(7_001), &peers);
    assert_eq!(changes_due(&brokers, &afresh), vec![]);
}

#[test]
fn a_previous_leader_heard_longer_ago_than_the_session_timeout_starts_afresh() {
    // A stale last contact (this node was cut off from it) is no evidence of when it died.
    let heard = Instant::now();
    let start = heard + Duration::from_millis(9_001);
    let brokers = brokers(&[(1, false), (2, false)]);
    let peers = [peer(2, Some(heard), None)];
    let at = |ms: u64| LivenessView {
        previous_leader_id: Some(2),
        ..view(start, Duration::from_millis(ms), &peers)
    };
    assert_eq!(changes_due(&brokers, &at(9_000)), vec![]);
    assert_eq!(changes_due(&brokers, &at(9_001)).len(), 1);
}

#[test]
fn a_pause_of_the_controller_is_not_a_brokers_silence() {
    let start = Instant::now();
    let at = |ms: u64| start + Duration::from_millis(ms);
    let brokers = brokers(&[(1, false), (2, false)]);
    let mut clock = SilenceClock::new(start, Some(2));
    // Ticks on time, or a little late (a loaded machine), change nothing.
    assert!(!clock.tick(at(100), at(100)));
    assert!(!clock.tick(at(200), at(200) + OWN_PAUSE_MIN - Duration::from_millis(1)));
    assert_eq!(clock, SilenceClock::new(start, Some(2)));
    // Broker 2 was last heard at 1 s; this process stops at 1.1 s and runs again at 20 s: its
    // peers' contacts are as old as the pause. Without the reset broker 2 would be fenced.
    let peers = [peer(2, Some(at(1_000)), Some(50))];
    let stale = |clock: &SilenceClock| LivenessView {
        leading_since: clock.since,
        previous_leader_id: clock.previous_leader_id,
        ..view(start, Duration::from_millis(20_000), &peers)
    };
    assert_eq!(
        changes_due(&brokers, &stale(&clock)),
        vec![LivenessChange::Fence {
            id: 2,
            incarnation: 102
        }]
    );
    assert!(clock.tick(at(1_100), at(20_000)));
    assert_eq!(clock, SilenceClock::new(at(20_000), None));
    assert_eq!(changes_due(&brokers, &stale(&clock)), vec![]);
    // Still silent a session timeout after the pause: fenced then.
    let later = LivenessView {
        now: at(20_000) + TIMEOUT + Duration::from_millis(1),
        ..stale(&clock)
    };
    assert_eq!(
        changes_due(&brokers, &later),
        vec![LivenessChange::Fence {
            id: 2,
            incarnation: 102
        }]
    );
}
