"""kafka-python (pure Python, ApiVersions auto-detection) against the broker: admin create, acks=all
keyed produce with headers and timestamps, assign()/seek_to_beginning read-back, again after a restart."""

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from e2e_util import CLIENT_TIMEOUT_S, unique_topic

PARTITIONS = 4
RECORD_COUNT = 120
BASE_TIMESTAMP_MS = 1_650_000_000_000


def record_spec(i):
    key = f"kp-key-{i}".encode()
    value = f"kp-value-{i}".encode() * (1 + i % 5)
    headers = [("source", b"kafka-python"), ("seq", str(i).encode())]
    return key, value, headers, BASE_TIMESTAMP_MS + 10 * i, i % PARTITIONS


def create_topic(bootstrap, topic):
    # No api_version is passed anywhere: the client must detect it through ApiVersions.
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    try:
        result = admin.create_topics(
            {topic: {"num_partitions": PARTITIONS, "replication_factor": 1}}, timeout_ms=10000, wait_for_metadata=True
        )
        assert topic in admin.list_topics(), result
        return result
    finally:
        admin.close()


def produce_all(bootstrap, topic):
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        request_timeout_ms=15000,
        max_block_ms=15000,
    )
    try:
        # Headers and explicit timestamps need record batch v2 (Kafka >= 0.11): the detected version
        # must reach that, and detection must have happened without a configured api_version.
        assert producer.config["api_version"] >= (0, 11), producer.config["api_version"]
        futures = []
        for i in range(RECORD_COUNT):
            key, value, headers, timestamp, partition = record_spec(i)
            futures.append(
                (i, producer.send(topic, key=key, value=value, headers=headers, timestamp_ms=timestamp, partition=partition))
            )
        producer.flush(timeout=CLIENT_TIMEOUT_S)
        expected = []
        for i, future in futures:
            metadata = future.get(timeout=CLIENT_TIMEOUT_S)
            key, value, headers, timestamp, partition = record_spec(i)
            assert (metadata.topic, metadata.partition) == (topic, partition)
            expected.append((partition, metadata.offset, key, value, headers, 0, timestamp))
    finally:
        producer.close(timeout=10)
    expected.sort(key=lambda r: (r[0], r[1]))
    for p in range(PARTITIONS):
        offsets = [r[1] for r in expected if r[0] == p]
        assert offsets == list(range(len(offsets))), f"partition {p} offsets {offsets}"
    return expected


def consume_all(bootstrap, topic, count):
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=15000,
        fetch_max_wait_ms=100,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        records = []
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                for r in batch:
                    records.append((r.partition, r.offset, r.key, r.value, list(r.headers), r.timestamp_type, r.timestamp))
        assert len(records) >= count, f"read {len(records)} of {count} records in {CLIENT_TIMEOUT_S}s"
        # Nothing more than what was produced: one more short poll must stay empty.
        extra = consumer.poll(timeout_ms=300)
        assert not any(extra.values()), f"unexpected extra records: {extra}"
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
        return sorted(records, key=lambda r: (r[0], r[1])), ends, starts
    finally:
        consumer.close(autocommit=False)


def check_offsets_for_times(bootstrap, topic, expected):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    try:
        for p in range(PARTITIONS):
            records = [r for r in expected if r[0] == p]
            target = records[len(records) // 3]
            tp = TopicPartition(topic, p)
            found = consumer.offsets_for_times({tp: target[6]})[tp]
            assert found is not None and (found.offset, found.timestamp) == (target[1], target[6]), found
            assert consumer.offsets_for_times({tp: records[-1][6] + 1})[tp] is None
    finally:
        consumer.close(autocommit=False)


def check_read_back(bootstrap, topic, expected):
    records, ends, starts = consume_all(bootstrap, topic, len(expected))
    assert records == expected
    for p in range(PARTITIONS):
        tp = TopicPartition(topic, p)
        assert (starts[tp], ends[tp]) == (0, sum(1 for r in expected if r[0] == p))
    check_offsets_for_times(bootstrap, topic, expected)


def test_kafka_python_roundtrip_survives_restart(broker):
    topic = unique_topic("kafka-python")
    create_topic(broker.bootstrap, topic)
    expected = produce_all(broker.bootstrap, topic)
    check_read_back(broker.bootstrap, topic, expected)
    broker.restart()
    check_read_back(broker.bootstrap, topic, expected)
