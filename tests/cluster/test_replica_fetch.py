"""Only a live follower fetches as a replica: a Fetch whose replica_id is not a registered,
unfenced broker among the partition's replicas other than the leader (the leader's own id, an
unknown id) is served as a consumer's fetch, up to the high watermark, and moves neither the
high watermark nor the ISR. Kafka without an authoriser checks no more: a client naming a live
follower is taken for it (authorising CLUSTER_ACTION comes with security).

Three brokers, RF 3; one follower stopped (SIGSTOP) with a session timeout and a lag bound far
above the test's length, so it stays live and in the ISR and holds the high watermark below the
records the leader takes with acks=1 meanwhile."""

import struct

import pytest

import cluster_wire
from clients import create_topic, unique_topic
from kafka_wire import frame, request_header, string
from observe import wait_led

STAYS_FOR_MS = 120000
UNKNOWN_BROKER_ID = 99
RECORDS_ABOVE = 5
API_FETCH = 1

pytestmark = [
    pytest.mark.cluster_args("--replica-lag-time-max-ms", str(STAYS_FOR_MS)),
    pytest.mark.cluster_size(3),
    pytest.mark.cluster_session_timeout_ms(STAYS_FOR_MS),
]


def fetch(node, topic, replica_id, offset):
    """Fetch v4 of `topic`-0 from `offset` at `node` without waiting: (error, high watermark,
    record bytes)."""
    correlation_id = cluster_wire._next_correlation()
    body = struct.pack(">iiiib", replica_id, 0, 1, 1 << 20, 0)  # wait 0, min 1 byte, max 1 MiB
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">iqi", 0, offset, 1 << 20)
    request = frame(request_header(API_FETCH, 4, correlation_id) + body)
    reader = cluster_wire._exchange(node, request, correlation_id, 5.0)
    reader.int32()  # throttle_time_ms
    assert reader.int32() == 1
    reader.string()
    assert reader.int32() == 1
    assert reader.int32() == 0
    error = reader.int16()
    high_watermark = reader.int64()
    reader.int64()  # last stable offset
    for _ in range(max(reader.int32(), 0)):
        reader.int64(), reader.int64()
    size = reader.int32()
    records = reader.take(size) if size > 0 else b""
    reader.assert_done()
    return error, high_watermark, records


def test_a_fake_replica_fetch_is_a_consumer_fetch_and_moves_no_high_watermark(cluster):
    topic = unique_topic("replica-fetch")
    create_topic(cluster.bootstrap(), topic, 1, 3)
    partition = wait_led(cluster.node(1), topic, 1)[0]
    leader = cluster.node(partition["leader"])
    wait_led(leader, topic, 1)
    stopped = next(cluster.node(r) for r in partition["replicas"] if r != leader.id)
    assert cluster_wire.produce_one(leader, topic, 0, b"all", acks=-1)[0] == 0
    committed = fetch(leader, topic, -1, 0)[1]
    assert committed == 1

    stopped.pause()
    try:
        for number in range(RECORDS_ABOVE):
            error, _ = cluster_wire.produce_one(leader, topic, 0, b"above-%d" % number, acks=1)
            assert error == 0
        log_end = committed + RECORDS_ABOVE
        consumer_view = fetch(leader, topic, -1, 0)
        assert consumer_view[:2] == (0, committed), consumer_view[:2]
        # Claiming to hold everything, as the leader itself or as a broker that does not exist:
        # served as a consumer, up to the high watermark, which stays where it was.
        for fake in (leader.id, UNKNOWN_BROKER_ID):
            error, high_watermark, records = fetch(leader, topic, fake, log_end)
            assert (error, high_watermark, records) == (0, committed, b""), (fake, error)
            error, high_watermark, records = fetch(leader, topic, fake, 0)
            assert (error, high_watermark) == (0, committed), (fake, error)
            assert records == consumer_view[2], "nothing past the high watermark"
        assert fetch(leader, topic, -1, 0)[:2] == (0, committed)
    finally:
        stopped.resume()
