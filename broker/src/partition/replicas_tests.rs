use super::*;

const LAG_MAX_MS: i64 = 30_000;

fn assignment(leader: i32, epoch: i32, isr: &[i32]) -> PartitionAssignment {
    PartitionAssignment {
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
        leader,
        leader_epoch: epoch,
        adding: Vec::new(),
        removing: Vec::new(),
    }
}

/// Broker 1 leading {1, 2, 3} at epoch 5 with the whole ISR, its log ending at 100, at t=1000.
fn leader() -> Replicas {
    let mut replicas = Replicas::new(1);
    assert!(replicas.set_assignment(&assignment(1, 5, &[1, 2, 3]), 100, 1_000));
    replicas
}

#[test]
fn roles_follow_the_assignment() {
    let mut replicas = Replicas::new(2);
    assert_eq!(replicas.role(), Role::Offline);
    assert!(replicas.set_assignment(&assignment(1, 0, &[1, 2, 3]), 0, 0));
    assert_eq!(replicas.role(), Role::Follower { leader: 1 });
    assert!(!replicas.set_assignment(&assignment(1, 0, &[1, 2]), 0, 0));
    assert!(replicas.set_assignment(&assignment(2, 1, &[2]), 0, 0));
    assert!(replicas.is_leader());
    assert!(replicas.set_assignment(&assignment(NO_LEADER, 2, &[2]), 0, 0));
    assert_eq!(replicas.role(), Role::Offline);
    assert!(
        !replicas.record_fetch(1, 0, 0, 0),
        "only a leader records fetches"
    );
}

#[test]
fn one_replica_commits_at_the_log_end() {
    let mut replicas = Replicas::new(1);
    let alone = PartitionAssignment::new(vec![1]);
    replicas.set_assignment(&alone, 0, 0);
    assert_eq!(replicas.high_watermark(42), 42);
    assert_eq!(replicas.shrink(42, i64::MAX, LAG_MAX_MS), None);
}

#[test]
fn the_high_watermark_is_the_smallest_log_end_in_the_isr() {
    let mut replicas = leader();
    // Followers that have not fetched since the leader took over hold nothing it knows of.
    assert_eq!(replicas.high_watermark(100), LOG_END_OFFSET_UNKNOWN);
    assert!(replicas.record_fetch(2, 90, 100, 1_100));
    assert_eq!(replicas.high_watermark(100), LOG_END_OFFSET_UNKNOWN);
    assert!(replicas.record_fetch(3, 80, 100, 1_100));
    assert_eq!(replicas.high_watermark(100), 80);
    assert!(replicas.record_fetch(3, 100, 100, 1_200));
    assert_eq!(replicas.high_watermark(100), 90);
    assert!(
        !replicas.record_fetch(4, 100, 100, 1_200),
        "4 is no replica"
    );
    // Outside the ISR a follower does not hold the high watermark back.
    replicas.set_assignment(&assignment(1, 5, &[1, 3]), 100, 1_300);
    assert_eq!(replicas.high_watermark(100), 100);
    assert_eq!(replicas.high_watermark(120), 100);
}

#[test]
fn a_pending_expansion_counts_and_a_pending_shrink_does_not() {
    let mut replicas = leader();
    replicas.set_assignment(&assignment(1, 5, &[1, 3]), 100, 1_000);
    replicas.record_fetch(3, 100, 100, 1_000);
    replicas.record_fetch(2, 100, 100, 1_000);
    let grown = replicas.expansion(2, 100).expect("2 caught up");
    assert_eq!(grown, vec![1, 2, 3]);
    let change = replicas.start_change(grown);
    assert_eq!(replicas.maximal_isr(), vec![1, 3, 2]);
    replicas.record_fetch(3, 120, 120, 1_100);
    assert_eq!(
        replicas.high_watermark(120),
        100,
        "2, being added, holds it back"
    );
    assert_eq!(replicas.expansion(2, 100), None, "one change at a time");
    assert!(!replicas.finish_change(&change, &Ok(())));
    assert!(!replicas.has_pending_change());
    // A shrink in flight leaves the removed member in the maximal ISR.
    replicas.set_assignment(&assignment(1, 5, &[1, 2, 3]), 120, 1_200);
    let change = replicas.start_change(vec![1, 3]);
    assert_eq!(replicas.maximal_isr(), vec![1, 2, 3]);
    assert_eq!(replicas.high_watermark(120), 100);
    // The committed change clears the pending one.
    replicas.set_assignment(&assignment(1, 5, &[1, 3]), 120, 1_300);
    assert!(!replicas.has_pending_change());
    assert_eq!(replicas.high_watermark(120), 120);
    assert!(!replicas.finish_change(&change, &Ok(())));
}

#[test]
fn a_follower_joins_only_past_the_high_watermark_and_the_epoch_start() {
    let mut replicas = leader();
    replicas.set_assignment(&assignment(1, 5, &[1, 3]), 100, 1_000);
    replicas.record_fetch(2, 99, 100, 1_000);
    assert_eq!(
        replicas.expansion(2, 90),
        None,
        "below the epoch start (100)"
    );
    replicas.record_fetch(2, 100, 110, 1_100);
    assert_eq!(replicas.expansion(2, 105), None, "below the high watermark");
    assert_eq!(replicas.expansion(2, 100), Some(vec![1, 2, 3]));
    assert_eq!(replicas.expansion(3, 100), None, "already in the ISR");
}

#[test]
fn a_follower_not_caught_up_for_the_lag_time_leaves_the_isr() {
    let mut replicas = leader();
    replicas.record_fetch(2, 100, 100, 2_000);
    replicas.record_fetch(3, 100, 100, 2_000);
    // Nothing appended since: in sync however long ago they fetched.
    assert_eq!(
        replicas.shrink(100, 2_000 + 10 * LAG_MAX_MS, LAG_MAX_MS),
        None
    );
    // 2 keeps fetching and keeps up; 3 stops.
    replicas.record_fetch(2, 100, 150, 20_000);
    replicas.record_fetch(2, 150, 150, 30_000);
    assert_eq!(replicas.shrink(150, 2_000 + LAG_MAX_MS, LAG_MAX_MS), None);
    assert_eq!(
        replicas.shrink(150, 2_001 + LAG_MAX_MS, LAG_MAX_MS),
        Some(vec![1, 2])
    );
}

#[test]
fn a_follower_that_reaches_the_leaders_previous_end_counts_as_caught_up_then() {
    let mut replicas = leader();
    replicas.record_fetch(2, 50, 100, 5_000);
    assert_eq!(replicas.follower(2).unwrap().last_caught_up_ms, 1_000);
    // At 9000 it asks for 100, the leader's end at its fetch at 5000, while the leader is at
    // 130: caught up as of 5000, not 9000.
    replicas.record_fetch(2, 100, 130, 9_000);
    assert_eq!(replicas.follower(2).unwrap().last_caught_up_ms, 5_000);
    replicas.record_fetch(2, 130, 130, 9_500);
    assert_eq!(replicas.follower(2).unwrap().last_caught_up_ms, 9_500);
}

#[test]
fn a_new_epoch_starts_every_follower_afresh() {
    let mut replicas = leader();
    replicas.record_fetch(2, 100, 100, 2_000);
    let change = replicas.start_change(vec![1, 2]);
    assert!(replicas.set_assignment(&assignment(1, 6, &[1, 2, 3]), 140, 50_000));
    assert!(!replicas.has_pending_change());
    let state = replicas.follower(2).unwrap();
    assert_eq!(state.log_end_offset, LOG_END_OFFSET_UNKNOWN);
    assert_eq!(state.last_caught_up_ms, 50_000);
    // An answer for the old epoch changes nothing.
    replicas.start_change(vec![1, 3]);
    assert!(!replicas.finish_change(&change, &Ok(())));
    assert!(replicas.has_pending_change());
}

fn refusal(code: ResponseError) -> Result<(), Refusal> {
    Err((code, String::new()))
}

#[test]
fn an_addition_that_may_still_commit_stays_in_the_maximal_isr() {
    let mut replicas = leader();
    replicas.set_assignment(&assignment(1, 5, &[1, 3]), 100, 1_000);
    replicas.record_fetch(2, 100, 100, 1_000);
    replicas.record_fetch(3, 100, 100, 1_000);
    let change = replicas.start_change(replicas.expansion(2, 100).expect("2 caught up"));
    replicas.record_fetch(3, 150, 150, 1_100);
    for code in [
        ResponseError::RequestTimedOut,
        ResponseError::NotController,
        ResponseError::KafkaStorageError,
        ResponseError::UnknownServerError,
    ] {
        assert!(replicas.finish_change(&change, &refusal(code)), "{code:?}");
        assert!(replicas.has_pending_change(), "{code:?}");
        assert_eq!(replicas.maximal_isr(), vec![1, 3, 2]);
        assert_eq!(replicas.high_watermark(150), 100, "2 holds it back");
        assert_eq!(replicas.expansion(2, 100), None, "one change at a time");
    }
    // A definite refusal ends it.
    let refused = refusal(ResponseError::IneligibleReplica);
    assert!(!replicas.finish_change(&change, &refused));
    assert!(!replicas.has_pending_change());
    assert_eq!(replicas.high_watermark(150), 150);
    // So does a snapshot that lists it, and then a late answer neither retries nor clears.
    let change = replicas.start_change(vec![1, 2, 3]);
    assert!(replicas.is_pending(&change));
    replicas.set_assignment(&assignment(1, 5, &[1, 2, 3]), 150, 1_200);
    assert!(!replicas.is_pending(&change));
    let timed_out = refusal(ResponseError::RequestTimedOut);
    assert!(!replicas.finish_change(&change, &timed_out));
}

#[test]
fn a_consumer_is_sent_to_an_in_sync_replica_of_its_rack() {
    // Racks: 1 in "a", 2 and 3 in "b", 4 (no replica) in "c".
    let rack = |id: i32| match id {
        1 => "a",
        2 | 3 => "b",
        _ => "c",
    };
    let in_rack = |wanted: &'static str| move |id: i32| rack(id) == wanted;
    let mut replicas = leader();
    // Followers not heard from since this leader took over hold nothing it knows of.
    assert_eq!(replicas.preferred_read_replica(in_rack("b"), 0), None);
    assert!(replicas.record_fetch(2, 90, 100, 1_100));
    assert!(replicas.record_fetch(3, 100, 100, 1_100));
    // The highest log end wins; a replica that does not hold the fetch offset is never named.
    assert_eq!(replicas.preferred_read_replica(in_rack("b"), 50), Some(3));
    assert_eq!(replicas.preferred_read_replica(in_rack("b"), 100), Some(3));
    assert_eq!(replicas.preferred_read_replica(in_rack("b"), 101), None);
    assert!(replicas.record_fetch(2, 100, 100, 1_200));
    assert_eq!(
        replicas.preferred_read_replica(in_rack("b"), 100),
        Some(2),
        "equal log ends: the most recently caught up"
    );
    // The leader in the consumer's rack serves it; a rack without replicas is served by it.
    assert_eq!(replicas.preferred_read_replica(in_rack("a"), 0), None);
    assert_eq!(replicas.preferred_read_replica(in_rack("c"), 0), None);
    // Out of the ISR, a follower is not named, however far it got.
    assert!(!replicas.set_assignment(&assignment(1, 5, &[1, 3]), 100, 1_300));
    assert_eq!(replicas.preferred_read_replica(in_rack("b"), 100), Some(3));
    assert!(!replicas.set_assignment(&assignment(1, 5, &[1]), 100, 1_300));
    assert_eq!(replicas.preferred_read_replica(in_rack("b"), 0), None);
    // A follower names nobody.
    let mut follower = Replicas::new(2);
    follower.set_assignment(&assignment(1, 5, &[1, 2, 3]), 100, 1_000);
    assert_eq!(follower.preferred_read_replica(in_rack("b"), 0), None);
}
