"""Records of one partition keep the order in which one producer sent them, also when many
produce requests are in flight on one connection (Kafka appends the requests of a connection
in order). The producer never retries here, so any reordering is the broker's."""

from confluent_kafka import Producer

from e2e_util import confluent_base_config, create_topic, read_all, unique_topic

PARTITIONS = 4
RECORD_COUNT = 6000


def test_pipelined_produce_keeps_per_partition_order(broker):
    topic = unique_topic("order")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    config = confluent_base_config(broker.bootstrap)
    config.update(
        {
            "acks": "all",
            "enable.idempotence": False,
            "retries": 0,  # a reordering cannot come from a client retry
            "max.in.flight": 1000,
            "linger.ms": 1,
            "batch.size": 4096,  # many small produce requests in flight at once
            "message.timeout.ms": 30000,
        }
    )
    producer = Producer(config)
    reports = []
    for seq in range(RECORD_COUNT):
        while True:
            try:
                producer.produce(topic, key=str(seq).encode(), value=b"o" * (50 + seq % 150), partition=seq % PARTITIONS,
                                 on_delivery=lambda error, message: reports.append((error, message)))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    assert producer.flush(60) == 0
    errors = [error for error, _ in reports if error is not None]
    assert not errors, f"{len(errors)} delivery errors, first: {errors[:3]}"

    records = read_all(broker.bootstrap, topic, PARTITIONS, timeout_s=60, expect_count=RECORD_COUNT)
    assert len(records) == RECORD_COUNT
    for p in range(PARTITIONS):
        sequence = [int(r[2]) for r in records if r[0] == p]
        inversions = [(i, sequence[i], sequence[i + 1]) for i in range(len(sequence) - 1) if sequence[i + 1] < sequence[i]]
        assert not inversions, (
            f"partition {p}: {len(inversions)} places where a later record precedes an earlier one "
            f"(offset, seq, next seq): {inversions[:5]}"
        )
    # The acknowledged offsets are where the records are.
    stored = {(r[0], r[1]): r[2] for r in records}
    assert all(stored[(m.partition(), m.offset())] == m.key() for _, m in reports)
