use super::*;

fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay: Duration::from_millis(100),
        ..GroupConfig::default()
    }
}

fn args(member_id: &str, client: &str) -> JoinArgs {
    JoinArgs {
        member_id: member_id.to_string(),
        instance_id: None,
        client_id: client.to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_secs(30),
        protocol_type: "consumer".to_string(),
        protocols: vec![
            ("range".to_string(), Bytes::from_static(b"r")),
            ("roundrobin".to_string(), Bytes::from_static(b"rr")),
        ],
        require_known_member_id: true,
    }
}

fn now_result<T>(reply: Reply<T>) -> T {
    match reply {
        Reply::Now(result) => result,
        Reply::Later(_) => panic!("expected an immediate answer"),
    }
}

fn later<T>(reply: Reply<T>) -> oneshot::Receiver<T> {
    match reply {
        Reply::Later(receiver) => receiver,
        Reply::Now(_) => panic!("expected to wait"),
    }
}

fn ready<T>(receiver: &mut oneshot::Receiver<T>) -> T {
    receiver
        .try_recv()
        .expect("not cancelled")
        .expect("answered")
}

/// Handshake then join; returns the member id and the parked join.
fn join_new(
    group: &mut Group,
    client: &str,
    t: Instant,
) -> (String, oneshot::Receiver<JoinResult>) {
    let first = now_result(group.join(args("", client), t, &config()));
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    let id = first.member_id;
    let receiver = later(group.join(args(&id, client), t, &config()));
    (id, receiver)
}

#[test]
fn two_members_join_sync_and_become_stable() {
    let t0 = Instant::now();
    let mut group = Group::new("g".into());
    let (a, mut join_a) = join_new(&mut group, "a", t0);
    let (b, mut join_b) = join_new(&mut group, "b", t0);
    assert_eq!(group.state, GroupState::PreparingRebalance);
    assert!(
        join_a.try_recv().unwrap().is_none(),
        "the initial delay holds the first generation"
    );
    group.tick(t0 + Duration::from_millis(150), &config());
    let (ra, rb) = (ready(&mut join_a), ready(&mut join_b));
    assert_eq!((ra.generation, rb.generation), (1, 1));
    assert_eq!(ra.protocol_name.as_deref(), Some("range"));
    let leader = ra.leader.clone();
    assert_eq!(rb.leader, leader);
    let (leader_id, follower_id) = if leader == a {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    };
    let leader_result = if leader == a { &ra } else { &rb };
    assert_eq!(leader_result.members.len(), 2);
    let mut follower_sync = later(group.sync(&follower_id, None, 1, vec![], t0));
    let assignments = vec![
        (leader_id.clone(), Bytes::from_static(b"L")),
        (follower_id.clone(), Bytes::from_static(b"F")),
    ];
    let leader_sync = now_result(group.sync(&leader_id, None, 1, assignments, t0));
    assert_eq!(leader_sync.assignment, Bytes::from_static(b"L"));
    assert_eq!(
        ready(&mut follower_sync).assignment,
        Bytes::from_static(b"F")
    );
    assert_eq!(group.state, GroupState::Stable);
    assert_eq!(group.heartbeat(&follower_id, None, 1, t0), None);
    assert_eq!(
        group.heartbeat(&follower_id, None, 0, t0),
        Some(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        group.heartbeat("nobody", None, 1, t0),
        Some(ResponseError::UnknownMemberId)
    );
}

fn stable_pair(t0: Instant) -> (Group, String, String) {
    let mut group = Group::new("g".into());
    let (a, mut ja) = join_new(&mut group, "a", t0);
    let (b, mut jb) = join_new(&mut group, "b", t0);
    group.tick(t0 + Duration::from_millis(150), &config());
    let leader = ready(&mut ja).leader;
    ready(&mut jb);
    let follower = if leader == a { b.clone() } else { a.clone() };
    let _pending = group.sync(&follower, None, 1, vec![], t0);
    now_result(group.sync(&leader, None, 1, vec![], t0));
    assert_eq!(group.state, GroupState::Stable);
    (group, leader, follower)
}

#[test]
fn expired_member_triggers_a_rebalance_without_it() {
    let t0 = Instant::now();
    let (mut group, leader, follower) = stable_pair(t0);
    let t1 = t0 + Duration::from_secs(8);
    assert_eq!(group.heartbeat(&leader, None, 1, t1), None);
    let t2 = t0 + Duration::from_secs(11);
    assert!(group.tick(t2, &config()), "the follower's session lapsed");
    assert!(!group.members.contains_key(&follower));
    assert_eq!(group.state, GroupState::PreparingRebalance);
    assert_eq!(
        group.heartbeat(&leader, None, 1, t2),
        Some(ResponseError::RebalanceInProgress)
    );
    let mut rejoin = later(group.join(args(&leader, "a"), t2, &config()));
    let result = ready(&mut rejoin);
    assert_eq!((result.generation, result.members.len()), (2, 1));
}

#[test]
fn leaving_members_rebalance_and_the_last_one_empties_the_group() {
    let t0 = Instant::now();
    let (mut group, leader, follower) = stable_pair(t0);
    assert_eq!(group.leave(&follower, None, t0, &config()), None);
    assert_eq!(group.state, GroupState::PreparingRebalance);
    assert_eq!(
        group.leave(&follower, None, t0, &config()),
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(group.leave(&leader, None, t0, &config()), None);
    assert_eq!(group.state, GroupState::Empty);
    assert!(
        group.check_commit("", None, -1).is_ok(),
        "an empty group takes simple commits"
    );
}

#[test]
fn members_that_do_not_rejoin_are_dropped_at_the_deadline() {
    let t0 = Instant::now();
    let (mut group, leader, follower) = stable_pair(t0);
    let mut rejoin = later(group.join(args(&leader, "a"), t0, &config()));
    assert!(
        rejoin.try_recv().unwrap().is_none(),
        "waits for the follower"
    );
    assert_eq!(
        group.sync(&follower, None, 1, vec![], t0).now_error(),
        Some(ResponseError::RebalanceInProgress)
    );
    group.tick(t0 + Duration::from_secs(31), &config());
    let result = ready(&mut rejoin);
    assert_eq!(result.members.len(), 1);
    assert!(!group.members.contains_key(&follower));
}

#[test]
fn static_member_rejoins_without_rebalance() {
    let t0 = Instant::now();
    let mut group = Group::new("g".into());
    let mut join = args("", "s");
    join.instance_id = Some("instance-1".into());
    let mut first = later(group.join(join.clone(), t0, &config()));
    group.tick(t0 + Duration::from_millis(150), &config());
    let result = ready(&mut first);
    now_result(group.sync(
        &result.member_id,
        Some("instance-1"),
        1,
        vec![(result.member_id.clone(), Bytes::from_static(b"A"))],
        t0,
    ));
    // The same instance comes back with no member id: same generation, same assignment.
    let again = now_result(group.join(join.clone(), t0, &config()));
    assert_eq!(again.generation, 1);
    assert_ne!(again.member_id, result.member_id);
    assert_eq!(group.state, GroupState::Stable);
    let sync = now_result(group.sync(&again.member_id, Some("instance-1"), 1, vec![], t0));
    assert_eq!(sync.assignment, Bytes::from_static(b"A"));
    // The old member id is fenced.
    assert_eq!(
        group.heartbeat(&result.member_id, Some("instance-1"), 1, t0),
        Some(ResponseError::FencedInstanceId)
    );
}

#[test]
fn protocol_type_is_set_when_pending_members_join_together() {
    let t0 = Instant::now();
    let mut group = Group::new("g".into());
    let a = now_result(group.join(args("", "a"), t0, &config())).member_id;
    let b = now_result(group.join(args("", "b"), t0, &config())).member_id;
    let _ja = later(group.join(args(&a, "a"), t0, &config()));
    let _jb = later(group.join(args(&b, "b"), t0, &config()));
    assert_eq!(group.protocol_type.as_deref(), Some("consumer"));
}

#[test]
fn join_errors() {
    let t0 = Instant::now();
    let mut group = Group::new("g".into());
    let mut short = args("", "a");
    short.session_timeout = Duration::from_millis(10);
    assert_eq!(
        now_result(group.join(short, t0, &config())).error,
        Some(ResponseError::InvalidSessionTimeout)
    );
    assert_eq!(
        now_result(group.join(args("ghost", "a"), t0, &config())).error,
        Some(ResponseError::UnknownMemberId)
    );
    let (_a, _join) = join_new(&mut group, "a", t0);
    let mut other = args("", "b");
    other.protocol_type = "connect".into();
    assert_eq!(
        now_result(group.join(other, t0, &config())).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    let mut disjoint = args("", "c");
    disjoint.protocols = vec![("sticky".into(), Bytes::new())];
    assert_eq!(
        now_result(group.join(disjoint, t0, &config())).error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
}

/// A member's JoinGroup with `bytes` of metadata split over two protocols.
fn heavy_args(member_id: &str, client: &str, bytes: usize) -> JoinArgs {
    let mut heavy = args(member_id, client);
    let half = Bytes::from(vec![7u8; bytes / 2]);
    heavy.protocols = vec![("range".into(), half.clone()), ("roundrobin".into(), half)];
    heavy.rebalance_timeout = Duration::from_secs(86_400);
    heavy
}

#[test]
fn an_abandoned_first_join_is_removed_after_its_session_timeout() {
    let t0 = Instant::now();
    let (mut group, leader, follower) = stable_pair(t0);
    let before = group.metadata_bytes();
    let first = now_result(group.join(heavy_args("", "c", 512 << 10), t0, &config()));
    let c = first.member_id;
    // c joins with a day of rebalance timeout; the old members keep heartbeating but never
    // rejoin, so the join phase cannot complete before that day is over.
    let mut join_c = later(group.join(heavy_args(&c, "c", 512 << 10), t0, &config()));
    assert!(group.metadata_bytes() >= before + (512 << 10));
    let session = args("", "c").session_timeout;
    for step in 1..=4 {
        let t = t0 + session / 4 * step;
        for id in [&leader, &follower] {
            let error = group.heartbeat(id, None, 1, t);
            assert_eq!(error, Some(ResponseError::RebalanceInProgress));
        }
        group.tick(t, &config());
        assert!(group.members.contains_key(&c), "still within its session");
    }
    group.tick(t0 + session + Duration::from_millis(1), &config());
    assert!(!group.members.contains_key(&c));
    assert_eq!(group.metadata_bytes(), before, "its metadata is freed");
    assert_eq!(
        ready(&mut join_c).error,
        Some(ResponseError::UnknownMemberId)
    );
    assert_eq!(group.members.len(), 2, "the members that heartbeat stay");
}

#[test]
fn member_and_group_metadata_are_bounded() {
    let t0 = Instant::now();
    let mut group = Group::new("g".into());
    // Two protocols under the per-protocol size but over the per-member total.
    let too_big = heavy_args("", "a", MEMBER_METADATA_BYTES_MAX + 2);
    let result = now_result(group.join(too_big, t0, &config()));
    assert_eq!(result.error, Some(ResponseError::InvalidRequest));
    let member_bytes = MEMBER_METADATA_BYTES_MAX - 64;
    let fit = GROUP_METADATA_BYTES_MAX / member_bytes;
    let mut joins = Vec::new();
    for i in 0..fit {
        let id = now_result(group.join(args("", "m"), t0, &config())).member_id;
        let reply = group.join(
            heavy_args(&id, &format!("m{i}"), member_bytes),
            t0,
            &config(),
        );
        joins.push(later(reply));
    }
    let id = now_result(group.join(args("", "m"), t0, &config())).member_id;
    let last = group.join(heavy_args(&id, "last", member_bytes), t0, &config());
    assert_eq!(
        now_result(last).error,
        Some(ResponseError::GroupMaxSizeReached)
    );
    assert!(group.metadata_bytes() <= GROUP_METADATA_BYTES_MAX);
}

#[test]
fn protocol_is_the_common_favourite() {
    let t0 = Instant::now();
    let mut group = Group::new("g".into());
    let mut a = args("", "a");
    a.protocols = vec![
        ("cooperative-sticky".into(), Bytes::new()),
        ("range".into(), Bytes::new()),
    ];
    a.require_known_member_id = false;
    let mut b = a.clone();
    b.protocols = vec![("range".into(), Bytes::new())];
    let mut ja = later(group.join(a, t0, &config()));
    let _jb = later(group.join(b, t0, &config()));
    group.tick(t0 + Duration::from_millis(150), &config());
    assert_eq!(ready(&mut ja).protocol_name.as_deref(), Some("range"));
}

impl<T> Reply<T> {
    fn now_error(self) -> Option<ResponseError>
    where
        T: HasError,
    {
        match self {
            Reply::Now(result) => result.error(),
            Reply::Later(_) => None,
        }
    }
}

trait HasError {
    fn error(&self) -> Option<ResponseError>;
}

impl HasError for SyncResult {
    fn error(&self) -> Option<ResponseError> {
        self.error
    }
}
