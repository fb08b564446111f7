"""kill -9 in the middle of an acks=all produce stream loses no acknowledged record.

Every record whose delivery report said "ok" must be readable after the restart at exactly
the partition and offset the broker acknowledged, and each partition's offsets stay dense.
Records that were not acknowledged may or may not be there (the producer may also retry
some into duplicates); that is allowed.
"""

import time

import pytest
from confluent_kafka import Producer, TopicPartition

from e2e_util import assert_dense_offsets, by_partition, confluent_base_config, confluent_consumer, create_topic, read_all, unique_topic

PARTITIONS = 4
RECORD_COUNT = 4000
# The broker is killed once this many records are acknowledged: by count, not by time.
KILL_AFTER_ACKS = RECORD_COUNT // 2
# Records produced but not yet reported; keeps the stream going around the kill point.
IN_FLIGHT_MAX = 300
PRODUCE_DEADLINE_S = 60
FLUSH_DEADLINE_S = 60


@pytest.mark.parametrize("stop", ["kill9", "sigterm"])
def test_stop_mid_stream_loses_no_acknowledged_record(broker, stop):
    """kill -9 (no chance to flush) or SIGTERM (a clean shutdown with requests in flight)."""
    stop_broker = broker.kill9 if stop == "kill9" else broker.stop
    topic = unique_topic("durable")
    create_topic(broker.bootstrap, topic, PARTITIONS)

    config = confluent_base_config(broker.bootstrap)
    config.update(
        {
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 2,
            "batch.num.messages": 50,
            "message.timeout.ms": 30000,
            "retry.backoff.ms": 100,
        }
    )
    producer = Producer(config)
    acked = {}  # (partition, offset) -> (key, value)
    failed = []
    reported = [0]

    def on_delivery(error, message):
        reported[0] += 1
        if error is None:
            where = (message.partition(), message.offset())
            assert where not in acked, f"offset acknowledged twice: {where}"
            acked[where] = (message.key(), message.value())
        else:
            failed.append(error)

    killed_at_acks = None
    deadline = time.monotonic() + PRODUCE_DEADLINE_S
    for seq in range(RECORD_COUNT):
        # Before the kill, keep at most IN_FLIGHT_MAX unreported so that acks arrive while we produce.
        while killed_at_acks is None and seq - reported[0] >= IN_FLIGHT_MAX:
            producer.poll(0.05)
            assert time.monotonic() < deadline, f"only {reported[0]} of {seq} records reported before the deadline"
        if killed_at_acks is None and len(acked) >= KILL_AFTER_ACKS:
            stop_broker()
            killed_at_acks = len(acked)
        value = f"seq={seq:06d};payload={'p' * (seq % 40)}".encode()
        while True:
            try:
                producer.produce(topic, key=f"key-{seq % 97}".encode(), value=value, partition=seq % PARTITIONS,
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
                assert time.monotonic() < deadline, "producer queue stayed full"
        producer.poll(0)
    if killed_at_acks is None:
        # Every record fitted before enough acks came back: drain until the kill point.
        while len(acked) < KILL_AFTER_ACKS and time.monotonic() < deadline:
            producer.poll(0.05)
        assert len(acked) >= KILL_AFTER_ACKS, f"only {len(acked)} acks before the deadline"
        stop_broker()
        killed_at_acks = len(acked)
    assert killed_at_acks < RECORD_COUNT, "the kill came after every record was acknowledged"

    broker.start()
    remaining = producer.flush(FLUSH_DEADLINE_S)
    assert remaining == 0, f"{remaining} records still unreported {FLUSH_DEADLINE_S}s after the restart"
    assert reported[0] == RECORD_COUNT
    assert len(acked) >= killed_at_acks

    records = read_all(broker.bootstrap, topic, PARTITIONS, timeout_s=60, expect_count=len(acked))
    assert_dense_offsets(records)
    stored = {(r[0], r[1]): (r[2], r[3]) for r in records}
    missing = sorted(where for where in acked if where not in stored)
    assert not missing, f"{len(missing)} acknowledged records are missing, first: {missing[:10]}"
    wrong = sorted(where for where, kv in acked.items() if stored[where] != kv)
    assert not wrong, f"{len(wrong)} offsets hold other data than acknowledged, first: " + str(
        [(w, acked[w], stored[w]) for w in wrong[:5]]
    )

    # High watermarks agree with what a reader sees.
    consumer = confluent_consumer(broker.bootstrap)
    try:
        grouped = by_partition(records)
        for p in range(PARTITIONS):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
            assert (low, high) == (0, len(grouped.get(p, []))), f"partition {p} watermarks"
    finally:
        consumer.close()
    print(f"killed at {killed_at_acks} acks; {len(acked)} acked in all, {len(failed)} failed, {len(records)} stored")


def test_repeated_kill9_and_restart_while_producing(broker):
    """Three crash-restart cycles in one producer session, each triggered by an ack count; the
    producer keeps going through them. Recovery runs three times over torn tails."""
    topic = unique_topic("durable-cycles")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    record_count = 3200
    kill_points = [800, 1600, 2400]

    config = confluent_base_config(broker.bootstrap)
    config.update({"acks": "all", "enable.idempotence": False, "linger.ms": 2, "batch.num.messages": 40,
                   "message.timeout.ms": 30000, "retry.backoff.ms": 100})
    producer = Producer(config)
    acked = {}
    reported = [0]

    def on_delivery(error, message):
        reported[0] += 1
        if error is None:
            where = (message.partition(), message.offset())
            assert where not in acked, f"offset acknowledged twice: {where}"
            acked[where] = (message.key(), message.value())

    pending_kills = list(kill_points)
    deadline = time.monotonic() + PRODUCE_DEADLINE_S
    for seq in range(record_count):
        while seq - reported[0] >= IN_FLIGHT_MAX:
            producer.poll(0.05)
            assert time.monotonic() < deadline, f"only {reported[0]} of {seq} records reported before the deadline"
        if pending_kills and len(acked) >= pending_kills[0]:
            pending_kills.pop(0)
            broker.kill9()
            broker.start()
        value = f"cycle-seq={seq:06d}".encode()
        producer.produce(topic, key=f"c{seq % 31}".encode(), value=value, partition=seq % PARTITIONS,
                         on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(FLUSH_DEADLINE_S) == 0
    assert not pending_kills, f"kill points never reached: {pending_kills} (acked {len(acked)})"

    records = read_all(broker.bootstrap, topic, PARTITIONS, timeout_s=60, expect_count=len(acked))
    assert_dense_offsets(records)
    stored = {(r[0], r[1]): (r[2], r[3]) for r in records}
    missing = sorted(where for where in acked if where not in stored)
    assert not missing, f"{len(missing)} acknowledged records are missing, first: {missing[:10]}"
    wrong = sorted(where for where, kv in acked.items() if stored[where] != kv)
    assert not wrong, f"{len(wrong)} offsets hold other data than acknowledged, first: {wrong[:5]}"
    assert len(acked) >= kill_points[-1]
