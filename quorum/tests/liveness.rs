//! Liveness as the leader sees it: when it last heard from each voter and how far each voter's
//! log matches its own, with real nodes on loopback TCP.

mod common;

use std::time::{Duration, Instant};

use common::*;
use quorum::PeerStatus;

const TICK_FAST: Duration = Duration::from_millis(30);

fn peer(status: &Status, id: u64) -> PeerStatus {
    *status
        .peers
        .iter()
        .find(|peer| peer.id == id)
        .unwrap_or_else(|| panic!("voter {id} is not among the peers {:?}", status.peers))
}

#[test]
fn the_leader_hears_every_voter_and_knows_its_matched_index() {
    let dir = TestDir::new("liveness-view");
    let addresses = free_addresses(3);
    let nodes: Vec<Node> = (1..=3)
        .map(|id| Node::start(config(id, &addresses, &dir.path, TICK_FAST)).unwrap())
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let leader_id = wait_for_leader(&refs);
    let leader = nodes.iter().find(|node| node.id == leader_id).unwrap();
    let index = propose_until_committed(leader, b"one entry");
    let proposed_at = Instant::now();
    wait_until("every follower matches the leader's commit", || {
        let status = leader.status();
        status.position.commit_index >= index
            && status
                .peers
                .iter()
                .all(|peer| peer.matched.is_some_and(|matched| matched >= index))
    });
    wait_until("the leader hears every follower after the proposal", || {
        leader
            .status()
            .peers
            .iter()
            .all(|peer| peer.last_heard.is_some_and(|heard| heard > proposed_at))
    });
    let status = leader.status();
    assert_eq!(status.peers.len(), 2, "the leader is not its own peer");
    assert!(status.position.last_index >= status.position.commit_index);
    assert!(status.position.applied_index <= status.position.commit_index);
    for follower in nodes.iter().filter(|node| node.id != leader_id) {
        let status = follower.status();
        assert!(
            status.peers.iter().all(|peer| peer.matched.is_none()),
            "a follower tracks no matched index: {:?}",
            status.peers
        );
        assert!(
            peer(&status, leader_id).last_heard.is_some(),
            "a follower hears its leader"
        );
    }
}

#[test]
fn a_stopped_voter_is_no_longer_heard_and_a_restarted_one_is_heard_again() {
    let dir = TestDir::new("liveness-stop");
    let addresses = free_addresses(3);
    let mut nodes: Vec<Node> = (1..=3)
        .map(|id| Node::start(config(id, &addresses, &dir.path, TICK_FAST)).unwrap())
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    let leader_id = wait_for_leader(&refs);
    let at = nodes.iter().position(|node| node.id != leader_id).unwrap();
    let stopped = nodes.remove(at);
    let (stopped_id, stopped_config) = (stopped.id, stopped.kill());
    let killed_at = Instant::now();
    let leader = nodes.iter().find(|node| node.id == leader_id).unwrap();
    let live_id = nodes.iter().find(|node| node.id != leader_id).unwrap().id;

    // The live follower keeps being heard; the stopped one never again.
    wait_until("the leader hears the live follower after the kill", || {
        peer(&leader.status(), live_id)
            .last_heard
            .is_some_and(|heard| heard > killed_at + TICK_FAST * 5)
    });
    // Messages it sent just before it stopped may still be handled a moment later.
    let last_heard = peer(&leader.status(), stopped_id).last_heard;
    assert!(
        last_heard.is_some_and(|heard| heard <= killed_at + TICK_FAST),
        "the stopped voter was heard after it stopped: {last_heard:?}, killed at {killed_at:?}"
    );
    let index = propose_until_committed(leader, b"while one voter is down");
    let status = leader.status();
    assert_eq!(peer(&status, stopped_id).last_heard, last_heard);
    assert!(
        peer(&status, stopped_id).matched.unwrap_or(0) < index,
        "a stopped voter cannot match an entry proposed after it stopped"
    );

    let restarted_at = Instant::now();
    let restarted = Node::start(stopped_config).unwrap();
    wait_until("the leader hears the restarted voter again", || {
        peer(&leader.status(), stopped_id)
            .last_heard
            .is_some_and(|heard| heard > restarted_at)
    });
    wait_until("the restarted voter's log matches again", || {
        peer(&leader.status(), stopped_id)
            .matched
            .is_some_and(|matched| matched >= index)
    });
    drop(restarted);
}
