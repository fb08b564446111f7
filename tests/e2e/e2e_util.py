"""Helpers shared by the end-to-end tests: the sluice CLI, confluent_kafka read-back, health checks."""

import os
import subprocess
import time
import uuid
from collections import defaultdict

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import SLUICE_BIN

# Bounds for client operations; every wait in the tests has a deadline.
CLIENT_TIMEOUT_S = 20.0
CLI_TIMEOUT_S = 30.0


def unique_topic(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run_sluice(args, input_text=None, timeout_s=CLI_TIMEOUT_S, check=True):
    """Run the sluice CLI; on failure the assertion message carries its output."""
    command = [str(SLUICE_BIN)] + [str(arg) for arg in args]
    try:
        result = subprocess.run(
            command,
            input=input_text if input_text is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout_s,
            # Error messages without an anyhow backtrace: they are shown in assertion messages.
            env={**os.environ, "RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0"},
        )
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"{command} did not finish within {timeout_s}s; stderr: {error.stderr}")
    if check and result.returncode != 0:
        raise AssertionError(
            f"{command} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def confluent_base_config(bootstrap):
    return {
        "bootstrap.servers": bootstrap,
        "broker.address.family": "v4",
        "socket.timeout.ms": 10000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
    }


def create_topic(bootstrap, topic, partitions):
    """Create a topic with confluent_kafka's AdminClient (CreateTopics) and wait for the result."""
    admin = AdminClient(confluent_base_config(bootstrap))
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)], request_timeout=15
    )
    futures[topic].result(timeout=CLIENT_TIMEOUT_S)
    wait_for_partitions(bootstrap, topic, partitions, admin=admin)
    return admin


def wait_for_partitions(bootstrap, topic, partitions, admin=None, timeout_s=CLIENT_TIMEOUT_S):
    """Wait (bounded) until Metadata shows the topic with `partitions` partitions, all led."""
    admin = admin or AdminClient(confluent_base_config(bootstrap))
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=10)
        last = metadata.topics.get(topic)
        if (
            last is not None
            and last.error is None
            and len(last.partitions) == partitions
            and all(p.leader >= 0 and p.error is None for p in last.partitions.values())
        ):
            return metadata
        time.sleep(0.1)
    raise AssertionError(f"topic {topic} never showed {partitions} led partitions; last metadata: {last}")


def confluent_consumer(bootstrap, **extra):
    config = confluent_base_config(bootstrap)
    config.update(
        {
            # librdkafka requires a group.id, but assign() never joins the group.
            "group.id": "sluice-e2e-unused",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    config.update(extra)
    return Consumer(config)


def watermarks(bootstrap, topic):
    """(low, high) watermarks of partition 0."""
    consumer = confluent_consumer(bootstrap)
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    finally:
        consumer.close()


def record_tuple(message):
    """A comparable view of a consumed confluent_kafka message."""
    headers = message.headers()
    timestamp_type, timestamp = message.timestamp()
    return (
        message.partition(),
        message.offset(),
        message.key(),
        message.value(),
        tuple(headers) if headers else (),
        timestamp_type,
        timestamp,
    )


def read_all(bootstrap, topic, partitions, timeout_s=CLIENT_TIMEOUT_S, expect_count=None):
    """Read every record of `partitions` partitions from the beginning with assign() (no groups).

    Stops when every partition reached its end (partition EOF) and, if given, at least
    `expect_count` records were read. Returns records sorted by (partition, offset).
    """
    consumer = confluent_consumer(bootstrap)
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        records = []
        at_end = set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    at_end.add(message.partition())
                    if len(at_end) == partitions and (expect_count is None or len(records) >= expect_count):
                        break
                    continue
                raise AssertionError(f"consume error: {message.error()}")
            at_end.discard(message.partition())
            records.append(record_tuple(message))
        else:
            raise AssertionError(
                f"read of {topic} did not reach the end of all {partitions} partitions within {timeout_s}s: "
                f"{len(records)} records, at end: {sorted(at_end)}"
            )
        return sorted(records, key=lambda r: (r[0], r[1]))
    finally:
        consumer.close()


def by_partition(records):
    grouped = defaultdict(list)
    for record in records:
        grouped[record[0]].append(record)
    return grouped


def assert_dense_offsets(records):
    """Offsets of each partition are 0, 1, 2, ... with no gap and no repeat."""
    for partition, items in by_partition(records).items():
        offsets = [r[1] for r in items]
        assert offsets == list(range(len(offsets))), f"partition {partition} offsets are not dense: {offsets[:50]}"


def produce_sync(bootstrap, topic, value, key=None, partition=0, acks="all"):
    """Produce one record and return its (partition, offset) from the delivery report."""
    config = confluent_base_config(bootstrap)
    config.update({"acks": acks, "enable.idempotence": False, "message.timeout.ms": 15000})
    producer = Producer(config)
    reports = []
    producer.produce(topic, value=value, key=key, partition=partition, on_delivery=lambda e, m: reports.append((e, m)))
    remaining = producer.flush(CLIENT_TIMEOUT_S)
    assert remaining == 0, "produce was not delivered in time"
    assert len(reports) == 1
    error, message = reports[0]
    assert error is None, f"delivery failed: {error}"
    return message.partition(), message.offset()


def health_check(broker, topic="health"):
    """A fresh client gets Metadata, produces a record with acks=all and reads exactly it back."""
    broker.assert_running()
    admin = AdminClient(confluent_base_config(broker.bootstrap))
    metadata = admin.list_topics(timeout=10)
    assert len(metadata.brokers) == 1, f"metadata brokers: {metadata.brokers}"
    value = uuid.uuid4().hex.encode()
    partition, offset = produce_sync(broker.bootstrap, topic, value, key=b"health")
    consumer = confluent_consumer(broker.bootstrap)
    try:
        consumer.assign([TopicPartition(topic, partition, offset)])
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(message.error())
            assert (message.offset(), message.key(), message.value()) == (offset, b"health", value)
            break
        else:
            raise AssertionError(f"health record at {topic}/{partition}@{offset} was not read back")
    finally:
        consumer.close()
    broker.assert_running()


# --- consumer groups (test_groups_*.py) ---------------------------------------------------------


def wait_until(condition, timeout_s, describe, interval_s=0.05, step=None):
    """Call `step` (if given) and check `condition` until it holds or `timeout_s` passes.

    `step` does the work between checks (for example polling consumers); without it the loop
    waits `interval_s` between checks. On timeout the assertion message is `describe()`.
    Returns the seconds it took.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    while True:
        if step is not None:
            step()
        if condition():
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise AssertionError(f"not reached within {timeout_s}s: {describe()}")
        if step is None:
            time.sleep(interval_s)


def produce_records(bootstrap, topic, count, partitions, tag, first=0, acks="all"):
    """Produce records `first`..`first+count-1` (record i to partition i % partitions, key and
    value naming `tag` and i) with `acks`; return [(partition, offset, key, value)] sorted."""
    config = confluent_base_config(bootstrap)
    config.update({"acks": acks, "enable.idempotence": False, "message.timeout.ms": 15000, "linger.ms": 2})
    producer = Producer(config)
    reports = []
    for i in range(first, first + count):
        producer.produce(
            topic,
            key=f"{tag}-k{i}".encode(),
            value=f"{tag}-v{i}".encode(),
            partition=i % partitions,
            on_delivery=lambda e, m: reports.append((e, m)),
        )
    remaining = producer.flush(CLIENT_TIMEOUT_S)
    assert remaining == 0, f"{remaining} records not delivered within {CLIENT_TIMEOUT_S}s"
    errors = [e for e, _ in reports if e is not None]
    assert not errors and len(reports) == count, f"delivery errors: {errors[:5]}, {len(reports)} reports"
    return sorted((m.partition(), m.offset(), m.key(), m.value()) for _, m in reports)


def kafka_group_partition(group_id, partitions=50):
    """The __consumer_offsets partition Kafka uses for a group: Utils.abs(groupId.hashCode()) % 50."""
    h = 0
    data = group_id.encode("utf-16-be")  # Java's String.hashCode runs over UTF-16 code units
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    if h >= 0x80000000:
        h -= 0x100000000
    return (0 if h == -0x80000000 else abs(h)) % partitions
