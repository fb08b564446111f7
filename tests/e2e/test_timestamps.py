"""Record timestamps of CreateTime topics outside `message.timestamp.before.max.ms` and
`message.timestamp.after.max.ms` (KIP-937), or Kafka 3.x's `message.timestamp.difference.max.ms`,
are refused with INVALID_TIMESTAMP as Kafka's LogValidator refuses them, uncompressed and
compressed, from confluent-kafka and kafka-python; LogAppendTime topics are not bounded."""

import time

import kafka
import kafka.errors
import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from e2e_util import confluent_base_config, read_all, unique_topic

TIMEOUT_S = 15
HOUR_MS = 3_600_000
MINUTE_MS = 60_000


def create(broker, topic, configs):
    admin = AdminClient(confluent_base_config(broker.bootstrap))
    admin.create_topics([NewTopic(topic, 1, 1, config=configs)])[topic].result(timeout=TIMEOUT_S)
    return admin


def produce(broker, topic, timestamps_ms, compression="none"):
    """Produces one record per timestamp (one batch each); returns each delivery's error code,
    None when stored."""
    config = confluent_base_config(broker.bootstrap)
    config.update({"acks": "all", "enable.idempotence": False, "message.timeout.ms": 10000,
                   "compression.type": compression, "linger.ms": 0, "retries": 0})
    producer = Producer(config)
    codes = {}
    for i, timestamp_ms in enumerate(timestamps_ms):
        producer.produce(topic, value=f"v{i}".encode(), partition=0, timestamp=timestamp_ms,
                         on_delivery=lambda e, m, i=i: codes.__setitem__(i, e.code() if e else None))
        producer.flush(TIMEOUT_S)
    assert len(codes) == len(timestamps_ms), codes
    return [codes[i] for i in range(len(timestamps_ms))]


def now_ms():
    return int(time.time() * 1000)


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_records_outside_the_window_get_invalid_timestamp(broker, compression):
    topic = unique_topic("window")
    create(broker, topic, {"message.timestamp.before.max.ms": str(HOUR_MS),
                           "message.timestamp.after.max.ms": str(MINUTE_MS)})
    now = now_ms()
    timestamps = [now, now - 2 * HOUR_MS, now + 10 * MINUTE_MS, now - 30 * MINUTE_MS, 1]
    codes = produce(broker, topic, timestamps, compression)
    invalid = KafkaError.INVALID_TIMESTAMP
    assert codes == [None, invalid, invalid, None, invalid]
    stored = read_all(broker.bootstrap, topic, 1, expect_count=2)
    assert [(r[3], r[6]) for r in stored] == [(b"v0", timestamps[0]), (b"v3", timestamps[3])]


def test_kafka_python_gets_invalid_timestamp(broker):
    topic = unique_topic("window-kp")
    create(broker, topic, {"message.timestamp.before.max.ms": str(MINUTE_MS)})
    producer = kafka.KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", retries=0)
    try:
        with pytest.raises(kafka.errors.InvalidTimestampError):
            producer.send(topic, b"old", partition=0, timestamp_ms=now_ms() - HOUR_MS).get(TIMEOUT_S)
        # The bound is in the past only: a record far ahead is accepted.
        stored = producer.send(topic, b"ahead", partition=0, timestamp_ms=now_ms() + HOUR_MS).get(TIMEOUT_S)
        assert stored.offset == 0
    finally:
        producer.close(TIMEOUT_S)


def test_kafka_3_timestamp_difference_bounds_both_ways(broker):
    """A 3.x client's message.timestamp.difference.max.ms applies as both successors."""
    topic = unique_topic("difference")
    admin = create(broker, topic, {"message.timestamp.difference.max.ms": str(MINUTE_MS)})
    now = now_ms()
    codes = produce(broker, topic, [now - HOUR_MS, now + HOUR_MS, now])
    assert codes == [KafkaError.INVALID_TIMESTAMP, KafkaError.INVALID_TIMESTAMP, None]
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)
    assert entries["message.timestamp.before.max.ms"].value == str(MINUTE_MS)
    assert entries["message.timestamp.after.max.ms"].value == str(MINUTE_MS)


def test_log_append_time_topics_take_any_producer_timestamp(broker):
    topic = unique_topic("append-time")
    create(broker, topic, {"message.timestamp.type": "LogAppendTime",
                           "message.timestamp.before.max.ms": "1000"})
    assert produce(broker, topic, [now_ms() - HOUR_MS]) == [None]


def test_list_offsets_max_timestamp_finds_the_first_record_with_the_largest_timestamp(broker):
    """ListOffsets v7 MAX_TIMESTAMP (KIP-734), as confluent-kafka's admin client asks for it:
    -1/-1 on an empty partition, then the first of the records sharing the largest timestamp,
    in a compressed batch too."""
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    topic = unique_topic("max-ts")
    admin = create(broker, topic, {})

    def max_timestamp():
        partition = TopicPartition(topic, 0)
        answer = admin.list_offsets({partition: OffsetSpec.max_timestamp()})[partition]
        info = answer.result(timeout=TIMEOUT_S)
        return info.offset, info.timestamp

    assert max_timestamp() == (-1, -1)
    now = now_ms()
    assert produce(broker, topic, [now - 5000, now - 1000, now - 3000]) == [None] * 3
    assert max_timestamp() == (1, now - 1000)
    # A later record with the same largest timestamp does not move the answer; a larger one,
    # inside a gzip batch, does.
    assert produce(broker, topic, [now - 1000, now - 4000]) == [None] * 2
    assert max_timestamp() == (1, now - 1000)
    assert produce(broker, topic, [now - 200, now - 100, now - 300], "gzip") == [None] * 3
    assert max_timestamp() == (6, now - 100)
