"""Raw Kafka requests sent to one chosen broker, for what a client library would route elsewhere.

Clients send Metadata to any broker and CreateTopics to the controller; the cluster tests need to
ask a given broker and see its own answer. Built on tests/e2e/kafka_wire.py (header, framing,
bounded reads). Non-flexible versions only: Metadata v7, CreateTopics v4, FindCoordinator v1,
Produce v3..v8, Fetch v4 and v11, OffsetFetch v3, OffsetCommit v2 (kafka.apache.org/protocol).
"""

import struct
import time

import kafka_wire
from kafka_wire import Reader, frame, read_response, request_header, string

API_CREATE_TOPICS = 19
API_FIND_COORDINATOR = 10

ERROR_NONE = 0
ERROR_UNKNOWN_TOPIC_OR_PARTITION = 3
ERROR_LEADER_NOT_AVAILABLE = 5
ERROR_OFFSET_OUT_OF_RANGE = 1
ERROR_NOT_LEADER_OR_FOLLOWER = 6
ERROR_REQUEST_TIMED_OUT = 7
ERROR_COORDINATOR_NOT_AVAILABLE = 15
ERROR_NOT_COORDINATOR = 16
ERROR_TOPIC_ALREADY_EXISTS = 36
ERROR_INVALID_REPLICATION_FACTOR = 38
ERROR_NOT_CONTROLLER = 41

_correlation = [0]


def _next_correlation():
    _correlation[0] += 1
    return _correlation[0]


def _exchange(node, request, correlation_id, timeout_s):
    with kafka_wire.connect(node, timeout_s) as sock:
        sock.sendall(request)
        payload = read_response(sock, timeout_s)
    reader = Reader(payload)
    got = reader.int32()
    assert got == correlation_id, f"correlation id {got}, expected {correlation_id}"
    return reader


def _int32_array(reader):
    count = reader.int32()
    return [] if count < 0 else [reader.int32() for _ in range(count)]


def metadata(node, topics=None, timeout_s=5.0):
    """Metadata v7 from `node`: {brokers: {id: (host, port, rack)}, controller_id, cluster_id,
    topics: {name: {error, internal, partitions: {index: {error, leader, leader_epoch,
    replicas, isr, offline}}}}}. `topics=None` asks for every topic, without auto-creation."""
    correlation_id = _next_correlation()
    if topics is None:
        body = struct.pack(">i", -1)
    else:
        body = struct.pack(">i", len(topics)) + b"".join(string(t) for t in topics)
    body += b"\x00"  # allow_auto_topic_creation: false
    request = frame(request_header(kafka_wire.API_METADATA, 7, correlation_id) + body)
    reader = _exchange(node, request, correlation_id, timeout_s)
    reader.int32()  # throttle_time_ms
    brokers = {}
    for _ in range(reader.int32()):
        node_id, host, port, rack = reader.int32(), reader.string(), reader.int32(), reader.string()
        brokers[node_id] = (host, port, rack)
    cluster_id = reader.string()
    controller_id = reader.int32()
    answer = {"brokers": brokers, "controller_id": controller_id, "cluster_id": cluster_id, "topics": {}}
    for _ in range(reader.int32()):
        error, name, internal = reader.int16(), reader.string(), reader.take(1) != b"\x00"
        partitions = {}
        for _ in range(reader.int32()):
            entry = {"error": reader.int16()}
            index = reader.int32()
            entry["leader"], entry["leader_epoch"] = reader.int32(), reader.int32()
            entry["replicas"], entry["isr"], entry["offline"] = (
                _int32_array(reader), _int32_array(reader), _int32_array(reader))
            partitions[index] = entry
        answer["topics"][name] = {"error": error, "internal": internal, "partitions": partitions}
    reader.assert_done()
    return answer


def create_topics(node, topics, timeout_ms=5000, validate_only=False, timeout_s=None):
    """CreateTopics v4 at `node`: topics is [(name, partitions, replication_factor)]. Returns
    {name: (error_code, error_message)}. Raises TimeoutError if no answer comes within
    `timeout_s` (default: the request's own timeout plus 5 s)."""
    correlation_id = _next_correlation()
    body = struct.pack(">i", len(topics))
    for name, partitions, replication_factor in topics:
        body += string(name) + struct.pack(">ih", partitions, replication_factor)
        body += struct.pack(">i", 0) + struct.pack(">i", 0)  # no assignments, no configs
    body += struct.pack(">i", timeout_ms) + (b"\x01" if validate_only else b"\x00")
    request = frame(request_header(API_CREATE_TOPICS, 4, correlation_id) + body)
    reader = _exchange(node, request, correlation_id, timeout_s or timeout_ms / 1000 + 5)
    reader.int32()  # throttle_time_ms
    results = {}
    for _ in range(reader.int32()):
        name, error, message = reader.string(), reader.int16(), reader.string()
        results[name] = (error, message)
    reader.assert_done()
    return results


def find_coordinator(node, group, timeout_s=5.0):
    """FindCoordinator v1 (a group) at `node`: (error_code, node_id, host, port)."""
    correlation_id = _next_correlation()
    body = string(group) + b"\x00"  # key_type 0: a consumer group
    request = frame(request_header(API_FIND_COORDINATOR, 1, correlation_id) + body)
    reader = _exchange(node, request, correlation_id, timeout_s)
    reader.int32()  # throttle_time_ms
    error, _message = reader.int16(), reader.string()
    node_id, host, port = reader.int32(), reader.string(), reader.int32()
    reader.assert_done()
    return error, node_id, host, port


def produce_one(node, topic, partition, value=b"v", version=8, timeout_s=5.0, key=None, acks=1,
                timeout_ms=10000):
    """Produce one record (acks=1 unless given) to `topic`/`partition` at `node`: (error_code,
    base_offset)."""
    correlation_id = _next_correlation()
    batch = kafka_wire.record_batch([(key, value)], base_timestamp_ms=int(time.time() * 1000))
    request = kafka_wire.produce_request(version, correlation_id, topic, partition, batch,
                                         acks=acks, timeout_ms=timeout_ms)
    with kafka_wire.connect(node, timeout_s) as sock:
        sock.sendall(request)
        got, results = kafka_wire.parse_produce_response(read_response(sock, timeout_s), version)
    assert got == correlation_id
    assert len(results) == 1, results
    return results[0]["error_code"], results[0]["base_offset"]


def offsets_partition(group, partitions=50):
    """Kafka's partition of `__consumer_offsets` for a group: abs(Java hashCode) % partitions."""
    value = 0
    for unit in struct.unpack(f"<{len(group.encode('utf-16-le')) // 2}H", group.encode("utf-16-le")):
        value = (value * 31 + unit) & 0xFFFFFFFF
    if value >= 1 << 31:
        value -= 1 << 32
    return (0 if value == -(1 << 31) else abs(value)) % partitions


API_FETCH = 1
API_OFFSET_FETCH = 9
API_OFFSET_COMMIT = 8


def produce_acks0(node, topic, partition, then=None, timeout_s=5.0):
    """Produce one record with acks=0 to `topic`/`partition` at `node`, then on the same
    connection a Produce with acks=1 to `then` (a (topic, partition)) or to the same partition:
    'closed' if the broker closed the connection, else the second request's error code."""
    stamp = int(time.time() * 1000)
    first = kafka_wire.produce_request(8, _next_correlation(), topic, partition,
                                       kafka_wire.record_batch([(None, b"acks0")], stamp), acks=0)
    then_topic, then_partition = then or (topic, partition)
    correlation_id = _next_correlation()
    second = kafka_wire.produce_request(8, correlation_id, then_topic, then_partition,
                                        kafka_wire.record_batch([(None, b"acks1")], stamp))
    with kafka_wire.connect(node, timeout_s) as sock:
        sock.sendall(first)
        try:
            sock.sendall(second)
        except (BrokenPipeError, ConnectionResetError):
            return "closed"
        outcome, payload = kafka_wire.answered_or_closed(sock, timeout_s)
    if outcome == "closed":
        return "closed"
    got, results = kafka_wire.parse_produce_response(payload, 8)
    assert got == correlation_id, f"correlation id {got}, expected {correlation_id}"
    return results[0]["error_code"]


def produce_acks0_partitions(node, topic, partitions, value, timeout_s=5.0):
    """One acks=0 Produce v8 of one record `value` to each of `partitions` of `topic` at `node`:
    'closed' if the broker closed the connection (a partition failed); an AssertionError if it
    neither answers nor closes within `timeout_s` (so call it only where one should fail)."""
    batch = kafka_wire.record_batch([(None, value)], int(time.time() * 1000))
    body = string(None) + struct.pack(">hi", 0, 10000) + struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", len(partitions))
    body += b"".join(struct.pack(">ii", p, len(batch)) + batch for p in partitions)
    request = frame(request_header(kafka_wire.API_PRODUCE, 8, _next_correlation()) + body)
    with kafka_wire.connect(node, timeout_s) as sock:
        sock.sendall(request)
        outcome, _ = kafka_wire.answered_or_closed(sock, timeout_s)
    return outcome


def fetch_one(node, topic, partition, replica_id=-1, timeout_s=5.0):
    """Fetch v4 of `topic`/`partition` from offset 0 at `node`, as a consumer (replica_id -1) or
    as the follower `replica_id`, without waiting: (error_code, record bytes)."""
    correlation_id = _next_correlation()
    body = struct.pack(">iiiib", replica_id, 0, 1, 1 << 20, 0)  # wait 0, min 1 byte, max 1 MiB
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">iqi", partition, 0, 1 << 20)
    request = frame(request_header(API_FETCH, 4, correlation_id) + body)
    reader = _exchange(node, request, correlation_id, timeout_s)
    reader.int32()  # throttle_time_ms
    assert reader.int32() == 1
    reader.string()  # topic
    assert reader.int32() == 1
    assert reader.int32() == partition
    error = reader.int16()
    reader.int64(), reader.int64()  # high watermark, last stable offset
    aborted = reader.int32()
    for _ in range(max(aborted, 0)):
        reader.int64(), reader.int64()
    size = reader.int32()
    records = reader.take(size) if size > 0 else b""
    reader.assert_done()
    return error, records


def fetch_v11(node, topic, partition, offset=0, rack_id="", replica_id=-1, timeout_s=5.0):
    """Fetch v11 (KIP-392: the consumer's rack) of `topic`/`partition` from `offset` at `node`,
    without waiting: {error, high_watermark, log_start_offset, preferred_read_replica, records}."""
    correlation_id = _next_correlation()
    # wait 0, min 1 byte, max 1 MiB, read_uncommitted, no session (id 0, epoch -1).
    body = struct.pack(">iiiibii", replica_id, 0, 1, 1 << 20, 0, 0, -1)
    body += struct.pack(">i", 1) + string(topic)
    # partition, current_leader_epoch (-1: unchecked), fetch_offset, log_start_offset, max bytes.
    body += struct.pack(">i", 1) + struct.pack(">iiqqi", partition, -1, offset, -1, 1 << 20)
    body += struct.pack(">i", 0)  # no forgotten topics
    body += string(rack_id)
    request = frame(request_header(API_FETCH, 11, correlation_id) + body)
    reader = _exchange(node, request, correlation_id, timeout_s)
    reader.int32()  # throttle_time_ms
    assert reader.int16() == ERROR_NONE
    reader.int32()  # session_id
    assert reader.int32() == 1
    reader.string()  # topic
    assert reader.int32() == 1
    assert reader.int32() == partition
    answer = {"error": reader.int16(), "high_watermark": reader.int64()}
    reader.int64()  # last stable offset
    answer["log_start_offset"] = reader.int64()
    for _ in range(max(reader.int32(), 0)):  # aborted transactions
        reader.int64(), reader.int64()
    answer["preferred_read_replica"] = reader.int32()
    size = reader.int32()
    answer["records"] = reader.take(size) if size > 0 else b""
    reader.assert_done()
    return answer


def offset_fetch(node, group, topic, partitions, timeout_s=5.0):
    """OffsetFetch v3 at `node`: (error_code, {partition: (committed_offset, error_code)})."""
    correlation_id = _next_correlation()
    body = string(group) + struct.pack(">i", 1) + string(topic) + struct.pack(">i", len(partitions))
    body += b"".join(struct.pack(">i", p) for p in partitions)
    request = frame(request_header(API_OFFSET_FETCH, 3, correlation_id) + body)
    reader = _exchange(node, request, correlation_id, timeout_s)
    reader.int32()  # throttle_time_ms
    offsets = {}
    for _ in range(reader.int32()):
        reader.string()  # topic
        for _ in range(reader.int32()):
            partition, offset = reader.int32(), reader.int64()
            reader.string()  # metadata
            offsets[partition] = (offset, reader.int16())
    error = reader.int16()
    reader.assert_done()
    return error, offsets


def offset_commit(node, group, topic, partition, offset, timeout_s=5.0):
    """OffsetCommit v2 at `node` of one offset, as a client outside the group (generation -1, no
    member id, the broker's retention): the partition's error code."""
    correlation_id = _next_correlation()
    body = string(group) + struct.pack(">i", -1) + string("") + struct.pack(">q", -1)
    body += struct.pack(">i", 1) + string(topic) + struct.pack(">i", 1)
    body += struct.pack(">iq", partition, offset) + struct.pack(">h", -1)  # null metadata
    request = frame(request_header(API_OFFSET_COMMIT, 2, correlation_id) + body)
    reader = _exchange(node, request, correlation_id, timeout_s)
    errors = []
    for _ in range(reader.int32()):
        reader.string()  # topic
        for _ in range(reader.int32()):
            reader.int32()  # partition
            errors.append(reader.int16())
    reader.assert_done()
    assert len(errors) == 1, f"OffsetCommit answered {len(errors)} partitions"
    return errors[0]
