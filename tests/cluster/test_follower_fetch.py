"""Followers replicate: on an RF 3 topic every follower's log becomes the leader's, byte for byte
(offsets and leader epochs kept), and once the leader is killed -9 and leadership has moved,
the new leader serves every record produced before the kill; the replicas then follow the new
leaders, the restarted old leader too.

Until the leader waits for its followers (acks=all waiting for the ISR), the test waits itself
until every follower's log end, read from its data directory, matches the leader's, and only
then kills the leader. Guarantee checked: a record acknowledged with acks=all and copied by
every follower survives the leader's death, at the same offset, with the same key and value."""

import struct
import time

from clients import create_topic, produce, read_all, unique_topic
from harness import wait_until
from observe import partitions_of, wait_led

PARTITIONS = 3
RECORDS_PER_PARTITION = 300
# Followers fetch with a 500 ms long poll: copying a few hundred records takes well under this.
REPLICATION_TIMEOUT_S = 20.0
# Fencing after the 3 s session timeout the harness gives brokers, plus the election of a new
# leader and every survivor applying it.
LEADERSHIP_MOVE_TIMEOUT_S = 30.0

# RecordBatch v2: baseOffset (8), batchLength (4), partitionLeaderEpoch (4), magic (1), crc (4),
# attributes (2), lastOffsetDelta (4).
_BATCH_PREFIX = struct.Struct(">qi")
_LAST_OFFSET_DELTA_AT = 23


def stored_batches(data_dir, topic, partition):
    """[(base offset, batch bytes)] of the whole batches in a partition's segment files, in
    order. Stops at the first zero length (preallocated space) or partial batch."""
    directory = data_dir / f"{topic}-{partition}"
    batches = []
    for segment in sorted(directory.glob("*.log")):
        data = segment.read_bytes()
        position = 0
        while position + _BATCH_PREFIX.size <= len(data):
            base_offset, length = _BATCH_PREFIX.unpack_from(data, position)
            end = position + 12 + length
            if length <= 0 or end > len(data):
                break
            batches.append((base_offset, data[position:end]))
            position = end
    return batches


def log_end(batches):
    if not batches:
        return 0
    base_offset, batch = batches[-1]
    return base_offset + struct.unpack_from(">i", batch, _LAST_OFFSET_DELTA_AT)[0] + 1


def test_followers_copy_the_leader_and_serve_everything_after_its_kill9(cluster):
    nodes = list(cluster.nodes.values())
    topic = unique_topic("follower-fetch")
    create_topic(cluster.bootstrap(), topic, PARTITIONS, 3)
    for node in nodes:
        wait_led(node, topic, PARTITIONS)
    records = [(p, f"{p}-{i}".encode(), f"value-{p}-{i}".encode() * 8)
               for i in range(RECORDS_PER_PARTITION) for p in range(PARTITIONS)]
    delivered = produce(cluster.bootstrap(), topic, records)
    assert len(delivered) == len(records)
    assignment = partitions_of(nodes[0], topic)

    def replicas_match_leaders():
        for partition, entry in assignment.items():
            leader = cluster.node(entry["leader"])
            expected = stored_batches(leader.data_dir, topic, partition)
            if log_end(expected) != RECORDS_PER_PARTITION:
                return False
            for follower in entry["replicas"]:
                if stored_batches(cluster.node(follower).data_dir, topic, partition) != expected:
                    return False
        return True

    started = time.monotonic()
    wait_until("every follower's log equal to its leader's", replicas_match_leaders,
               REPLICATION_TIMEOUT_S, interval_s=0.2)
    print(f"\nfollowers caught up {time.monotonic() - started:.2f}s after the last acknowledgement")

    killed = cluster.node(assignment[0]["leader"])
    survivors = [node for node in nodes if node.id != killed.id]
    killed.kill9()

    def leadership_moved():
        for node in survivors:
            found = partitions_of(node, topic)
            if not found or any(p["leader"] in (killed.id, -1) for p in found.values()):
                return None
        return found

    moved = wait_until(f"every partition of {topic} led by a survivor of {killed.id}",
                       leadership_moved, LEADERSHIP_MOVE_TIMEOUT_S, interval_s=0.2)
    assert all(moved[p]["leader_epoch"] > assignment[p]["leader_epoch"]
               for p in range(PARTITIONS) if assignment[p]["leader"] == killed.id)
    read = read_all(cluster.bootstrap(survivors), topic, PARTITIONS, len(records))
    got = {(partition, key): (offset, value) for partition, offset, key, value in read}
    assert len(read) == len(records), "every record read exactly once"
    for partition, key, value in records:
        assert got.get((partition, key)) == (delivered[(partition, key)], value), (partition, key)

    # The surviving follower of each moved partition now fetches from its new leader, and the
    # killed broker, restarted, follows them all: every replica's log becomes the new leader's.
    more = [(p, f"{p}-after-{i}".encode(), b"after") for i in range(50) for p in range(PARTITIONS)]
    produce(cluster.bootstrap(survivors), topic, more)
    killed.start()
    total = RECORDS_PER_PARTITION + 50

    def every_replica_matches_its_new_leader():
        found = partitions_of(survivors[0], topic)
        for partition, entry in found.items():
            expected = stored_batches(cluster.node(entry["leader"]).data_dir, topic, partition)
            if log_end(expected) != total:
                return False
            for replica in entry["replicas"]:
                if stored_batches(cluster.node(replica).data_dir, topic, partition) != expected:
                    return False
        return True

    wait_until("every replica equal to its new leader, the restarted broker too",
               every_replica_matches_its_new_leader, REPLICATION_TIMEOUT_S, interval_s=0.2)
