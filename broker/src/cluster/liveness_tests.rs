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
