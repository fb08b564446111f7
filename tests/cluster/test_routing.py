"""Routing: a partition's requests go to its leader (NOT_LEADER_OR_FOLLOWER elsewhere), clients
find leaders through Metadata, and a group's requests go to its coordinator, the leader of its
`__consumer_offsets` partition."""

import time

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

import cluster_wire
from clients import create_topic, produce, read_all, unique_topic
from harness import wait_until
from observe import wait_led

PARTITIONS = 6
# Bound of each blocking kafka-python call.
KP_CALL_TIMEOUT_MS = 15000
# Longest wait for a record produced with acks=1 to reach the high watermark (the followers fetch
# it within their --replica-fetch-wait-max-ms).
COMMIT_TIMEOUT_S = 10


def test_produce_at_a_broker_that_does_not_lead_is_not_leader(shared_cluster):
    nodes = list(shared_cluster.nodes.values())
    for replication_factor in (1, 3):
        topic = unique_topic(f"routing-rf{replication_factor}")
        create_topic(shared_cluster.bootstrap(), topic, PARTITIONS, replication_factor)
        partitions = wait_led(nodes[0], topic, PARTITIONS)
        for node in nodes:
            wait_led(node, topic, PARTITIONS)
            for index, p in partitions.items():
                error, _ = cluster_wire.produce_one(node, topic, index)
                expected = cluster_wire.ERROR_NONE if node.id == p["leader"] else (
                    cluster_wire.ERROR_NOT_LEADER_OR_FOLLOWER)
                assert error == expected, (f"RF {replication_factor}, partition {index} led by "
                                           f"{p['leader']}, produced at {node.id}")


def test_acks0_produce_at_a_broker_that_does_not_lead_closes_the_connection(shared_cluster):
    # Kafka closes the connection of a failed acks=0 request: the client has no response to
    # learn the error from, and reconnecting makes it refresh its metadata.
    nodes = list(shared_cluster.nodes.values())
    topic = unique_topic("routing-acks0")
    create_topic(shared_cluster.bootstrap(), topic, PARTITIONS, 3)
    for node in nodes:
        partitions = wait_led(node, topic, PARTITIONS)
        for index, p in partitions.items():
            outcome = cluster_wire.produce_acks0(node, topic, index)
            expected = cluster_wire.ERROR_NONE if node.id == p["leader"] else "closed"
            assert outcome == expected, f"partition {index} led by {p['leader']}, at {node.id}"


def test_failed_acks0_produce_still_appends_its_valid_partitions(shared_cluster):
    # As Kafka does, every valid partition of a failed acks=0 request is appended before the
    # connection is closed: the failing partition comes first, so an early return would drop
    # (and cancel) the valid one's append.
    node = list(shared_cluster.nodes.values())[0]
    topic = unique_topic("routing-acks0-mixed")
    create_topic(shared_cluster.bootstrap(), topic, PARTITIONS, 1)
    partitions = wait_led(node, topic, PARTITIONS)
    led_here = [i for i, p in partitions.items() if p["leader"] == node.id]
    led_elsewhere = [i for i, p in partitions.items() if p["leader"] != node.id]
    assert led_here and led_elsewhere, f"partitions {partitions} all led by one broker"
    for failing, name in ((led_elsewhere[0], b"elsewhere"), (PARTITIONS + 7, b"unknown")):
        value = b"kept-after-" + name
        outcome = cluster_wire.produce_acks0_partitions(node, topic, [failing, led_here[0]], value)
        assert outcome == "closed"
        error, records = cluster_wire.fetch_one(node, topic, led_here[0])
        assert (error, value in records) == (cluster_wire.ERROR_NONE, True), name


def test_fetch_at_a_broker_that_does_not_lead_is_not_leader_for_consumers_and_followers(
        shared_cluster):
    # A replica's fetch (replica id >= 0) is served by the leader only, like a consumer's: the
    # follower reads up to the log end at once, a consumer once the high watermark passed the
    # record (the followers fetched it), so the consumer's fetch is repeated until then.
    nodes = list(shared_cluster.nodes.values())
    topic = unique_topic("routing-fetch")
    create_topic(shared_cluster.bootstrap(), topic, PARTITIONS, 3)
    partitions = wait_led(nodes[0], topic, PARTITIONS)
    for index, p in partitions.items():
        leader = shared_cluster.nodes[p["leader"]]
        assert cluster_wire.produce_one(leader, topic, index, b"routed")[0] == cluster_wire.ERROR_NONE
    for node in nodes:
        wait_led(node, topic, PARTITIONS)
        followers = [other.id for other in nodes if other.id != node.id]
        for index, p in partitions.items():
            for replica_id in [-1] + followers:
                error, records = cluster_wire.fetch_one(node, topic, index, replica_id)
                deadline = time.monotonic() + COMMIT_TIMEOUT_S
                while node.id == p["leader"] and not records and time.monotonic() < deadline:
                    time.sleep(0.05)
                    error, records = cluster_wire.fetch_one(node, topic, index, replica_id)
                if node.id == p["leader"]:
                    assert (error, b"routed" in records) == (cluster_wire.ERROR_NONE, True)
                else:
                    assert (error, records) == (cluster_wire.ERROR_NOT_LEADER_OR_FOLLOWER, b""), (
                        f"partition {index} led by {p['leader']}, fetched at {node.id} "
                        f"as replica {replica_id}")


def test_clients_route_by_metadata(shared_cluster):
    nodes = list(shared_cluster.nodes.values())
    topic = unique_topic("routing-roundtrip")
    create_topic(nodes[0].bootstrap, topic, PARTITIONS, replication_factor=1)
    leaders = {p["leader"] for p in wait_led(nodes[0], topic, PARTITIONS).values()}
    assert leaders == {1, 2, 3}, "the partitions are led by different brokers"
    records = [(p, b"k-%d-%d" % (p, i), b"v-%d-%d" % (p, i)) for p in range(PARTITIONS) for i in range(10)]
    # Bootstrapped at one broker, the producer sends each partition to its leader...
    offsets = produce(nodes[0].bootstrap, topic, records)
    assert sorted(offsets.values()) == sorted(list(range(10)) * PARTITIONS)
    # ...and a consumer bootstrapped at another reads them all back from theirs.
    got = read_all(nodes[1].bootstrap, topic, PARTITIONS, expect_count=len(records))
    assert [(p, key, value) for p, _, key, value in got] == sorted(records)


def _coordinator(nodes, group):
    """The coordinator every broker names for `group` (FindCoordinator at each), once they agree."""
    def agreed():
        answers = {cluster_wire.find_coordinator(node, group) for node in nodes}
        if len(answers) == 1:
            error, node_id, host, port = answers.pop()
            if error == cluster_wire.ERROR_NONE:
                return node_id, host, port
        return None
    return wait_until(f"every broker naming one coordinator for {group}", agreed, timeout_s=20)


def test_a_consumer_group_works_through_its_coordinator(shared_cluster):
    nodes = list(shared_cluster.nodes.values())
    topic, group = unique_topic("routing-group"), unique_topic("routing-g")
    create_topic(nodes[0].bootstrap, topic, PARTITIONS, replication_factor=3)
    wait_led(nodes[2], topic, PARTITIONS)
    records = [(p, b"%d" % i, b"v%d" % i) for p in range(PARTITIONS) for i in range(5)]
    produce(nodes[0].bootstrap, topic, records)

    coordinator_id, host, port = _coordinator(nodes, group)
    offsets_partitions = wait_led(nodes[0], "__consumer_offsets", 50)
    assert coordinator_id == offsets_partitions[cluster_wire.offsets_partition(group)]["leader"]
    assert (host, port) == (shared_cluster.node(coordinator_id).host, 9092)
    for node in nodes:
        if node.id != coordinator_id:
            error, _ = cluster_wire.offset_fetch(node, group, topic, [0])
            assert error == cluster_wire.ERROR_NOT_COORDINATOR, (node.id, error)

    # kafka-python, bootstrapped at a broker that is not the coordinator, joins, reads, commits.
    other = next(node for node in nodes if node.id != coordinator_id)
    consumer = KafkaConsumer(
        bootstrap_servers=other.bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000,
        max_poll_interval_ms=20000, request_timeout_ms=25000, fetch_max_wait_ms=100,
        retry_backoff_ms=100, reconnect_backoff_ms=50, reconnect_backoff_max_ms=1000)
    try:
        consumer.subscribe([topic])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < len(records) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                got.extend((r.partition, r.key, r.value) for r in batch)
        assert sorted(got) == sorted(records), f"{len(got)} of {len(records)} records"
        consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(5, "", -1) for p in range(PARTITIONS)},
                        timeout_ms=KP_CALL_TIMEOUT_MS)
    finally:
        consumer.close(autocommit=False, timeout_ms=KP_CALL_TIMEOUT_MS)

    error, committed = cluster_wire.offset_fetch(shared_cluster.node(coordinator_id), group, topic,
                                                 list(range(PARTITIONS)))
    assert error == cluster_wire.ERROR_NONE
    assert committed == {p: (5, cluster_wire.ERROR_NONE) for p in range(PARTITIONS)}, committed
