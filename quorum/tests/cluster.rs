//! Quorums of real nodes: each on its own glommio executor thread, talking over loopback TCP,
//! persisting to its own temp directory.

mod common;

use std::time::{Duration, Instant};

use common::*;

const TICK_FAST: Duration = Duration::from_millis(30);

fn start_cluster(size: usize, dir: &TestDir, tick: Duration) -> Vec<Node> {
    let addresses = free_addresses(size);
    (1..=size as u64)
        .map(|id| Node::start(config(id, &addresses, &dir.path, tick)).unwrap())
        .collect()
}

fn by_id(nodes: &[Node], id: u64) -> &Node {
    nodes.iter().find(|node| node.id == id).unwrap()
}

#[test]
fn one_voter_commits_alone_and_restarts_with_its_state() {
    let dir = TestDir::new("one-voter");
    let addresses = free_addresses(1);
    let node = Node::start(config(1, &addresses, &dir.path, TICK_FAST)).unwrap();
    let first = node
        .propose(b"first")
        .expect("a single voter leads at once");
    let last = propose_many(&node, "entry", 50, 8);
    assert!(last > first);
    assert!(
        matches!(node.propose(b""), Err(quorum::ProposeError::Empty)),
        "an empty proposal is refused, not left to time out"
    );
    assert_eq!(node.status().leader.leader_id, Some(1));
    let digest = node.digest();
    assert_eq!(digest.count, 51);
    let config = node.shutdown();

    let node = Node::start(config).unwrap();
    wait_until("the restarted voter re-applies its log", || {
        node.digest() == digest
    });
    let after = node.propose(b"after restart").unwrap();
    assert!(after > last);
}

#[test]
fn three_voters_agree_on_leaders_and_on_every_applied_entry() {
    let dir = TestDir::new("three");
    let nodes = start_cluster(3, &dir, TICK_FAST);
    let refs: Vec<&Node> = nodes.iter().collect();
    let leader = wait_for_leader(&refs);
    // Proposals through every node: followers forward theirs to the leader.
    let mut last = 0;
    for node in &nodes {
        last = last.max(propose_many(node, &format!("from-{}", node.id), 60, 10));
    }
    let follower = nodes.iter().find(|node| node.id != leader).unwrap();
    last = last.max(propose_until_committed(follower, b"from a follower"));
    wait_until("every node applies everything", || {
        nodes.iter().all(|node| node.status().applied_index >= last)
    });
    let expected = applied_data(&nodes[0]);
    assert_eq!(
        expected.iter().filter(|(_, data)| !data.is_empty()).count(),
        181
    );
    for node in &nodes[1..] {
        assert_eq!(
            applied_data(node),
            expected,
            "node {} applied a different log",
            node.id
        );
    }
    assert_one_leader_per_term(&refs);
}

#[test]
fn a_killed_leader_is_replaced_and_catches_up_after_restart() {
    let dir = TestDir::new("failover");
    // Default timings (100 ms tick, 10-tick election timeout): the reported figure is realistic.
    // A proposal forwarded to the dead leader is lost; a short timeout retries it sooner.
    let addresses = free_addresses(3);
    let nodes: Vec<Node> = (1..=3)
        .map(|id| {
            let mut config = config(id, &addresses, &dir.path, quorum::config::TICK_DEFAULT);
            config.propose_timeout = Duration::from_millis(500);
            Node::start(config).unwrap()
        })
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let old_leader = wait_for_leader(&refs);
    propose_many(by_id(&nodes, old_leader), "before", 20, 5);
    let (killed, survivors): (Vec<Node>, Vec<Node>) =
        nodes.into_iter().partition(|node| node.id == old_leader);
    let killed_at = Instant::now();
    let config = killed.into_iter().next().unwrap().kill();

    let refs: Vec<&Node> = survivors.iter().collect();
    let new_leader = wait_for_leader(&refs);
    let elected = killed_at.elapsed();
    let index = propose_until_committed(&survivors[0], b"after the leader died");
    let failover = killed_at.elapsed();
    assert_ne!(new_leader, old_leader);
    eprintln!(
        "leader failover: new leader elected after {elected:?}, first commit after {failover:?}"
    );
    assert!(
        failover < Duration::from_secs(10),
        "failover took {failover:?}"
    );

    let last = propose_many(by_id(&survivors, new_leader), "while-down", 20, 5).max(index);
    let restarted = Node::start(config).unwrap();
    wait_until("the restarted node catches up", || {
        restarted.status().applied_index >= last
    });
    let digest = survivors[0].digest();
    wait_until("the restarted node reaches the same state", || {
        let status = restarted.status();
        status.applied_index >= digest.last_index
            && restarted.digest().hash == survivors[0].digest().hash
            || restarted.digest() == survivors[0].digest()
    });
    assert_eq!(restarted.status().leader.leader_id, Some(new_leader));
    let mut all = survivors.iter().collect::<Vec<_>>();
    all.push(&restarted);
    assert_one_leader_per_term(&all);
}

#[test]
fn a_minority_cannot_commit_until_a_voter_returns() {
    let dir = TestDir::new("minority");
    let addresses = free_addresses(3);
    let mut configs: Vec<_> = (1..=3)
        .map(|id| config(id, &addresses, &dir.path, TICK_FAST))
        .collect();
    for config in &mut configs {
        config.propose_timeout = Duration::from_secs(1);
    }
    let mut nodes: Vec<Node> = configs
        .into_iter()
        .map(|config| Node::start(config).unwrap())
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_for_leader(&refs);
    propose_many(&nodes[0], "before", 10, 5);
    let third = nodes.pop().unwrap().kill();
    let _second = nodes.pop().unwrap().kill();
    let alone = &nodes[0];
    // With check_quorum a leader steps down once it misses a quorum; a proposal then fails at
    // once (no leader) or times out: both are retriable.
    for attempt in 0..3 {
        let error = alone
            .propose(format!("lonely-{attempt}").as_bytes())
            .expect_err("a minority commits nothing");
        assert!(error.is_retriable(), "{error}");
    }
    let committed_before = alone.digest();
    let back = Node::start(third).unwrap();
    let index = propose_until_committed(alone, b"majority again");
    assert!(index > committed_before.last_index);
    wait_until("the returning voter applies the new entry", || {
        back.status().applied_index >= index
    });
}
