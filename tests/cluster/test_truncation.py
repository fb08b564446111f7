"""Truncation of a divergent suffix (KIP-101, KIP-279): a leader cut off from the other brokers
(iptables, clients still reach it) keeps taking acks=1 writes that nobody copies, while the
others fence it and elect a new leader that takes other writes. When the old leader returns it
follows the new one: before fetching it asks OffsetForLeaderEpoch where its latest epoch ends in
the new leader's log and truncates there, so its unreplicated writes are gone and every
replica's log is the new leader's byte for byte. OffsetForLeaderEpoch answers
FENCED_LEADER_EPOCH for an old current epoch and NOT_LEADER_OR_FOLLOWER at a follower."""

import struct

import cluster_wire
import kafka_wire
from clients import create_topic, produce, unique_topic
from harness import wait_until
from kafka_wire import frame, request_header, string
from observe import partitions_of, wait_led
from test_follower_fetch import log_end, stored_batches

API_OFFSET_FOR_LEADER_EPOCH = 23
ERROR_FENCED_LEADER_EPOCH = 74
RECORDS_BEFORE = 40
DIVERGENT_WRITES = 15
RECORDS_AFTER = 25
REPLICATION_TIMEOUT_S = 30.0
# Fencing after the harness's session timeout, an election, and every survivor applying it.
LEADERSHIP_MOVE_TIMEOUT_S = 40.0


def offset_for_leader_epoch(node, topic, partition, current_epoch, epoch, timeout_s=5.0):
    """OffsetForLeaderEpoch v3 at `node` for one partition: (error, leader_epoch, end_offset)."""
    correlation_id = cluster_wire._next_correlation()
    body = struct.pack(">i", -1) + struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">iii", partition, current_epoch, epoch)
    request = frame(request_header(API_OFFSET_FOR_LEADER_EPOCH, 3, correlation_id) + body)
    reader = cluster_wire._exchange(node, request, correlation_id, timeout_s)
    reader.int32()  # throttle_time_ms
    assert reader.int32() == 1 and reader.string() == topic
    assert reader.int32() == 1
    error, index = reader.int16(), reader.int32()
    assert index == partition
    answer = (error, reader.int32(), reader.int64())
    reader.assert_done()
    return answer


def test_a_returning_leader_truncates_its_divergent_suffix(cluster):
    cluster.require_faults()
    nodes = list(cluster.nodes.values())
    topic = unique_topic("truncation")
    create_topic(cluster.bootstrap(), topic, 1, 3)
    for node in nodes:
        wait_led(node, topic, 1)
    produce(cluster.bootstrap(), topic,
            [(0, f"before-{i}".encode(), b"before") for i in range(RECORDS_BEFORE)])
    before = partitions_of(nodes[0], topic)[0]
    old_leader = cluster.node(before["leader"])
    others = [node for node in nodes if node.id != old_leader.id]

    def replicas_equal(expected_end):
        entry = partitions_of(others[0], topic)[0]
        expected = stored_batches(cluster.node(entry["leader"]).data_dir, topic, 0)
        if log_end(expected) != expected_end:
            return None
        for replica in entry["replicas"]:
            if stored_batches(cluster.node(replica).data_dir, topic, 0) != expected:
                return None
        return expected

    wait_until("every replica holding the first records", lambda: replicas_equal(RECORDS_BEFORE),
               REPLICATION_TIMEOUT_S, interval_s=0.2)

    for other in others:
        cluster.cut(old_leader.id, other.id)
    # The cut-off leader still thinks it leads: it appends acks=1 writes nobody copies.
    divergent = 0
    for i in range(DIVERGENT_WRITES):
        error, _ = cluster_wire.produce_one(old_leader, topic, 0, value=f"divergent-{i}".encode())
        divergent += error == cluster_wire.ERROR_NONE
    assert divergent > 0, "the cut-off leader took no acks=1 write"

    def new_leader_elected():
        entry = partitions_of(others[0], topic).get(0)
        if entry and entry["leader"] not in (old_leader.id, -1):
            return entry
        return None

    moved = wait_until("a new leader among the others", new_leader_elected,
                       LEADERSHIP_MOVE_TIMEOUT_S, interval_s=0.2)
    assert moved["leader_epoch"] > before["leader_epoch"]
    new_leader = cluster.node(moved["leader"])
    wait_led(others[1], topic, 1)
    produce(cluster.bootstrap(others), topic,
            [(0, f"after-{i}".encode(), b"after") for i in range(RECORDS_AFTER)])
    # The old epoch is fenced at the new leader; the new one ends at its log end there.
    assert offset_for_leader_epoch(new_leader, topic, 0, before["leader_epoch"], 0)[0] == (
        ERROR_FENCED_LEADER_EPOCH)
    error, epoch, end = offset_for_leader_epoch(new_leader, topic, 0, moved["leader_epoch"],
                                                before["leader_epoch"])
    assert (error, epoch, end) == (0, before["leader_epoch"], RECORDS_BEFORE)
    follower = next(node for node in others if node.id != new_leader.id)
    assert offset_for_leader_epoch(follower, topic, 0, -1, 0)[0] == (
        cluster_wire.ERROR_NOT_LEADER_OR_FOLLOWER)

    cluster.heal()
    total = RECORDS_BEFORE + RECORDS_AFTER
    final = wait_until("every replica, the returned leader too, equal to the new leader",
                       lambda: replicas_equal(total), REPLICATION_TIMEOUT_S * 2, interval_s=0.2)
    returned = stored_batches(old_leader.data_dir, topic, 0)
    assert returned == final
    assert not any(b"divergent-" in batch for _, batch in returned), "a divergent write survived"
