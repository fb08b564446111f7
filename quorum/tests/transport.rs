//! Bad peers on the controller port: each bad connection is closed, the node keeps working.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

fn handshake(sender: u64, cluster_id: &str) -> Vec<u8> {
    let mut bytes = b"SLQR".to_vec();
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&sender.to_le_bytes());
    bytes.push(cluster_id.len() as u8);
    bytes.extend_from_slice(cluster_id.as_bytes());
    bytes
}

/// Sends `bytes` and checks the node closes the connection (EOF or reset) within the bound.
fn assert_closed_after(address: std::net::SocketAddr, bytes: &[u8], what: &str) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut buffer = [0u8; 16];
    match stream.read(&mut buffer) {
        Ok(0) => {}
        Ok(read) => panic!("{what}: the node sent {read} bytes"),
        Err(error) => assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "{what}: the connection was not closed ({error})"
        ),
    }
}

#[test]
fn garbage_and_oversized_frames_close_the_connection_and_the_node_keeps_working() {
    let dir = TestDir::new("garbage");
    let addresses = free_addresses(3);
    let nodes: Vec<Node> = (1..=3)
        .map(|id| {
            Node::start(config(id, &addresses, &dir.path, Duration::from_millis(30))).unwrap()
        })
        .collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_for_leader(&refs);
    propose_until_committed(&nodes[0], b"before");
    let target = addresses[0];

    assert_closed_after(
        target,
        b"GET / HTTP/1.1\r\n\r\nand more garbage",
        "garbage instead of a handshake",
    );
    assert_closed_after(target, &handshake(2, "another-cluster"), "another cluster");
    assert_closed_after(target, &handshake(9, "test-cluster"), "an unknown sender");
    assert_closed_after(
        target,
        &handshake(1, "test-cluster"),
        "the node itself as sender",
    );
    let mut oversized = handshake(2, "test-cluster");
    oversized.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_closed_after(target, &oversized, "a frame over the limit");
    let mut zero = handshake(2, "test-cluster");
    zero.extend_from_slice(&0u32.to_le_bytes());
    assert_closed_after(target, &zero, "an empty frame");
    let mut undecodable = handshake(2, "test-cluster");
    undecodable.extend_from_slice(&8u32.to_le_bytes());
    undecodable.extend_from_slice(&[0xff; 8]);
    assert_closed_after(target, &undecodable, "a payload that is not a message");

    for node in &nodes {
        propose_until_committed(node, format!("after-{}", node.id).as_bytes());
    }
    let last = nodes
        .iter()
        .map(|node| node.status().applied_index)
        .max()
        .unwrap();
    wait_until("every node applies everything", || {
        nodes.iter().all(|node| node.status().applied_index >= last)
    });
}
