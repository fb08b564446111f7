"""A flipped byte in a sealed segment of a stopped broker: after the restart the partition stays
online, the damaged batch answers CORRUPT_MESSAGE, and the records before and after it are read
with confluent-kafka (assign + seek) and kcat."""

import shutil
import struct
import subprocess
import time

from confluent_kafka import KafkaError, Producer, TopicPartition

from e2e_util import CLIENT_TIMEOUT_S, confluent_base_config, confluent_consumer, create_topic, unique_topic

import pytest

SEGMENT_BYTES = 64 * 1024
RECORD_COUNT = 1500
KCAT = shutil.which("kcat") or "kcat"
KCAT_TIMEOUT_S = 30
# How long kcat, seeking to the damaged batch, runs before it is stopped to read its errors.
KCAT_ERROR_WAIT_S = 5
READ_COUNT = 10
BATCH_HEADER_BYTES = 61


def value_of(i):
    return f"fenced-{i:05d}-".encode() + bytes([65 + i % 26]) * (80 + i % 50)


def produce(bootstrap, topic):
    config = confluent_base_config(bootstrap)
    # Small batches: many per segment, segments roll at about SEGMENT_BYTES.
    config.update({"acks": "all", "linger.ms": 2, "batch.size": 2048, "compression.type": "none"})
    producer = Producer(config)
    reports = []
    for i in range(RECORD_COUNT):
        while True:
            try:
                producer.produce(topic, value=value_of(i), partition=0,
                                 on_delivery=lambda error, message: reports.append((error, message)))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert all(error is None for error, _ in reports), [e for e, _ in reports if e][:3]
    return {message.offset(): message.value() for _, message in reports}


def batches(segment):
    """(position, base offset, next offset, length) of each batch in a segment file."""
    data = segment.read_bytes()
    found, position = [], 0
    while position + BATCH_HEADER_BYTES <= len(data):
        base, length = struct.unpack_from(">qi", data, position)
        (last_delta,) = struct.unpack_from(">i", data, position + 23)
        found.append((position, base, base + last_delta + 1, 12 + length))
        position += 12 + length
    return found


def flip_byte_in_a_sealed_segment(data_dir, topic):
    """Flips a byte inside the records of a batch in the middle of the second segment; returns
    that batch's offsets [first, next)."""
    segments = sorted((data_dir / f"{topic}-0").glob("*.log"))
    assert len(segments) >= 3, segments
    in_segment = batches(segments[1])
    position, first, following, length = in_segment[len(in_segment) // 2]
    assert length > BATCH_HEADER_BYTES + 20
    with open(segments[1], "r+b") as file:
        file.seek(position + BATCH_HEADER_BYTES + 10)
        byte = file.read(1)
        file.seek(position + BATCH_HEADER_BYTES + 10)
        file.write(bytes([byte[0] ^ 0x20]))
    return first, following


def confluent_read(bootstrap, topic, offset, count):
    """Up to `count` records from `offset`, or the first error the consumer reports."""
    consumer = confluent_consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, 0, offset)])
        records = []
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while len(records) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                return records, message.error()
            records.append((message.offset(), message.value()))
        return records, None
    finally:
        consumer.close()


def kcat(*args, timeout_s=KCAT_TIMEOUT_S):
    command = [KCAT, "-X", "broker.address.family=v4", "-X", "socket.timeout.ms=10000"] + list(args)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
        return done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as error:
        stderr = error.stderr.decode() if isinstance(error.stderr, bytes) else (error.stderr or "")
        return None, "", stderr


def kcat_values(bootstrap, topic, offset, count):
    code, out, err = kcat("-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", str(offset), "-c", str(count),
                          "-q", "-f", "%o %s\\n")
    assert code == 0, err
    return [(int(line.split(" ", 1)[0]), line.split(" ", 1)[1].encode()) for line in out.splitlines()]


@pytest.mark.broker_args("--internal-segment-bytes", SEGMENT_BYTES)
def test_a_flipped_byte_in_a_sealed_segment_fences_only_its_batch(broker):
    topic = unique_topic("fenced")
    create_topic(broker.bootstrap, topic, 1)
    stored = produce(broker.bootstrap, topic)
    broker.stop()
    first, following = flip_byte_in_a_sealed_segment(broker.data_dir, topic)
    broker.start()

    def expected(offset, count):
        return [(o, stored[o]) for o in range(offset, offset + count)]

    before = first - READ_COUNT
    assert confluent_read(broker.bootstrap, topic, before, READ_COUNT) == (expected(before, READ_COUNT), None)
    assert confluent_read(broker.bootstrap, topic, following, READ_COUNT) == (expected(following, READ_COUNT), None)
    assert confluent_read(broker.bootstrap, topic, RECORD_COUNT - 3, 3) == (expected(RECORD_COUNT - 3, 3), None)
    records, error = confluent_read(broker.bootstrap, topic, first, 1)
    assert records == [] and error is not None, (records, error)
    assert error.code() == KafkaError.INVALID_MSG, error  # Kafka CORRUPT_MESSAGE (2)

    assert kcat_values(broker.bootstrap, topic, before, READ_COUNT) == expected(before, READ_COUNT)
    assert kcat_values(broker.bootstrap, topic, following, READ_COUNT) == expected(following, READ_COUNT)
    code, out, err = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-o", str(first), "-c", "1",
                          "-f", "%o %s\\n", timeout_s=KCAT_ERROR_WAIT_S)
    assert out == "" and "Broker: Invalid message" in err, (code, out, err)  # librdkafka names code 2 so

    # The partition takes appends as before, at the next offset.
    producer = Producer(confluent_base_config(broker.bootstrap))
    producer.produce(topic, value=b"after the fence", partition=0)
    assert producer.flush(30) == 0
    assert confluent_read(broker.bootstrap, topic, RECORD_COUNT, 1) == ([(RECORD_COUNT, b"after the fence")], None)
    assert "fenced" in broker.log_tail()
