"""confluent_kafka (a current librdkafka) against the broker: admin, acks=all produce, assign() read-back,
ListOffsets (watermarks and offsets_for_times), all again after a restart."""

import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from e2e_util import (
    CLIENT_TIMEOUT_S,
    assert_dense_offsets,
    confluent_base_config,
    confluent_consumer,
    create_topic,
    read_all,
    unique_topic,
)

PARTITIONS = 4
RECORD_COUNT = 200
BASE_TIMESTAMP_MS = 1_700_000_000_000
# Records of one partition are TIMESTAMP_STEP_MS * PARTITIONS apart.
TIMESTAMP_STEP_MS = 1000


def record_spec(i):
    """Key, value, headers, timestamp and partition of record i: varied on purpose."""
    key = None if i % 17 == 0 else f"key-{i}".encode()
    value = None if i % 29 == 5 else (f"value-{i}-".encode() + bytes(range(256))[: i % 64])
    headers = [("idx", str(i).encode()), ("bin", bytes([i % 256, 0, 255]))]
    if i % 3 == 0:
        headers += [("dup", b"first"), ("dup", b"second")]
    if i % 11 == 0:
        headers = []
    return key, value, headers, BASE_TIMESTAMP_MS + i * TIMESTAMP_STEP_MS, i % PARTITIONS


def produce_all(bootstrap, topic):
    """Produce RECORD_COUNT records with acks=all; return the expected consumed tuples."""
    config = confluent_base_config(bootstrap)
    config.update({"acks": "all", "enable.idempotence": False, "linger.ms": 5, "message.timeout.ms": 20000})
    producer = Producer(config)
    reports = []
    for i in range(RECORD_COUNT):
        key, value, headers, timestamp, partition = record_spec(i)
        producer.produce(
            topic,
            key=key,
            value=value,
            headers=headers,
            timestamp=timestamp,
            partition=partition,
            on_delivery=lambda error, message, i=i: reports.append((i, error, message)),
        )
        producer.poll(0)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0, "not every record was delivered in time"
    assert len(reports) == RECORD_COUNT
    failures = [(i, error) for i, error, _ in reports if error is not None]
    assert not failures, f"delivery errors: {failures[:10]}"

    expected = []
    for i, _, message in reports:
        key, value, headers, timestamp, partition = record_spec(i)
        assert message.partition() == partition
        expected.append((partition, message.offset(), key, value, tuple(headers), TIMESTAMP_CREATE_TIME, timestamp))
    expected.sort(key=lambda r: (r[0], r[1]))
    assert_dense_offsets(expected)
    # Within one partition, records keep the order they were produced in.
    for p in range(PARTITIONS):
        stamps = [r[6] for r in expected if r[0] == p]
        assert stamps == sorted(stamps), f"partition {p} is out of produce order"
    return expected


def check_watermarks(bootstrap, topic, expected):
    consumer = confluent_consumer(bootstrap)
    try:
        for p in range(PARTITIONS):
            count = sum(1 for r in expected if r[0] == p)
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            assert (low, high) == (0, count), f"partition {p} watermarks"
    finally:
        consumer.close()


def check_offsets_for_times(bootstrap, topic, expected):
    """ListOffsets by timestamp: the first offset whose timestamp is >= the query."""
    consumer = confluent_consumer(bootstrap)
    try:
        cases_by_partition = []
        for p in range(PARTITIONS):
            records = [r for r in expected if r[0] == p]
            middle = records[len(records) // 2]
            cases_by_partition.append([
                (0, 0),  # before everything: the first record
                (middle[6], middle[1]),  # exact timestamp of a record
                (middle[6] - 1, middle[1]),  # just before it: still that record
                (middle[6] + 1, middle[1] + 1),  # just after it: the next one
                (records[-1][6] + 1, -1),  # after everything: no offset (-1)
            ])
        # One request per case, each naming every partition once (a partition may appear only
        # once in a ListOffsets request).
        for case in range(len(cases_by_partition[0])):
            queries = [TopicPartition(topic, p, cases_by_partition[p][case][0]) for p in range(PARTITIONS)]
            results = consumer.offsets_for_times(queries, timeout=10)
            got = sorted((tp.partition, tp.offset, tp.error) for tp in results)
            want = [(p, cases_by_partition[p][case][1], None) for p in range(PARTITIONS)]
            assert got == want, f"offsets_for_times for {[q.offset for q in queries]}"
    finally:
        consumer.close()


def test_confluent_admin_produce_consume_restart(broker):
    topic = unique_topic("confluent")
    admin = create_topic(broker.bootstrap, topic, PARTITIONS)

    metadata = admin.list_topics(timeout=10)
    assert [(b.host, b.port) for b in metadata.brokers.values()] == [(broker.host, broker.port)]
    assert sorted(metadata.topics[topic].partitions) == list(range(PARTITIONS))
    broker_id = next(iter(metadata.brokers))
    for partition in metadata.topics[topic].partitions.values():
        assert partition.leader == broker_id and partition.replicas == [broker_id] and partition.isrs == [broker_id]

    expected = produce_all(broker.bootstrap, topic)
    assert read_all(broker.bootstrap, topic, PARTITIONS, expect_count=len(expected)) == expected
    check_watermarks(broker.bootstrap, topic, expected)
    check_offsets_for_times(broker.bootstrap, topic, expected)

    broker.restart()
    assert read_all(broker.bootstrap, topic, PARTITIONS, expect_count=len(expected)) == expected
    check_watermarks(broker.bootstrap, topic, expected)
    check_offsets_for_times(broker.bootstrap, topic, expected)
    assert topic in AdminClient(confluent_base_config(broker.bootstrap)).list_topics(timeout=10).topics


def test_confluent_create_existing_topic_fails(broker):
    """CreateTopics for an existing name answers TOPIC_ALREADY_EXISTS (36) and changes nothing."""
    topic = unique_topic("confluent-dup")
    admin = create_topic(broker.bootstrap, topic, 2)
    futures = admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)], request_timeout=15)
    with pytest.raises(KafkaException) as raised:
        futures[topic].result(timeout=CLIENT_TIMEOUT_S)
    assert raised.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS, raised.value
    assert sorted(admin.list_topics(timeout=10).topics[topic].partitions) == [0, 1]


def test_confluent_out_of_range_offset_resets(broker):
    """Fetch past the end answers OFFSET_OUT_OF_RANGE; the client then resets per auto.offset.reset."""
    topic = unique_topic("confluent-reset")
    create_topic(broker.bootstrap, topic, 1)
    config = confluent_base_config(broker.bootstrap)
    config.update({"acks": "all", "enable.idempotence": False})
    producer = Producer(config)
    for i in range(5):
        producer.produce(topic, key=b"k", value=f"r{i}".encode(), partition=0)
    assert producer.flush(CLIENT_TIMEOUT_S) == 0

    for reset, want in (("earliest", [b"r0", b"r1", b"r2", b"r3", b"r4"]), ("latest", [b"r5"])):
        consumer = confluent_consumer(broker.bootstrap, **{"auto.offset.reset": reset})
        try:
            consumer.assign([TopicPartition(topic, 0, 1000)])
            got = []
            deadline = time.monotonic() + CLIENT_TIMEOUT_S
            produced_late = False
            while len(got) < len(want) and time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is None:
                    continue
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        if reset == "latest" and not produced_late:
                            # Reset to the end happened: a new record must be what is read next.
                            producer.produce(topic, key=b"k", value=b"r5", partition=0)
                            assert producer.flush(CLIENT_TIMEOUT_S) == 0
                            produced_late = True
                        continue
                    raise AssertionError(f"{reset}: {message.error()}")
                got.append(message.value())
            assert got == want, f"auto.offset.reset={reset}"
        finally:
            consumer.close()


@pytest.mark.broker_args("--default-partitions", 3)
def test_confluent_auto_create_uses_default_partitions(broker):
    """A Metadata request for an unknown topic creates it with --default-partitions partitions."""
    topic = unique_topic("auto")
    admin = AdminClient(confluent_base_config(broker.bootstrap))
    deadline = time.monotonic() + CLIENT_TIMEOUT_S
    metadata = None
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic=topic, timeout=10).topics.get(topic)
        if metadata is not None and metadata.error is None and len(metadata.partitions) == 3:
            break
        time.sleep(0.1)
    assert metadata is not None and metadata.error is None, metadata
    assert sorted(metadata.partitions) == [0, 1, 2]
    assert topic in admin.list_topics(timeout=10).topics


def test_confluent_large_records(broker):
    """Records near Kafka's default 1 MB limit, each in its own batch, read back byte for byte."""
    topic = unique_topic("confluent-large")
    create_topic(broker.bootstrap, topic, 2)
    config = confluent_base_config(broker.bootstrap)
    config.update({"acks": "all", "enable.idempotence": False, "linger.ms": 0, "message.max.bytes": 1000000})
    producer = Producer(config)
    values = [bytes([i]) * (900_000 - i * 1000) for i in range(6)]
    reports = []
    for i, value in enumerate(values):
        producer.produce(topic, key=f"big{i}".encode(), value=value, partition=i % 2,
                         on_delivery=lambda error, message: reports.append((error, message)))
    assert producer.flush(CLIENT_TIMEOUT_S) == 0
    assert [error for error, _ in reports] == [None] * len(values)
    records = read_all(broker.bootstrap, topic, 2, expect_count=len(values))
    got = sorted((r[2], r[3]) for r in records)
    assert got == sorted((f"big{i}".encode(), v) for i, v in enumerate(values))
    broker.restart()
    assert read_all(broker.bootstrap, topic, 2, expect_count=len(values)) == records
