"""Hand-built Kafka wire frames for tests that must send what no client library would.

Only what the malformed-input tests need: request headers v1/v2, ApiVersions, Produce v3 with
a RecordBatch v2 built byte by byte (CRC-32C included), and bounded response reading.
References: the Kafka protocol guide (kafka.apache.org/protocol) and the RecordBatch format
(kafka.apache.org/documentation/#recordbatch).
"""

import socket
import struct
import time

API_PRODUCE = 0
API_METADATA = 3
API_API_VERSIONS = 18
API_INIT_PRODUCER_ID = 22

ERROR_NONE = 0
ERROR_CORRUPT_MESSAGE = 2
ERROR_UNSUPPORTED_VERSION = 35


# --- CRC-32C (Castagnoli), as RecordBatch v2 uses ---------------------------------------------

def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283  # the standard check value


# --- primitive encodings -----------------------------------------------------------------------

def unsigned_varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def varint(n: int) -> bytes:
    """Zig-zag signed varint (varlong uses the same encoding)."""
    return unsigned_varint((n << 1) ^ (n >> 63))


def string(s) -> bytes:
    if s is None:
        return struct.pack(">h", -1)
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


def compact_string(s) -> bytes:
    if s is None:
        return unsigned_varint(0)
    raw = s.encode()
    return unsigned_varint(len(raw) + 1) + raw


def request_header(api_key, api_version, correlation_id, client_id="sluice-e2e-raw", flexible=False) -> bytes:
    """Request header v1 (non-flexible) or v2 (flexible: adds empty tagged fields)."""
    header = struct.pack(">hhi", api_key, api_version, correlation_id) + string(client_id)
    if flexible:
        header += unsigned_varint(0)
    return header


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


# --- RecordBatch v2 ----------------------------------------------------------------------------

def record(offset_delta, timestamp_delta, key, value, headers=()) -> bytes:
    body = bytearray()
    body += struct.pack(">b", 0)  # attributes
    body += varint(timestamp_delta)
    body += varint(offset_delta)
    for field in (key, value):
        if field is None:
            body += varint(-1)
        else:
            body += varint(len(field)) + field
    body += varint(len(headers))
    for name, header_value in headers:
        raw = name.encode()
        body += varint(len(raw)) + raw
        if header_value is None:
            body += varint(-1)
        else:
            body += varint(len(header_value)) + header_value
    return varint(len(body)) + bytes(body)


def record_batch(records, base_timestamp_ms, corrupt_crc=False, producer=(-1, -1, -1)) -> bytes:
    """records: list of (key, value) pairs. Returns one uncompressed RecordBatch v2.

    corrupt_crc flips one bit of the stored CRC, so the body is intact but the checksum is wrong.
    producer is (producer id, epoch, base sequence) of an idempotent producer's batch.
    """
    producer_id, producer_epoch, base_sequence = producer
    encoded = b"".join(record(i, i, key, value) for i, (key, value) in enumerate(records))
    # From attributes to the end: the part the CRC covers.
    after_crc = (
        struct.pack(">h", 0)  # attributes: no compression, CreateTime, not transactional
        + struct.pack(">i", len(records) - 1)  # lastOffsetDelta
        + struct.pack(">q", base_timestamp_ms)  # baseTimestamp
        + struct.pack(">q", base_timestamp_ms + len(records) - 1)  # maxTimestamp
        + struct.pack(">q", producer_id)
        + struct.pack(">h", producer_epoch)
        + struct.pack(">i", base_sequence)
        + struct.pack(">i", len(records))
        + encoded
    )
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0x00010000
    after_length = struct.pack(">i", -1) + struct.pack(">b", 2) + struct.pack(">I", crc) + after_crc
    return struct.pack(">q", 0) + struct.pack(">i", len(after_length)) + after_length


def raw_batch(encoded_records, record_count, last_offset_delta, attributes=0, base_timestamp_ms=0,
              max_timestamp_ms=None) -> bytes:
    """A RecordBatch v2 around already encoded (and possibly compressed or malformed) records,
    with every header field given and a correct CRC-32C."""
    after_crc = (
        struct.pack(">h", attributes)
        + struct.pack(">i", last_offset_delta)
        + struct.pack(">q", base_timestamp_ms)
        + struct.pack(">q", base_timestamp_ms if max_timestamp_ms is None else max_timestamp_ms)
        + struct.pack(">qhi", -1, -1, -1)  # producerId, producerEpoch, baseSequence
        + struct.pack(">i", record_count)
        + encoded_records
    )
    after_length = struct.pack(">ib", -1, 2) + struct.pack(">I", crc32c(after_crc)) + after_crc
    return struct.pack(">q", 0) + struct.pack(">i", len(after_length)) + after_length


def produce_request(version, correlation_id, topic, partition, batch, acks=1, timeout_ms=10000) -> bytes:
    """Produce v3..v8 (non-flexible; the request body is the same in all of them)."""
    assert 3 <= version <= 8
    body = (
        string(None)  # transactional_id
        + struct.pack(">hi", acks, timeout_ms)
        + struct.pack(">i", 1)
        + string(topic)
        + struct.pack(">ii", 1, partition)
        + struct.pack(">i", len(batch))
        + batch
    )
    return frame(request_header(API_PRODUCE, version, correlation_id) + body)


def parse_produce_response(payload: bytes, version):
    """Produce v3..v8: (correlation_id, [dict(topic, partition, error_code, base_offset,
    log_append_time, record_errors=[(batch_index, message)], error_message)])."""
    correlation_id, results, _ = parse_produce_response_and_throttle(payload, version)
    return correlation_id, results


def parse_produce_response_and_throttle(payload: bytes, version):
    """As parse_produce_response, with throttle_time_ms as a third element."""
    assert 3 <= version <= 8
    reader = Reader(payload)
    correlation_id = reader.int32()
    results = []
    for _ in range(reader.int32()):
        topic = reader.string()
        for _ in range(reader.int32()):
            result = dict(topic=topic, partition=reader.int32(), error_code=reader.int16(),
                          base_offset=reader.int64(), log_append_time=reader.int64(),
                          record_errors=[], error_message=None)
            if version >= 5:
                reader.int64()  # log_start_offset
            if version >= 8:
                result["record_errors"] = [(reader.int32(), reader.string()) for _ in range(reader.int32())]
                result["error_message"] = reader.string()
            results.append(result)
    throttle_ms = reader.int32()
    reader.assert_done()
    return correlation_id, results, throttle_ms


def produce_v3_request(correlation_id, topic, partition, batch, acks=1, timeout_ms=10000) -> bytes:
    """Produce v3 (non-flexible): transactional_id, acks, timeout, [topic [partition records]]."""
    body = (
        string(None)  # transactional_id
        + struct.pack(">hi", acks, timeout_ms)
        + struct.pack(">i", 1)
        + string(topic)
        + struct.pack(">i", 1)
        + struct.pack(">i", partition)
        + struct.pack(">i", len(batch))
        + batch
    )
    return frame(request_header(API_PRODUCE, 3, correlation_id) + body)


def parse_produce_v3_response(payload: bytes):
    """Returns (correlation_id, [(topic, partition, error_code, base_offset, log_append_time)], throttle)."""
    correlation_id, results, throttle_ms = parse_produce_response_and_throttle(payload, 3)
    return correlation_id, [
        (r["topic"], r["partition"], r["error_code"], r["base_offset"], r["log_append_time"])
        for r in results
    ], throttle_ms


def api_versions_request(correlation_id, version) -> bytes:
    """ApiVersions at any version; v3+ is flexible (header v2, compact strings, tagged fields)."""
    if version >= 3:
        body = compact_string("sluice-e2e") + compact_string("1.0") + unsigned_varint(0)
        return frame(request_header(API_API_VERSIONS, version, correlation_id, flexible=True) + body)
    return frame(request_header(API_API_VERSIONS, version, correlation_id))


def parse_api_versions_v0_response(payload: bytes):
    """ApiVersions response v0 (header v0): (correlation_id, error_code, {api_key: (min, max)})."""
    reader = Reader(payload)
    correlation_id = reader.int32()
    error_code = reader.int16()
    apis = {}
    for _ in range(reader.int32()):
        key, low, high = reader.int16(), reader.int16(), reader.int16()
        apis[key] = (low, high)
    reader.assert_done()
    return correlation_id, error_code, apis


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise AssertionError(f"response truncated: need {n} bytes at {self.pos}, have {len(self.data)}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int16(self):
        return struct.unpack(">h", self.take(2))[0]

    def int32(self):
        return struct.unpack(">i", self.take(4))[0]

    def int64(self):
        return struct.unpack(">q", self.take(8))[0]

    def string(self):
        n = self.int16()
        return None if n < 0 else self.take(n).decode()

    def assert_done(self):
        assert self.pos == len(self.data), f"{len(self.data) - self.pos} unexpected trailing bytes in response"


# --- sockets -----------------------------------------------------------------------------------

class Closed(Exception):
    """The broker closed the connection (EOF or reset)."""


def connect(broker, timeout_s=5.0):
    sock = socket.create_connection((broker.host, broker.port), timeout=timeout_s)
    sock.settimeout(timeout_s)
    return sock


def recv_exact(sock, n, deadline):
    chunks = bytearray()
    while len(chunks) < n:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"got {len(chunks)} of {n} bytes before the deadline")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(n - len(chunks))
        except (ConnectionResetError, BrokenPipeError) as error:
            raise Closed(str(error))
        except socket.timeout:
            raise TimeoutError(f"got {len(chunks)} of {n} bytes before the deadline")
        if not chunk:
            if chunks:
                raise AssertionError(f"connection closed in the middle of a response ({len(chunks)} of {n} bytes)")
            raise Closed("EOF")
        chunks += chunk
    return bytes(chunks)


def read_response(sock, timeout_s=5.0, size_max=16 << 20):
    """One response frame's payload. Raises Closed on EOF/reset and TimeoutError on silence."""
    deadline = time.monotonic() + timeout_s
    (size,) = struct.unpack(">i", recv_exact(sock, 4, deadline))
    assert 4 <= size <= size_max, f"response frame size {size} is out of range"
    return recv_exact(sock, size, deadline)


def answered_or_closed(sock, timeout_s=5.0):
    """After a bad request: 'closed' if the broker hung up, ('answered', payload) if it replied.

    Silence until the deadline is a failure: a bad request must never leave a client hanging.
    """
    try:
        return ("answered", read_response(sock, timeout_s))
    except Closed:
        return ("closed", None)
    except TimeoutError as error:
        raise AssertionError(f"broker neither answered nor closed within {timeout_s}s: {error}")


# --- ListOffsets (non-flexible versions 1..5) ---------------------------------------------------

API_LIST_OFFSETS = 2
LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2


def list_offsets_request(correlation_id, version, topic, partition_timestamps):
    """ListOffsets v1..v5: partition_timestamps is [(partition, timestamp)]."""
    assert 1 <= version <= 5
    body = struct.pack(">i", -1)  # replica_id: a consumer
    if version >= 2:
        body += struct.pack(">b", 0)  # isolation_level: read uncommitted
    body += struct.pack(">i", 1) + string(topic) + struct.pack(">i", len(partition_timestamps))
    for partition, timestamp in partition_timestamps:
        body += struct.pack(">i", partition)
        if version >= 4:
            body += struct.pack(">i", -1)  # current_leader_epoch: unknown
        body += struct.pack(">q", timestamp)
    return frame(request_header(API_LIST_OFFSETS, version, correlation_id) + body)


def parse_list_offsets_response(payload, version):
    """Returns (correlation_id, {(topic, partition): (error_code, timestamp, offset)})."""
    reader = Reader(payload)
    correlation_id = reader.int32()
    if version >= 2:
        reader.int32()  # throttle_time_ms
    answers = {}
    for _ in range(reader.int32()):
        topic = reader.string()
        for _ in range(reader.int32()):
            partition = reader.int32()
            error_code = reader.int16()
            timestamp = reader.int64()
            offset = reader.int64()
            if version >= 4:
                reader.int32()  # leader_epoch
            answers[(topic, partition)] = (error_code, timestamp, offset)
    reader.assert_done()
    return correlation_id, answers


def api_versions(broker):
    """The broker's advertised {api_key: (min, max)} from an ApiVersions v0 request."""
    with connect(broker) as sock:
        sock.sendall(api_versions_request(1, 0))
        correlation_id, error_code, apis = parse_api_versions_v0_response(read_response(sock))
    assert (correlation_id, error_code) == (1, ERROR_NONE)
    return apis


# --- Metadata v1 (non-flexible; topics are auto-created where the broker allows) ------------------

API_METADATA = 3


def metadata_v1_request(correlation_id, topics) -> bytes:
    """Metadata v1 naming `topics` (v1 has no allow_auto_topic_creation flag: it is implied)."""
    body = struct.pack(">i", len(topics)) + b"".join(string(topic) for topic in topics)
    return frame(request_header(API_METADATA, 1, correlation_id) + body)


def parse_metadata_v1_response(payload: bytes):
    """Returns (correlation_id, {topic: (error_code, partition_count)})."""
    reader = Reader(payload)
    correlation_id = reader.int32()
    for _ in range(reader.int32()):  # brokers: node_id, host, port, rack
        reader.int32()
        reader.string()
        reader.int32()
        reader.string()
    reader.int32()  # controller_id
    topics = {}
    for _ in range(reader.int32()):
        error_code = reader.int16()
        name = reader.string()
        reader.take(1)  # is_internal
        partitions = reader.int32()
        for _ in range(partitions):
            reader.int16()  # error_code
            reader.int32()  # partition_index
            reader.int32()  # leader_id
            for _ in range(2):  # replica_nodes, isr_nodes
                for _ in range(reader.int32()):
                    reader.int32()
        topics[name] = (error_code, partitions)
    reader.assert_done()
    return correlation_id, topics


# --- InitProducerId v0 -------------------------------------------------------------------------

def init_producer_id(sock, correlation_id, transaction_timeout_ms=60000):
    """An idempotent producer's id and epoch (InitProducerId v0 without a transactional id)."""
    body = string(None) + struct.pack(">i", transaction_timeout_ms)
    sock.sendall(frame(request_header(API_INIT_PRODUCER_ID, 0, correlation_id) + body))
    reader = Reader(read_response(sock))
    assert reader.int32() == correlation_id
    reader.int32()  # throttle_time_ms
    error_code, producer_id, producer_epoch = reader.int16(), reader.int64(), reader.int16()
    reader.assert_done()
    assert error_code == ERROR_NONE, error_code
    return producer_id, producer_epoch
