"""Malformed input over raw sockets: the broker answers or closes (never hangs, never dies), and
a fresh client still gets metadata and can produce and consume afterwards."""

import random
import socket
import struct

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

import kafka_wire as wire
from e2e_util import CLIENT_TIMEOUT_S, create_topic, health_check, read_all, unique_topic

# A bad request must not make the broker grow to the size the request claims.
RSS_GROWTH_MAX_BYTES = 256 << 20


def send_and_expect_answer_or_close(broker, data, close_write=False):
    with wire.connect(broker) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return "closed", None  # it hung up while we were still sending: fine
        if close_write:
            sock.shutdown(socket.SHUT_WR)
        return wire.answered_or_closed(sock)


def test_garbage_bytes(broker):
    rss_before = broker.rss_bytes()
    # An HTTP request: its first four bytes read as a frame length of about 1.2 GB.
    outcome, _ = send_and_expect_answer_or_close(broker, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert outcome == "closed"
    # Random bytes inside a well-formed frame: a full "request" the broker can't make sense of.
    rng = random.Random(20240601)
    for _ in range(5):
        payload = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 200)))
        send_and_expect_answer_or_close(broker, wire.frame(payload), close_write=True)
    broker.assert_running()
    assert broker.rss_bytes() - rss_before < RSS_GROWTH_MAX_BYTES
    health_check(broker)


def test_truncated_frame_then_close(broker):
    request = wire.api_versions_request(1, 0)
    # Length prefix says more than is sent, then the client goes away.
    for cut in (2, 4, 6, len(request) - 1):
        with wire.connect(broker) as sock:
            sock.sendall(request[:cut])
    # A frame whose header is cut short inside the declared length.
    with wire.connect(broker) as sock:
        sock.sendall(struct.pack(">i", 3) + b"\x00\x12\x00")
        sock.shutdown(socket.SHUT_WR)
        wire.answered_or_closed(sock)
    broker.assert_running()
    health_check(broker)


@pytest.mark.parametrize("length", [0x7FFFFFFF, 0x80000000, 0xFFFFFFFF], ids=["2GiB", "negative-2GiB", "negative-1"])
def test_frame_claiming_huge_length(broker, length):
    """The frame size limit is checked before allocating: the broker hangs up at once."""
    rss_before = broker.rss_bytes()
    outcome, _ = send_and_expect_answer_or_close(broker, struct.pack(">I", length) + b"\x00\x12\x00\x00" * 4)
    assert outcome == "closed"
    assert broker.rss_bytes() - rss_before < RSS_GROWTH_MAX_BYTES
    health_check(broker)


def test_unknown_api_key(broker):
    request = wire.frame(wire.request_header(9999, 0, 77) + b"\x00" * 16)
    outcome, payload = send_and_expect_answer_or_close(broker, request)
    if outcome == "answered":
        assert struct.unpack(">i", payload[:4])[0] == 77, "answer carries another correlation id"
    health_check(broker)


def test_api_versions_unsupported_version(broker):
    """Kafka answers an ApiVersions request of a version it does not know with a v0 response:
    error UNSUPPORTED_VERSION (35) and its own ApiVersions range, so the client can retry lower."""
    with wire.connect(broker) as sock:
        sock.sendall(wire.api_versions_request(4242, 99))
        outcome, payload = wire.answered_or_closed(sock)
        assert outcome == "answered", "ApiVersions v99 got no answer: the connection was closed"
        correlation_id, error_code, apis = wire.parse_api_versions_v0_response(payload)
        assert correlation_id == 4242
        assert error_code == wire.ERROR_UNSUPPORTED_VERSION
        assert wire.API_API_VERSIONS in apis, f"no ApiVersions range in the error response: {apis}"
        low, high = apis[wire.API_API_VERSIONS]
        assert low == 0 and high >= 3, apis

        # Like librdkafka, retry on the same connection at v0: a normal answer.
        sock.sendall(wire.api_versions_request(4243, 0))
        correlation_id, error_code, apis = wire.parse_api_versions_v0_response(wire.read_response(sock))
        assert (correlation_id, error_code) == (4243, wire.ERROR_NONE)
        for api_key in (wire.API_PRODUCE, 1, 2, wire.API_METADATA, wire.API_API_VERSIONS):
            assert api_key in apis, f"api key {api_key} not advertised: {apis}"
    health_check(broker)


@pytest.mark.parametrize("version", [0, 1, 4, 9, 12])
def test_metadata_with_random_body(broker, version):
    rng = random.Random(1000 + version)
    for _ in range(8):
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 120)))
        header = wire.request_header(wire.API_METADATA, version, 5, flexible=version >= 9)
        send_and_expect_answer_or_close(broker, wire.frame(header + body))
    broker.assert_running()
    health_check(broker)


def test_produce_with_bad_crc_is_rejected(broker):
    topic = unique_topic("crc")
    create_topic(broker.bootstrap, topic, 1)
    good = wire.record_batch([(b"k0", b"good record")], 1_700_000_000_000)
    bad = wire.record_batch([(b"k1", b"bad crc record")], 1_700_000_000_001, corrupt_crc=True)
    with wire.connect(broker) as sock:
        # The hand-built frame is right: the intact batch is accepted at offset 0.
        sock.sendall(wire.produce_v3_request(11, topic, 0, good))
        correlation_id, results, _ = wire.parse_produce_v3_response(wire.read_response(sock))
        assert correlation_id == 11
        assert [(t, p, e, o) for t, p, e, o, _ in results] == [(topic, 0, wire.ERROR_NONE, 0)]

        sock.sendall(wire.produce_v3_request(12, topic, 0, bad))
        correlation_id, results, _ = wire.parse_produce_v3_response(wire.read_response(sock))
        assert correlation_id == 12
        assert [(t, p, e) for t, p, e, _, _ in results] == [(topic, 0, wire.ERROR_CORRUPT_MESSAGE)]

        # Same connection still works after the rejection.
        sock.sendall(wire.produce_v3_request(13, topic, 0, good))
        correlation_id, results, _ = wire.parse_produce_v3_response(wire.read_response(sock))
        assert [(t, p, e, o) for t, p, e, o, _ in results] == [(topic, 0, wire.ERROR_NONE, 1)]

    # Only the intact batches were stored, nothing of the corrupt one.
    records = read_all(broker.bootstrap, topic, 1, expect_count=2)
    assert [(r[1], r[2], r[3]) for r in records] == [(0, b"k0", b"good record"), (1, b"k0", b"good record")]
    health_check(broker)


def test_bad_requests_then_kafka_python_client(broker):
    """After a mix of bad connections, kafka-python still bootstraps, produces and consumes."""
    for data in (b"\xff" * 64, struct.pack(">i", 0x7FFFFFFF), wire.frame(wire.request_header(9999, 3, 1))):
        send_and_expect_answer_or_close(broker, data, close_write=True)
    topic = unique_topic("after-bad")
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", enable_idempotence=False,
                             request_timeout_ms=10000, max_block_ms=10000)
    try:
        metadata = producer.send(topic, key=b"k", value=b"still alive", partition=0).get(timeout=CLIENT_TIMEOUT_S)
    finally:
        producer.close(timeout=10)
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, metadata.offset)
        records = []
        for _ in range(50):
            records += consumer.poll(timeout_ms=200).get(tp, [])
            if records:
                break
        assert [(r.offset, r.key, r.value) for r in records[:1]] == [(metadata.offset, b"k", b"still alive")]
    finally:
        consumer.close(autocommit=False)
