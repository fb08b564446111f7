"""DeleteRecords, segment.ms and the flush configs through real clients.

DeleteRecords moves a partition's log start offset (its low watermark): reads below it are out of
range, whole segments below it are deleted, and the new start survives a restart. segment.ms
rolls the active segment by age; flush.messages and flush.ms are accepted, shown by
DescribeConfigs and leave produce and consume working."""

import os
import time
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic
from kafka import KafkaAdminClient
from kafka import TopicPartition as KafkaTopicPartition
from kafka.errors import OffsetOutOfRangeError, UnknownTopicOrPartitionError

from conftest import Broker, free_port
from e2e_util import (
    CLIENT_TIMEOUT_S,
    confluent_base_config,
    confluent_consumer,
    produce_records,
    read_all,
    unique_topic,
    wait_for_partitions,
    wait_until,
    watermarks,
)

SEGMENT_BYTES = 16384
RECORD_COUNT = 300
VALUE_BYTES = 500


def produce_large(bootstrap, topic, count, first=0):
    """Records `first`.. of VALUE_BYTES each, one per batch (so segments roll every ~30 records),
    acks=all; returns [(offset, value)]."""
    config = confluent_base_config(bootstrap)
    config.update({"acks": "all", "enable.idempotence": False, "linger.ms": 0})
    producer = Producer(config)
    reports = []
    for i in range(first, first + count):
        value = f"{i:06d}".encode() * (VALUE_BYTES // 6)
        producer.produce(topic, value=value, partition=0,
                         on_delivery=lambda error, message: reports.append((error, message)))
        assert producer.flush(CLIENT_TIMEOUT_S) == 0
    assert all(error is None for error, _ in reports), reports[:3]
    return [(message.offset(), message.value()) for _, message in reports]


def create(admin, bootstrap, topic, config):
    new_topic = NewTopic(topic, num_partitions=1, replication_factor=1, config=config)
    admin.create_topics([new_topic], request_timeout=15)[topic].result(timeout=CLIENT_TIMEOUT_S)
    wait_for_partitions(bootstrap, topic, 1, admin=admin)


def segment_bases(broker, topic):
    return sorted(int(path.stem) for path in (broker.data_dir / f"{topic}-0").glob("*.log"))


def fetch_error_at(bootstrap, topic, offset):
    """The error a consumer with auto.offset.reset=error gets when fetching at `offset`: librdkafka
    reports the broker's OFFSET_OUT_OF_RANGE as _AUTO_OFFSET_RESET naming that error."""
    consumer = confluent_consumer(bootstrap, **{"auto.offset.reset": "error"})
    try:
        consumer.assign([TopicPartition(topic, 0, offset)])
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error() is None:
                continue
            if message.error().code() == KafkaError._PARTITION_EOF:
                continue
            error = message.error()
            if error.code() == KafkaError._AUTO_OFFSET_RESET and "out of range" in error.str().lower():
                return KafkaError.OFFSET_OUT_OF_RANGE
            return error.code()
        raise AssertionError(f"no error fetching {topic} at {offset}")
    finally:
        consumer.close()


def test_delete_records_moves_the_log_start_across_restarts(broker):
    topic = unique_topic("delete-records")
    admin = AdminClient(confluent_base_config(broker.bootstrap))
    create(admin, broker.bootstrap, topic, {"internal.segment.bytes": str(SEGMENT_BYTES)})
    produced = produce_large(broker.bootstrap, topic, RECORD_COUNT)
    assert [offset for offset, _ in produced] == list(range(RECORD_COUNT))
    assert len(segment_bases(broker, topic)) > 3

    # confluent-kafka: delete everything below offset 120.
    futures = admin.delete_records([TopicPartition(topic, 0, 120)], request_timeout=15)
    deleted = next(iter(futures.values())).result(timeout=CLIENT_TIMEOUT_S)
    assert deleted.low_watermark == 120
    assert watermarks(broker.bootstrap, topic) == (120, RECORD_COUNT)
    # Whole segments below the new start are gone; the one holding offset 120 stays.
    bases = segment_bases(broker, topic)
    assert bases[0] <= 120 < bases[1], bases
    records = read_all(broker.bootstrap, topic, 1)
    assert [r[1] for r in records] == list(range(120, RECORD_COUNT))
    assert [(r[1], r[3]) for r in records] == produced[120:]
    assert fetch_error_at(broker.bootstrap, topic, 50) == KafkaError.OFFSET_OUT_OF_RANGE

    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (120, RECORD_COUNT)
    assert fetch_error_at(broker.bootstrap, topic, 119) == KafkaError.OFFSET_OUT_OF_RANGE

    # kafka-python: past the end is out of range, and -1 means the high watermark.
    kafka_admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=15000)
    try:
        partition = KafkaTopicPartition(topic, 0)
        with pytest.raises(OffsetOutOfRangeError):
            kafka_admin.delete_records({partition: RECORD_COUNT + 1})
        result = kafka_admin.delete_records({partition: 200})
        assert result[partition]["low_watermark"] == 200
        result = kafka_admin.delete_records({partition: -1})
        assert result[partition]["low_watermark"] == RECORD_COUNT
        # Sent straight to the broker (clients check metadata first): an unknown partition.
        with pytest.raises(UnknownTopicOrPartitionError):
            kafka_admin.delete_records({KafkaTopicPartition(topic, 7): 1}, partition_leader_id=0)
    finally:
        kafka_admin.close()
    assert watermarks(broker.bootstrap, topic) == (RECORD_COUNT, RECORD_COUNT)
    assert segment_bases(broker, topic) == [segment_bases(broker, topic)[-1]]

    # The log keeps taking records after the start.
    more = produce_large(broker.bootstrap, topic, 5, first=RECORD_COUNT)
    assert [offset for offset, _ in more] == list(range(RECORD_COUNT, RECORD_COUNT + 5))
    assert [(r[1], r[3]) for r in read_all(broker.bootstrap, topic, 1)] == more


def describe(admin, topic):
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=CLIENT_TIMEOUT_S)
    return {name: entry.value for name, entry in entries.items()}


def test_segment_ms_rolls_by_age_and_flush_configs_are_served(broker):
    topic = unique_topic("segment-ms")
    admin = AdminClient(confluent_base_config(broker.bootstrap))
    create(admin, broker.bootstrap, topic, {"flush.messages": "1", "flush.ms": "50"})
    configs = describe(admin, topic)
    assert (configs["flush.messages"], configs["flush.ms"]) == ("1", "50")
    assert configs["segment.ms"] == "604800000"
    produce_records(broker.bootstrap, topic, 3, 1, "young", first=0)
    assert segment_bases(broker, topic) == [0]

    # Kafka's smallest segment.ms: every append after the first finds the segment old enough.
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"segment.ms": "1"})
    admin.alter_configs([resource])[resource].result(timeout=CLIENT_TIMEOUT_S)
    assert describe(admin, topic)["segment.ms"] == "1"
    # AlterConfigs replaces the whole set: the flush configs went back to their defaults.
    # Each call starts a new producer, which alone takes longer than a millisecond.
    for i in range(3):
        produce_records(broker.bootstrap, topic, 1, 1, "aged", first=3 + i)
    assert segment_bases(broker, topic) == [0, 3, 4, 5]
    records = read_all(broker.bootstrap, topic, 1)
    assert [r[1] for r in records] == list(range(6))

    # An invalid value is refused with INVALID_CONFIG and changes nothing.
    bad = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"segment.ms": "0"})
    with pytest.raises(KafkaException) as raised:
        admin.alter_configs([bad])[bad].result(timeout=CLIENT_TIMEOUT_S)
    assert raised.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert describe(admin, topic)["segment.ms"] == "1"


def test_a_relative_data_dir_serves_rolls_syncs_and_deletes(tmp_path):
    """The README's default `--data-dir ./data` is relative: segment rolls, acks=all syncs,
    DeleteRecords and topic deletion all sync directories under it."""
    workdir = Path(os.path.relpath(tmp_path / "broker"))
    assert not workdir.is_absolute()
    broker = Broker(workdir, free_port(), extra_args=["--internal-segment-bytes", str(SEGMENT_BYTES)])
    try:
        broker.start()
        topic = unique_topic("relative")
        admin = AdminClient(confluent_base_config(broker.bootstrap))
        create(admin, broker.bootstrap, topic, {})
        produced = produce_large(broker.bootstrap, topic, 100)
        assert len(segment_bases(broker, topic)) > 2
        futures = admin.delete_records([TopicPartition(topic, 0, 50)], request_timeout=15)
        assert next(iter(futures.values())).result(timeout=CLIENT_TIMEOUT_S).low_watermark == 50
        assert [(r[1], r[3]) for r in read_all(broker.bootstrap, topic, 1)] == produced[50:]
        admin.delete_topics([topic], request_timeout=15)[topic].result(timeout=CLIENT_TIMEOUT_S)
        wait_until(lambda: not (broker.data_dir / f"{topic}-0").exists(), timeout_s=CLIENT_TIMEOUT_S,
                   describe=lambda: f"{topic}-0 still on disk")
        broker.assert_running()
        assert "KAFKA_STORAGE_ERROR" not in broker.log_path.read_text()
        assert " ERROR " not in broker.log_path.read_text()
    finally:
        problem = broker.close()
        assert not problem, problem
