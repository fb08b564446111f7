"""Retention: with small segments and retention.ms=1000, records produced with old timestamps
are deleted segment by segment in the background; the log start offset advances, a read from
the beginning starts there, and the active segment's records stay."""

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import Broker, free_port
from e2e_util import (
    CLIENT_TIMEOUT_S,
    confluent_base_config,
    confluent_consumer,
    read_all,
    unique_topic,
    wait_for_partitions,
    wait_until,
    watermarks,
)

SEGMENT_BYTES = 16384
RECORD_COUNT = 300
VALUE_BYTES = 500
# Long before the test runs: older than now - retention.ms.
OLD_TIMESTAMP_MS = 1_000_000_000_000


def produce_old_records(bootstrap, topic):
    config = confluent_base_config(bootstrap)
    # One record per batch, so segments roll at about SEGMENT_BYTES.
    config.update({"acks": "all", "enable.idempotence": False, "linger.ms": 0})
    producer = Producer(config)
    errors = []
    for i in range(RECORD_COUNT):
        # Keyed, so that compacted topics (which refuse records without a key) take them too.
        producer.produce(topic, key=b"k%d" % i, value=bytes([i % 251]) * VALUE_BYTES, partition=0,
                         timestamp=OLD_TIMESTAMP_MS + i,
                         on_delivery=lambda error, _: errors.append(error) if error else None)
        assert producer.flush(CLIENT_TIMEOUT_S) == 0
    assert not errors, errors[:5]


@pytest.mark.broker_args("--retention-check-interval-ms", "200")
def test_retention_by_time_advances_the_log_start(broker):
    topic = unique_topic("retention")
    admin = AdminClient(confluent_base_config(broker.bootstrap))
    new_topic = NewTopic(topic, num_partitions=1, replication_factor=1,
                         config={"internal.segment.bytes": str(SEGMENT_BYTES), "retention.ms": "1000"})
    admin.create_topics([new_topic], request_timeout=15)[topic].result(timeout=CLIENT_TIMEOUT_S)
    wait_for_partitions(broker.bootstrap, topic, 1, admin=admin)
    produce_old_records(broker.bootstrap, topic)

    # Every record is old, so retention ends with only the active segment left on disk and the
    # log start at its base offset.
    partition_dir = broker.data_dir / f"{topic}-0"
    consumer = confluent_consumer(broker.bootstrap)
    try:
        state = {}

        def observe():
            state["low"], state["high"] = consumer.get_watermark_offsets(
                TopicPartition(topic, 0), timeout=10)
            state["segments"] = sorted(int(path.stem) for path in partition_dir.glob("*.log"))

        wait_until(lambda: state.get("low", 0) > 0 and state["segments"] == [state["low"]],
                   timeout_s=CLIENT_TIMEOUT_S, describe=lambda: f"{state}", step=observe)
    finally:
        consumer.close()
    low, high = state["low"], state["high"]
    assert high == RECORD_COUNT
    # The active segment, holding the last records, stays.
    assert 0 < low < RECORD_COUNT

    records = read_all(broker.bootstrap, topic, 1)
    offsets = [record[1] for record in records]
    assert offsets == list(range(low, RECORD_COUNT))
    for record in records:
        assert record[3] == bytes([record[1] % 251]) * VALUE_BYTES
        assert record[6] == OLD_TIMESTAMP_MS + record[1]

    # A read below the log start is out of range; the consumer resets to the earliest offset.
    records_from_zero = []
    consumer = confluent_consumer(broker.bootstrap)
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])

        def poll_one():
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                records_from_zero.append(message.offset())

        wait_until(lambda: records_from_zero, timeout_s=CLIENT_TIMEOUT_S,
                   describe=lambda: "no record after reset", step=poll_one)
    finally:
        consumer.close()
    assert records_from_zero[0] == low
    broker.assert_running()


def test_a_compact_only_topic_is_never_deleted_by_retention(tmp_path):
    # One shard, so one retention task visits both topics in every pass.
    broker = Broker(tmp_path / "broker", free_port(), shards=1,
                    extra_args=["--retention-check-interval-ms", "200"])
    try:
        broker.start()
        admin = AdminClient(confluent_base_config(broker.bootstrap))
        retention = {"internal.segment.bytes": str(SEGMENT_BYTES), "retention.ms": "1000"}
        compact, deleted = unique_topic("compact-only"), unique_topic("compact-delete")
        futures = admin.create_topics([
            NewTopic(compact, 1, 1, config={**retention, "cleanup.policy": "compact"}),
            NewTopic(deleted, 1, 1, config={**retention, "cleanup.policy": "compact,delete"}),
        ], request_timeout=15)
        for future in futures.values():
            future.result(timeout=CLIENT_TIMEOUT_S)
        for topic in (compact, deleted):
            wait_for_partitions(broker.bootstrap, topic, 1, admin=admin)
        produce_old_records(broker.bootstrap, compact)

        # Two trims of the compact,delete topic: the second comes from a pass that started after
        # the first trim, so after the compact-only topic's old records were all stored.
        low = 0
        for round_ in range(2):
            produce_old_records(broker.bootstrap, deleted)
            state = {}
            wait_until(lambda: state.get("low", 0) > low, timeout_s=CLIENT_TIMEOUT_S,
                       describe=lambda: f"round {round_}: {state}",
                       step=lambda: state.update(low=watermarks(broker.bootstrap, deleted)[0]))
            low = state["low"]

        assert watermarks(broker.bootstrap, compact) == (0, RECORD_COUNT)
        records = read_all(broker.bootstrap, compact, 1)
        assert [record[1] for record in records] == list(range(RECORD_COUNT))
        broker.assert_running()
    finally:
        problem = broker.close()
    assert problem is None, problem
