"""Poison batches: Produce checks every record, as Kafka's LogValidator does.

Hand-built batches (kafka_wire) with malformed records, bad offsets and counts, control and
LogAppendTime bits, unknown codecs, garbage in every codec and a zstd bomb are refused with
Kafka's error code and leave the log end where it was; the valid records produced before and
after them (uncompressed and gzip, which KafkaJS decodes) are read back in full by kcat, confluent-kafka,
kafka-python and KafkaJS (group). The bomb leaves the broker's peak RSS (VmHWM) about where it
was. Compacted topics refuse records without a key with per-record errors, LogAppendTime topics
get the broker's timestamp, and ListOffsets by timestamp finds a record inside a compressed batch.
"""

import gzip
import time

import lz4.frame
import snappy
import zstandard
from confluent_kafka.admin import AdminClient, NewTopic

import kafka_wire
from e2e_util import (
    CLIENT_TIMEOUT_S,
    confluent_base_config,
    create_topic,
    read_all,
    unique_topic,
    wait_for_partitions,
)
from test_compression import kafka_python_read, kcat_read
from test_groups_kafkajs import consumed as kafkajs_consumed
from test_groups_kafkajs import run_group_consume

CORRUPT_MESSAGE = 2
MESSAGE_TOO_LARGE = 10
INVALID_TIMESTAMP = 32
UNSUPPORTED_COMPRESSION_TYPE = 76
INVALID_RECORD = 87
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
BASE_TIMESTAMP_MS = 1_700_000_000_000
# The bomb's decompressed size, and how much the broker's peak RSS may grow while refusing it.
BOMB_BYTES = 1 << 30
BOMB_RSS_GROWTH_MAX = 64 << 20


def compress(codec, data):
    if codec == "none":
        return data
    if codec == "gzip":
        return gzip.compress(data)
    if codec == "snappy":
        return snappy.compress(data)  # raw snappy, as librdkafka sends it
    if codec == "lz4":
        return lz4.frame.compress(data)
    return zstandard.ZstdCompressor().compress(data)


def valid_batch(pairs, codec="none", timestamp_step=1, base_timestamp_ms=BASE_TIMESTAMP_MS):
    """A well-formed batch of (key, value) records in `codec`."""
    encoded = b"".join(
        kafka_wire.record(i, i * timestamp_step, key, value) for i, (key, value) in enumerate(pairs)
    )
    return kafka_wire.raw_batch(
        compress(codec, encoded), len(pairs), len(pairs) - 1, attributes=CODEC_IDS[codec],
        base_timestamp_ms=base_timestamp_ms,
        max_timestamp_ms=base_timestamp_ms + (len(pairs) - 1) * timestamp_step,
    )


def body(*fields):
    """A record (length-prefixed) from raw fields: ints are varints, bytes are copied."""
    raw = b"".join(kafka_wire.varint(f) if isinstance(f, int) else f for f in fields)
    return kafka_wire.varint(len(raw)) + raw


# attributes, timestampDelta, offsetDelta, then the fields each case gets wrong.
HEAD = (b"\x00", 0, 0)


def one(records, attributes=0, count=1, last_offset_delta=0):
    return kafka_wire.raw_batch(records, count, last_offset_delta, attributes=attributes,
                                base_timestamp_ms=BASE_TIMESTAMP_MS)


GOOD_RECORD = kafka_wire.record(0, 0, b"k", b"v")
GARBAGE = b"\x00\xffnot compressed by any codec\x13\x37" * 8


def poison_cases():
    """(name, batch, expected error code, Produce version)."""
    two = kafka_wire.record(0, 0, b"a", b"1") + kafka_wire.record(1, 1, b"b", b"2")
    gap = kafka_wire.record(0, 0, b"a", b"1") + kafka_wire.record(2, 1, b"b", b"2")
    cases = [
        ("key length -5", one(body(*HEAD, -5, 0, 0)), CORRUPT_MESSAGE, 8),
        ("value length 2^30", one(body(*HEAD, -1, 1 << 30, b"abc", 0)), CORRUPT_MESSAGE, 8),
        ("header count -4", one(body(*HEAD, -1, 0, -4)), CORRUPT_MESSAGE, 8),
        ("null header key", one(body(*HEAD, -1, 0, 1, -1, 0)), CORRUPT_MESSAGE, 8),
        ("header key length past the record", one(body(*HEAD, -1, 0, 1, 90, b"x")), CORRUPT_MESSAGE, 8),
        ("truncated record", one(GOOD_RECORD[:-2]), CORRUPT_MESSAGE, 8),
        ("truncated compressed record", one(compress("lz4", GOOD_RECORD[:-2]), attributes=3), CORRUPT_MESSAGE, 8),
        ("trailing bytes", one(GOOD_RECORD + b"\x00\x00"), CORRUPT_MESSAGE, 8),
        ("trailing compressed bytes", one(compress("zstd", GOOD_RECORD + b"\x00"), attributes=4), CORRUPT_MESSAGE, 8),
        ("varint overflow", one(b"\xff\xff\xff\xff\xff\x01" + GOOD_RECORD), CORRUPT_MESSAGE, 8),
        # One record walk for every codec (and for recovery): the same code either way.
        ("offset delta gap", one(compress("lz4", gap), 3, count=2, last_offset_delta=1), INVALID_RECORD, 8),
        ("offset delta gap, uncompressed", one(gap, count=2, last_offset_delta=1), INVALID_RECORD, 8),
        ("record count above lastOffsetDelta + 1", one(compress("gzip", two), 1, count=2, last_offset_delta=0),
         INVALID_RECORD, 8),
        ("lastOffsetDelta 2^31-1 with one record", one(GOOD_RECORD, last_offset_delta=2**31 - 1), INVALID_RECORD, 8),
        ("control batch", one(GOOD_RECORD, attributes=0x20), INVALID_RECORD, 8),
        ("LogAppendTime from the producer", one(GOOD_RECORD, attributes=0x08), INVALID_TIMESTAMP, 8),
        ("codec 5", one(GOOD_RECORD, attributes=5), CORRUPT_MESSAGE, 8),
        ("codec 7", one(GOOD_RECORD, attributes=7), CORRUPT_MESSAGE, 8),
        ("zstd before Produce v7", valid_batch([(b"z", b"zstd")], "zstd"), UNSUPPORTED_COMPRESSION_TYPE, 6),
    ]
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        cases.append((f"garbage {codec}", one(GARBAGE, attributes=CODEC_IDS[codec]), CORRUPT_MESSAGE, 8))
    return cases


def produce(broker, topic, batch, version=8):
    with kafka_wire.connect(broker, timeout_s=CLIENT_TIMEOUT_S) as sock:
        sock.sendall(kafka_wire.produce_request(version, 7, topic, 0, batch))
        payload = kafka_wire.read_response(sock, timeout_s=CLIENT_TIMEOUT_S)
    correlation_id, results = kafka_wire.parse_produce_response(payload, version)
    assert correlation_id == 7 and len(results) == 1, results
    return results[0]


def list_offset(broker, topic, timestamp):
    """(error, timestamp, offset) of ListOffsets v1 for partition 0."""
    with kafka_wire.connect(broker, timeout_s=CLIENT_TIMEOUT_S) as sock:
        sock.sendall(kafka_wire.list_offsets_request(3, 1, topic, [(0, timestamp)]))
        payload = kafka_wire.read_response(sock, timeout_s=CLIENT_TIMEOUT_S)
    _, answers = kafka_wire.parse_list_offsets_response(payload, 1)
    return answers[(topic, 0)]


def log_end(broker, topic):
    error, _, offset = list_offset(broker, topic, kafka_wire.LATEST_TIMESTAMP)
    assert error == 0
    return offset


def peak_rss_bytes(broker):
    with open(f"/proc/{broker.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("VmHWM not found")


def zstd_bomb():
    """One record whose value is BOMB_BYTES zeros, zstd-compressed to some tens of KiB."""
    value_length = BOMB_BYTES
    head = b"\x00" + kafka_wire.varint(0) + kafka_wire.varint(0) + kafka_wire.varint(-1) + kafka_wire.varint(value_length)
    record_length = len(head) + value_length + 1
    compressor = zstandard.ZstdCompressor(level=3).compressobj()
    parts = [compressor.compress(kafka_wire.varint(record_length) + head)]
    chunk = bytes(1 << 20)
    for _ in range(value_length // len(chunk)):
        parts.append(compressor.compress(chunk))
    parts.append(compressor.compress(kafka_wire.varint(0)))  # no headers
    parts.append(compressor.flush())
    return one(b"".join(parts), attributes=CODEC_IDS["zstd"])


def test_poison_batches_are_refused_and_valid_records_around_them_are_read(broker):
    topic = unique_topic("poison")
    create_topic(broker.bootstrap, topic, 1)
    expected = []  # (offset, key, value)

    def produce_valid(codec, tag):
        pairs = [(f"{tag}-{codec}-k{i}".encode(), f"{tag}-{codec}-value-{i}".encode()) for i in range(3)]
        result = produce(broker, topic, valid_batch(pairs, codec))
        assert result["error_code"] == 0, (codec, result)
        expected.extend((result["base_offset"] + i, key, value) for i, (key, value) in enumerate(pairs))

    # KafkaJS decodes only gzip, so the records read back are uncompressed or gzip; the other
    # codecs' valid batches are accepted in the ListOffsets test below.
    produce_valid("none", "before")
    produce_valid("gzip", "before")
    for name, batch, error_code, version in poison_cases():
        result = produce(broker, topic, batch, version)
        assert result["error_code"] == error_code, (name, result)
        assert result["base_offset"] == -1, (name, result)
        assert log_end(broker, topic) == len(expected), f"{name} moved the log end"

    peak_before = peak_rss_bytes(broker)
    bomb = zstd_bomb()
    assert len(bomb) < 256 << 10, f"the bomb is {len(bomb)} bytes"
    result = produce(broker, topic, bomb)
    assert result["error_code"] == MESSAGE_TOO_LARGE, result
    assert log_end(broker, topic) == len(expected), "the bomb moved the log end"
    growth = peak_rss_bytes(broker) - peak_before
    assert growth < BOMB_RSS_GROWTH_MAX, f"peak RSS grew by {growth >> 20} MiB refusing the bomb"

    for codec in ("gzip", "none"):
        produce_valid(codec, "after")
    assert [offset for offset, _, _ in expected] == list(range(len(expected)))

    assert [(o, k, v) for _, o, k, v in kcat_read(broker.bootstrap, topic)] == expected
    confluent = read_all(broker.bootstrap, topic, 1, expect_count=len(expected))
    assert [(r[1], r[2], r[3]) for r in confluent] == expected
    python = kafka_python_read(broker.bootstrap, topic, 1, len(expected))
    assert [(r[1], r[2], r[3]) for r in python] == expected
    out = run_group_consume(broker.bootstrap, topic, unique_topic("poison-js"), len(expected))
    assert [(o, k, v) for _, o, k, v in kafkajs_consumed(out)] == expected


def create_topic_with(broker, topic, configs):
    admin = AdminClient(confluent_base_config(broker.bootstrap))
    new = NewTopic(topic, num_partitions=1, replication_factor=1, config=configs)
    admin.create_topics([new], request_timeout=15)[topic].result(timeout=CLIENT_TIMEOUT_S)
    wait_for_partitions(broker.bootstrap, topic, 1, admin=admin)


def test_compacted_topic_refuses_records_without_a_key_with_record_errors(broker):
    topic = unique_topic("compact")
    create_topic_with(broker, topic, {"cleanup.policy": "compact"})
    pairs = [(b"a", b"1"), (None, b"2"), (b"c", b"3"), (None, b"4")]
    for codec in ("none", "gzip"):
        result = produce(broker, topic, valid_batch(pairs, codec))
        assert result["error_code"] == INVALID_RECORD, result
        assert [index for index, _ in result["record_errors"]] == [1, 3], result
        assert all("without key" in message for _, message in result["record_errors"]), result
        assert log_end(broker, topic) == 0
    keyed = [(b"a", b"1"), (b"b", b"2")]
    assert produce(broker, topic, valid_batch(keyed))["error_code"] == 0
    assert log_end(broker, topic) == 2


def test_log_append_time_topic_stamps_batches_with_the_broker_time(broker):
    topic = unique_topic("append-time")
    create_topic_with(broker, topic, {"message.timestamp.type": "LogAppendTime"})
    started_ms = int(time.time() * 1000)
    result = produce(broker, topic, valid_batch([(b"k", b"v"), (b"k2", b"v2")], "snappy"))
    assert result["error_code"] == 0, result
    assert started_ms <= result["log_append_time"] <= int(time.time() * 1000), result
    records = kafka_python_read(broker.bootstrap, topic, 1, 2)
    assert [(r[2], r[3]) for r in records] == [(b"k", b"v"), (b"k2", b"v2")]
    confluent = read_all(broker.bootstrap, topic, 1, expect_count=2)
    # (partition, offset, key, value, headers, timestamp type, timestamp): type 2 is LogAppendTime.
    assert [(r[5], r[6]) for r in confluent] == [(2, result["log_append_time"])] * 2


def test_list_offsets_by_timestamp_finds_the_record_inside_a_compressed_batch(broker):
    topic = unique_topic("ts-compressed")
    create_topic(broker.bootstrap, topic, 1)
    for round, codec in enumerate(("gzip", "snappy", "lz4", "zstd")):
        base = BASE_TIMESTAMP_MS + 1000 * round
        pairs = [(f"{codec}{i}".encode(), b"v") for i in range(4)]
        result = produce(broker, topic, valid_batch(pairs, codec, timestamp_step=10, base_timestamp_ms=base))
        assert result["error_code"] == 0, result
        # Records at base, +10, +20, +30: the first at or after +15 is the third.
        assert list_offset(broker, topic, base + 15) == (0, base + 20, result["base_offset"] + 2), codec
        assert list_offset(broker, topic, base) == (0, base, result["base_offset"]), codec
