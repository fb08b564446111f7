"""Fetch from followers (KIP-392): brokers in racks a, b and c, `--replica-selector-class`
rack-aware. A consumer in a follower's rack is sent there by the leader (Fetch v11's
`preferred_read_replica`) and reads every acknowledged record from that follower, up to the
follower's own high watermark; once the follower is killed -9 it goes back to the leader and
loses nothing.

Guarantees checked: a follower serves a consumer only what the leader has committed (its high
watermark never passes the leader's), never beyond its own log (OFFSET_OUT_OF_RANGE, which sends
librdkafka back to the leader), and a consumer reads every acknowledged record exactly once and
in order, whichever replica served it. Which broker librdkafka fetched from is read from its
statistics (a partition's `broker` next to its `leader`)."""

import json
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

import cluster_wire
from clients import confluent_config, create_topic, produce, unique_topic
from harness import ClusterError, wait_until
from observe import wait_led

RACKS = {1: "a", 2: "b", 3: "c"}
RECORDS_BEFORE = 300
RECORDS_AFTER = 200
# A killed follower leaves the ISR after this long without fetching, so acks=all goes on.
LAG_MAX_MS = 2000
# Long enough for librdkafka to be sent to the follower and read everything there.
CONSUME_TIMEOUT_S = 30.0
# The fenced follower (3 s session timeout) leaves the ISR, and the consumer goes back to the
# leader: a few rounds of librdkafka's fetch backoff.
FAILOVER_TIMEOUT_S = 30.0

pytestmark = [
    pytest.mark.cluster_args("--replica-selector-class", "RackAwareReplicaSelector",
                             "--replica-lag-time-max-ms", str(LAG_MAX_MS)),
    pytest.mark.cluster_node_args({node: ["--broker-rack", rack] for node, rack in RACKS.items()}),
]


def _records(prefix, count):
    return [(0, f"{prefix}-{i}".encode(), f"value-{prefix}-{i}".encode()) for i in range(count)]


class RackConsumer:
    """A confluent-kafka consumer with `client.rack`, reading partition 0 from the beginning,
    that remembers which broker librdkafka fetched the partition from (its statistics)."""

    def __init__(self, bootstrap, topic, rack):
        self.topic = topic
        self.fetched_from = []
        self.records = []
        self.consumer = Consumer(confluent_config(bootstrap, **{
            "group.id": "sluice-fetch-from-follower", "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "client.rack": rack,
            "statistics.interval.ms": 100, "stats_cb": self._stats}))
        self.consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])

    def _stats(self, text):
        partition = json.loads(text).get("topics", {}).get(self.topic, {}).get(
            "partitions", {}).get("0")
        if partition and partition.get("broker", -1) >= 0:
            self.fetched_from.append(partition["broker"])

    def read_until(self, count, timeout_s):
        deadline = time.monotonic() + timeout_s
        while len(self.records) < count and time.monotonic() < deadline:
            message = self.consumer.poll(0.1)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() != KafkaError._PARTITION_EOF:
                    raise ClusterError(f"consume error: {message.error()}")
                continue
            self.records.append((message.offset(), message.key(), message.value()))
        if len(self.records) < count:
            raise ClusterError(f"read {len(self.records)} of {count} records within {timeout_s}s")

    def poll_stats_until(self, what, probe, timeout_s):
        """Polls (statistics come through poll) until `probe()` holds."""
        def polled():
            message = self.consumer.poll(0.1)
            assert message is None or message.error() is not None, "no record is left to read"
            return probe()
        return wait_until(what, polled, timeout_s, interval_s=0)

    def close(self):
        self.consumer.close()


def _follower_named(leader, topic, rack, follower_id):
    answer = cluster_wire.fetch_v11(leader, topic, 0, rack_id=rack)
    return answer if answer["preferred_read_replica"] == follower_id else None


def test_a_consumer_reads_from_the_follower_in_its_rack_then_from_the_leader(cluster):
    nodes = list(cluster.nodes.values())
    topic = unique_topic("rack")
    create_topic(cluster.bootstrap(), topic, 1, 3)
    entry = wait_led(nodes[0], topic, 1)[0]
    leader = cluster.node(entry["leader"])
    follower = cluster.node(next(r for r in entry["replicas"] if r != leader.id))
    for node in nodes:
        brokers = cluster_wire.metadata(node, [topic])["brokers"]
        assert {node_id: rack for node_id, (_, _, rack) in brokers.items()} == RACKS
    produce(cluster.bootstrap(), topic, _records("before", RECORDS_BEFORE))

    # On the wire: the leader names the follower to a consumer of the follower's rack (once the
    # follower has fetched past the offset), with no records; to one of its own rack, or with
    # no rack, it serves the records itself.
    named = wait_until("the leader naming the follower", lambda: _follower_named(
        leader, topic, RACKS[follower.id], follower.id), timeout_s=10)
    assert named["error"] == cluster_wire.ERROR_NONE and named["records"] == b""
    for rack in (RACKS[leader.id], ""):
        answer = cluster_wire.fetch_v11(leader, topic, 0, rack_id=rack)
        assert answer["preferred_read_replica"] == -1
        assert b"value-before-0" in answer["records"]
    # The follower serves a v11 consumer up to its own high watermark, never past the leader's;
    # before v11, and as a replica, only the leader serves.
    leader_high_watermark = cluster_wire.fetch_v11(leader, topic, 0)["high_watermark"]
    assert leader_high_watermark == RECORDS_BEFORE
    served = wait_until("the follower serving the records", lambda: (lambda a: a if (
        a["error"] == cluster_wire.ERROR_NONE and b"value-before-0" in a["records"]) else None)(
            cluster_wire.fetch_v11(follower, topic, 0)), timeout_s=10)
    assert 0 < served["high_watermark"] <= leader_high_watermark
    beyond = cluster_wire.fetch_v11(follower, topic, 0, offset=RECORDS_BEFORE + 1000)
    assert beyond["error"] == cluster_wire.ERROR_OFFSET_OUT_OF_RANGE
    assert cluster_wire.fetch_one(follower, topic, 0)[0] == (
        cluster_wire.ERROR_NOT_LEADER_OR_FOLLOWER)

    consumer = RackConsumer(leader.bootstrap, topic, RACKS[follower.id])
    try:
        consumer.read_until(RECORDS_BEFORE, CONSUME_TIMEOUT_S)
        consumer.poll_stats_until("statistics after the reads", lambda: consumer.fetched_from,
                                  timeout_s=5)
        assert follower.id in consumer.fetched_from, (
            f"fetched from {set(consumer.fetched_from)}, never from follower {follower.id}")
        assert consumer.fetched_from[-1] == follower.id

        # The follower dies: the consumer goes back to the leader and reads what comes next.
        follower.kill9()
        produce(cluster.bootstrap(cluster.running()), topic, _records("after", RECORDS_AFTER))
        consumer.read_until(RECORDS_BEFORE + RECORDS_AFTER, FAILOVER_TIMEOUT_S)
        consumer.fetched_from.clear()
        consumer.poll_stats_until("the consumer at the leader",
                                  lambda: consumer.fetched_from[-1:] == [leader.id],
                                  timeout_s=10)
    finally:
        consumer.close()
    expected = _records("before", RECORDS_BEFORE) + _records("after", RECORDS_AFTER)
    assert consumer.records == [(offset, key, value)
                                for offset, (_, key, value) in enumerate(expected)]
