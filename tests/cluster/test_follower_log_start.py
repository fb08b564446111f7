"""A follower's log start follows its leader's, as in Kafka: the log start each Fetch response
carries moves the follower's up (never past its own high watermark), so DeleteRecords and
retention on the leader shrink every replica; and a follower whose log end fell below its
leader's log start while it was down restarts its log empty there instead of fetching
OFFSET_OUT_OF_RANGE forever.

RF 3, min.insync.replicas 2, segments of a few KiB, an idempotent acks=all producer writing
numbered records (`replication_check`). Checked: with every broker up, each follower's log start
(read from its data directory) becomes the leader's after DeleteRecords, and DeleteRecords sent
to a follower answers NOT_LEADER_OR_FOLLOWER. With a follower killed -9 while the leader's log
start moves past its log end: it rejoins the ISR within a bound after its restart, its log start
is the leader's, and once the old leader is killed and it leads, every acknowledged record at or
after the log start reads back exactly once, in order, at its offset."""

import struct

import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from kafka import KafkaAdminClient
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import NotLeaderForPartitionError

from clients import confluent_config, unique_topic
from harness import wait_until
from replication_check import (
    NumberedProducer, create_topic, history_problems, read_partition, wait_isr, wait_isr_whole,
    wait_leader)
from test_follower_fetch import log_end, stored_batches

# --replica-lag-time-max-ms: the killed follower leaves the ISR after 2 s.
REPLICA_LAG_TIME_MAX_MS = 2000
# internal.segment.bytes: a few dozen numbered records per segment, so DeleteRecords and a
# restarted follower cross many segments.
SEGMENT_BYTES = 8192
# Bytes of each numbered record's value.
VALUE_BYTES = 100
# Records acknowledged before DeleteRecords (all up), and while the follower is down.
RECORDS_BEFORE = 300
RECORDS_WHILE_DOWN = 600
ACKS_TIMEOUT_S = 30.0
# From DeleteRecords to every follower's log start moving: the next fetch response carries it
# (a follower's long poll is at most --replica-fetch-wait-max-ms, 500 ms).
FOLLOW_TIMEOUT_S = 10.0
# From a follower's restart to the ISR holding it again: start-up and recovery, the "before
# fetching" step, ListOffsets and the reset, the catch-up, and the ISR expansion through the
# metadata log. Without the reset the follower never rejoins.
REJOIN_TIMEOUT_S = 30.0
# From the leader's kill to a new leader: the session timeout (3 s) and an election.
LEADER_MOVE_TIMEOUT_S = 15.0
# The partition's replicas, the preferred leader first: node 2 is the follower that is killed,
# and the first live ISR member after node 1, so it leads once node 1 dies.
ASSIGNMENT = [[1, 2, 3]]
LEADER, FOLLOWER, OTHER = 1, 2, 3

pytestmark = [
    pytest.mark.cluster_args_if_listed(("--replica-lag-time-max-ms", REPLICA_LAG_TIME_MAX_MS)),
    pytest.mark.timeout(120),
]


def replica_log_start(node, topic, partition=0):
    """A replica's log start as its next open finds it, read from its data directory: the log
    start checkpoint (`log-start-offset`, little-endian i64 at byte 16) clamped up to the first
    segment's base offset (the file name), as `PartitionLog::open` does."""
    directory = node.data_dir / f"{topic}-{partition}"
    first = min(int(path.stem) for path in directory.glob("*.log"))
    checkpoint = directory / "log-start-offset"
    if not checkpoint.exists():
        return first
    return max(first, struct.unpack_from("<q", checkpoint.read_bytes(), 16)[0])


def watermarks(bootstrap, topic):
    """(log start, high watermark) of partition 0, asked of its leader (ListOffsets)."""
    consumer = Consumer(confluent_config(bootstrap, **{"group.id": "sluice-log-start"}))
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        consumer.close()


def delete_records(bootstrap, topic, offset):
    """DeleteRecords through confluent-kafka's AdminClient (sent to the leader); returns the
    low watermark it answered."""
    client = AdminClient(confluent_config(bootstrap))
    futures = client.delete_records([TopicPartition(topic, 0, offset)], request_timeout=15)
    return next(iter(futures.values())).result(timeout=20).low_watermark


def wait_acked(producer, count, what):
    def acked():
        with producer.lock:
            return len(producer.acked) >= count
    wait_until(f"{count} records acknowledged {what} ({producer.error_summary()})", acked,
               ACKS_TIMEOUT_S, interval_s=0.1)


def wait_log_starts(cluster, topic, nodes, expected):
    def moved():
        return all(replica_log_start(cluster.node(n), topic) == expected for n in nodes)
    wait_until(f"the log start of nodes {nodes} reaching {expected}", moved, FOLLOW_TIMEOUT_S,
               interval_s=0.1)


def test_followers_log_starts_follow_delete_records_on_the_leader(cluster):
    topic = unique_topic("log-start")
    create_topic(cluster, topic, assignment=ASSIGNMENT,
                 configs={"internal.segment.bytes": str(SEGMENT_BYTES)})
    wait_leader(cluster, topic, 20.0, expected=LEADER)
    producer = NumberedProducer(cluster.bootstrap(), topic, value_bytes=VALUE_BYTES).start()
    try:
        wait_acked(producer, RECORDS_BEFORE, "before DeleteRecords")
    finally:
        producer.stop()
    wait_isr_whole(cluster, topic, REJOIN_TIMEOUT_S)
    # Inside a segment, not at its base: the followers' starts move into a segment too.
    target = RECORDS_BEFORE // 2 + 1
    assert delete_records(cluster.bootstrap(), topic, target) == target
    assert replica_log_start(cluster.node(LEADER), topic) == target
    wait_log_starts(cluster, topic, [FOLLOWER, OTHER], target)

    # Sent straight to a follower (clients route by metadata first): it is not the leader.
    kafka_admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap([cluster.node(FOLLOWER)]),
                                   request_timeout_ms=15000)
    try:
        with pytest.raises(NotLeaderForPartitionError):
            kafka_admin.delete_records({KafkaTopicPartition(topic, 0): RECORDS_BEFORE},
                                       partition_leader_id=FOLLOWER)
    finally:
        kafka_admin.close()
    assert all(replica_log_start(node, topic) == target for node in cluster.running())


def test_a_follower_below_its_leaders_log_start_rejoins_and_may_lead(cluster):
    topic = unique_topic("log-start-behind")
    create_topic(cluster, topic, assignment=ASSIGNMENT,
                 configs={"internal.segment.bytes": str(SEGMENT_BYTES)})
    wait_leader(cluster, topic, 20.0, expected=LEADER)
    producer = NumberedProducer(cluster.bootstrap(), topic, value_bytes=VALUE_BYTES).start()
    try:
        wait_acked(producer, RECORDS_BEFORE, "before the follower's kill")
        follower = cluster.node(FOLLOWER)
        follower.kill9()
        follower_end = log_end(stored_batches(follower.data_dir, topic, 0))
        wait_isr(cluster, topic, [LEADER, OTHER], REJOIN_TIMEOUT_S)
        wait_acked(producer, RECORDS_BEFORE + RECORDS_WHILE_DOWN, "while the follower is down")
        _, high_watermark = watermarks(cluster.bootstrap(), topic)
        # Far past the killed follower's log end: the leader took hundreds of records since.
        assert high_watermark > follower_end + RECORDS_WHILE_DOWN // 2, (follower_end,
                                                                        high_watermark)
        log_start = delete_records(cluster.bootstrap(), topic, high_watermark)
        assert log_start == high_watermark
        wait_log_starts(cluster, topic, [OTHER], log_start)

        follower.start()
        wait_isr_whole(cluster, topic, REJOIN_TIMEOUT_S)
        wait_log_starts(cluster, topic, [FOLLOWER], log_start)
    finally:
        producer.stop()
    assert watermarks(cluster.bootstrap(), topic)[0] == log_start
    wait_isr_whole(cluster, topic, REJOIN_TIMEOUT_S)

    cluster.node(LEADER).kill9()
    wait_leader(cluster, topic, LEADER_MOVE_TIMEOUT_S, other_than=LEADER, expected=FOLLOWER)
    assert watermarks(cluster.bootstrap(cluster.running()), topic)[0] == log_start
    with producer.lock:
        acked = {n: offset for n, (offset, _) in producer.acked.items() if offset >= log_start}
    assert len(acked) >= RECORDS_WHILE_DOWN // 4, len(acked)
    records = read_partition(cluster.bootstrap(cluster.running()), topic, set(acked))
    assert records and records[0][0] == log_start, records[:1]
    problems = history_problems(records, acked)
    assert not producer.fatal_errors(), producer.fatal_errors()
    assert not problems, f"{len(records)} read, {len(acked)} acknowledged: " + "; ".join(problems)
