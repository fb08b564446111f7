"""Small segments (--internal-segment-bytes 64 KiB): many segment files per partition, reads from any
offset (sparse index lookups), time lookups across segments, all again after kill -9 and after
a clean restart."""

import random
import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError, Producer, TopicPartition

from e2e_util import (
    CLIENT_TIMEOUT_S,
    confluent_base_config,
    confluent_consumer,
    create_topic,
    read_all,
    unique_topic,
)

SEGMENT_BYTES = 64 * 1024
PARTITIONS = 2
RECORD_COUNT = 4000
BASE_TIMESTAMP_MS = 1_720_000_000_000
SEEKS = 25
SEEK_READ = 7


def produce(bootstrap, topic):
    config = confluent_base_config(bootstrap)
    # Batches well under a segment, so that segments roll at about SEGMENT_BYTES.
    config.update({"acks": "all", "enable.idempotence": False, "linger.ms": 5, "batch.size": 8192,
                   "message.timeout.ms": 30000})
    producer = Producer(config)
    reports = []
    for i in range(RECORD_COUNT):
        value = f"segment-record-{i:05d}-".encode() + bytes([i % 251]) * (100 + i % 200)
        while True:
            try:
                producer.produce(topic, key=f"k{i}".encode(), value=value, partition=i % PARTITIONS,
                                 timestamp=BASE_TIMESTAMP_MS + i,
                                 on_delivery=lambda error, message: reports.append((error, message)))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    errors = [error for error, _ in reports if error is not None]
    assert not errors, errors[:5]
    expected = sorted(
        (m.partition(), m.offset(), m.key(), m.value(), (), TIMESTAMP_CREATE_TIME, BASE_TIMESTAMP_MS + int(m.key()[1:]))
        for _, m in reports
    )
    return expected


def read_from(bootstrap, topic, partition, offset, count):
    consumer = confluent_consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        records = []
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while len(records) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    break
                raise AssertionError(message.error())
            headers = message.headers()
            records.append((message.partition(), message.offset(), message.key(), message.value(),
                            tuple(headers) if headers else (), *message.timestamp()))
        return records[:count]
    finally:
        consumer.close()


def check_everything(broker, topic, expected, rng):
    assert read_all(broker.bootstrap, topic, PARTITIONS, timeout_s=60, expect_count=len(expected)) == expected
    per_partition = {p: [r for r in expected if r[0] == p] for p in range(PARTITIONS)}
    for _ in range(SEEKS):
        p = rng.randrange(PARTITIONS)
        offset = rng.randrange(len(per_partition[p]))
        got = read_from(broker.bootstrap, topic, p, offset, SEEK_READ)
        assert got == per_partition[p][offset:offset + SEEK_READ], f"read from {p}@{offset}"
    consumer = confluent_consumer(broker.bootstrap)
    try:
        for _ in range(SEEKS):
            p = rng.randrange(PARTITIONS)
            target = rng.choice(per_partition[p])[6]
            # Kafka's answer: the first offset whose timestamp is >= the target (timestamps need
            # not grow with offsets; test_ordering.py checks the order separately).
            want = next(r[1] for r in per_partition[p] if r[6] >= target)
            [answer] = consumer.offsets_for_times([TopicPartition(topic, p, target)], timeout=10)
            assert (answer.error, answer.offset) == (None, want), f"time lookup {target} in partition {p}"
    finally:
        consumer.close()


@pytest.mark.broker_args("--internal-segment-bytes", SEGMENT_BYTES)
def test_many_segments_read_anywhere_after_crash_and_restart(broker):
    rng = random.Random(7)
    topic = unique_topic("segments")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    expected = produce(broker.bootstrap, topic)

    for p in range(PARTITIONS):
        segments = sorted(broker.data_dir.glob(f"{topic}-{p}/*.log"))
        assert len(segments) >= 4, f"partition {p} did not roll segments: {segments}"

    check_everything(broker, topic, expected, rng)
    broker.kill9()
    broker.start()
    check_everything(broker, topic, expected, rng)
    broker.restart()
    check_everything(broker, topic, expected, rng)
