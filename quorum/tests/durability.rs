//! What survives on disk: compaction keeps the log bounded, restarts restore the same state, a
//! node that was down past a compaction catches up by snapshot, a torn log tail is cut, and a
//! directory that does not fit together is refused.

mod common;

use std::time::Duration;

use common::*;

const TICK_FAST: Duration = Duration::from_millis(30);

fn log_path(dir: &std::path::Path) -> std::path::PathBuf {
    let files = log_files(dir);
    dir.join(&files.last().expect("a log file").0)
}

#[test]
fn compaction_bounds_the_log_and_a_lagging_node_catches_up_by_snapshot() {
    let dir = TestDir::new("compaction");
    let addresses = free_addresses(3);
    let configs: Vec<_> = (1..=3)
        .map(|id| {
            let mut config = config(id, &addresses, &dir.path, TICK_FAST);
            config.snapshot_every = 500;
            config
        })
        .collect();
    let mut nodes: Vec<Node> = configs
        .into_iter()
        .map(|config| Node::start(config).unwrap())
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let leader = wait_for_leader(&refs);
    let leader = nodes.iter().position(|node| node.id == leader).unwrap();
    propose_many(&nodes[leader], "early", 10, 5);
    let lagging_at = (leader + 1) % 3;
    let lagging = nodes.remove(lagging_at);
    let lagging_index = lagging.status().applied_index;
    let lagging_config = lagging.kill();
    let leader = nodes
        .iter()
        .position(|node| node.status().is_leader)
        .unwrap_or(0);

    let entries = 4_000;
    let started = std::time::Instant::now();
    let last = propose_many(&nodes[leader], "bulk", entries, 100);
    let elapsed = started.elapsed();
    eprintln!(
        "{entries} entries committed by 2 of 3 voters, 100 in flight, in {elapsed:?} ({:.0} entries/s)",
        entries as f64 / elapsed.as_secs_f64()
    );
    wait_until("both running nodes apply everything", || {
        nodes.iter().all(|node| node.status().applied_index >= last)
    });
    for node in &nodes {
        // 500 entries between snapshots, plus what was in flight, at about 50 bytes a frame;
        // during a compaction the old and the new log are both there for a moment.
        let files = log_files(&node.config.dir);
        let log_bytes: u64 = files.iter().map(|(_, bytes)| bytes).sum();
        assert!(
            files.len() <= 2 && log_bytes < 128 * 1024,
            "node {}: {files:?} after {entries} entries",
            node.id
        );
        let unbounded = entries as u64 * 40;
        assert!(
            log_bytes * 4 < unbounded,
            "node {}: {log_bytes} bytes is not far below {unbounded}",
            node.id
        );
    }

    let restarted = Node::start(lagging_config).unwrap();
    wait_until("the lagging node catches up", || {
        restarted.status().applied_index >= last
    });
    wait_until("the lagging node reaches the leader's state", || {
        restarted.digest() == nodes[leader].digest()
    });
    let restored = restarted.recorded.lock().unwrap().restored.clone();
    assert!(
        restored.iter().any(|index| *index > lagging_index + 500),
        "the lagging node installed a snapshot from the leader (restored {restored:?})"
    );

    // A clean restart restores the snapshot and replays only the log after it.
    let digest = nodes[leader].digest();
    let config = nodes.remove(leader).shutdown();
    let again = Node::start(config).unwrap();
    wait_until("the restarted node has the same state", || {
        again.digest() == digest
    });
    let recorded = again.recorded.lock().unwrap().clone();
    assert_eq!(recorded.restored.len(), 1, "restored from its own snapshot");
    assert!(
        recorded.applied.len() <= 600,
        "replayed {} entries after the snapshot",
        recorded.applied.len()
    );
}

#[test]
fn a_torn_log_tail_is_cut_and_the_node_catches_up_from_the_others() {
    let dir = TestDir::new("torn");
    let addresses = free_addresses(3);
    let mut nodes: Vec<Node> = (1..=3)
        .map(|id| Node::start(config(id, &addresses, &dir.path, TICK_FAST)).unwrap())
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let leader = wait_for_leader(&refs);
    let last = propose_many(
        nodes.iter().find(|node| node.id == leader).unwrap(),
        "before",
        30,
        5,
    );
    wait_until("every node applies everything", || {
        nodes.iter().all(|node| node.status().applied_index >= last)
    });
    let follower_at = nodes.iter().position(|node| node.id != leader).unwrap();
    let config = nodes.remove(follower_at).kill();

    // Cut the follower's log in the middle of its last frame.
    let path = log_path(&config.dir);
    let length = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(length - 5)
        .unwrap();

    let restarted = Node::start(config).unwrap();
    let leader_node = nodes.iter().find(|node| node.id == leader).unwrap();
    let after = propose_until_committed(leader_node, b"after the cut");
    wait_until("the cut node catches up", || {
        restarted.status().applied_index >= after
    });
    wait_until("the cut node reaches the same state", || {
        restarted.digest() == leader_node.digest()
    });
    for node in &nodes {
        let applied = applied_data(node);
        assert_eq!(
            applied
                .iter()
                .filter(|(_, data)| data.starts_with(b"before"))
                .count(),
            30,
            "node {}",
            node.id
        );
    }
}

#[test]
fn a_lone_voter_loses_only_the_torn_entry() {
    let dir = TestDir::new("torn-alone");
    let addresses = free_addresses(1);
    let node = Node::start(config(1, &addresses, &dir.path, TICK_FAST)).unwrap();
    propose_many(&node, "entry", 20, 4);
    let config = node.shutdown();
    let path = log_path(&config.dir);
    let length = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(length - 3)
        .unwrap();

    let node = Node::start(config).unwrap();
    let index = node.propose(b"after").unwrap();
    let applied = applied_data(&node);
    let entries: Vec<&[u8]> = applied.iter().map(|(_, data)| data.as_slice()).collect();
    assert_eq!(
        entries.len(),
        20,
        "19 entries before the cut frame, then the new one: {entries:?}"
    );
    assert_eq!(entries.last().copied(), Some(&b"after"[..]));
    assert_eq!(applied.last().unwrap().0, index);
}

#[test]
fn an_inconsistent_directory_is_refused_with_a_reason() {
    let dir = TestDir::new("refuse");
    let addresses = free_addresses(3);
    let alone = config(1, &addresses[..1], &dir.path, TICK_FAST);
    let node = Node::start(alone.clone()).unwrap();
    node.propose(b"one").unwrap();
    node.shutdown();

    let three = config(1, &addresses, &dir.path, TICK_FAST);
    let error = Node::start(three)
        .err()
        .expect("another voter set is refused");
    assert!(error.contains("voters"), "{error}");

    let hard_state = alone.dir.join("hardstate");
    let mut bytes = std::fs::read(&hard_state).unwrap();
    *bytes.last_mut().unwrap() ^= 0x55;
    std::fs::write(&hard_state, bytes).unwrap();
    let error = Node::start(alone.clone())
        .err()
        .expect("a corrupt hard state is refused");
    assert!(error.contains("checksum"), "{error}");

    std::fs::remove_file(&hard_state).unwrap();
    let error = Node::start(alone)
        .err()
        .expect("a log without a hard state is refused");
    assert!(error.contains("hardstate"), "{error}");
}

#[test]
fn a_snapshot_the_state_machine_refuses_stops_the_start_with_a_reason() {
    let dir = TestDir::new("unrestorable");
    let addresses = free_addresses(1);
    let mut alone = config(1, &addresses, &dir.path, TICK_FAST);
    alone.snapshot_every = 8;
    let node = Node::start(alone.clone()).unwrap();
    propose_many(&node, "entry", 20, 4);
    let config = node.shutdown();

    let error = Node::start_refusing_restore(config.clone())
        .err()
        .expect("a snapshot the state machine cannot read is refused");
    assert!(error.contains("cannot restore the snapshot"), "{error}");
    // Nothing was changed on disk: a program that reads it starts from it.
    let node = Node::start(config).unwrap();
    assert_eq!(node.recorded.lock().unwrap().restored.len(), 1);
}
