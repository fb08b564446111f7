"""Idempotent producers: every record stored exactly once, in order, also across a kill -9.

With enable.idempotence the client numbers its batches; the broker keeps each producer's last
batches per partition (rebuilt from the log after a restart) and answers a retried batch with
its original offset instead of appending it again.
"""

import time

from confluent_kafka import Producer
from kafka import KafkaProducer

import kafka_wire
from e2e_util import assert_dense_offsets, by_partition, confluent_base_config, create_topic, read_all, unique_topic

PARTITIONS = 4
RECORD_COUNT = 10_000
KILL_AFTER_ACKS = RECORD_COUNT // 2
DEADLINE_S = 90


def assert_exactly_once_in_order(records, record_count, partitions):
    assert_dense_offsets(records)
    grouped = by_partition(records)
    seen = []
    for p in range(partitions):
        sequence = [int(value.decode().split("=")[1]) for _, _, _, value, *_ in grouped.get(p, [])]
        assert sequence == sorted(sequence), f"partition {p} is out of order"
        assert len(sequence) == len(set(sequence)), f"partition {p} holds duplicates"
        assert all(seq % partitions == p for seq in sequence), f"partition {p} holds another partition's records"
        seen.extend(sequence)
    assert sorted(seen) == list(range(record_count)), f"{len(seen)} records stored, {len(set(seen))} distinct"


def test_confluent_idempotent_producer_survives_kill9(broker):
    topic = unique_topic("idempotent")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    config = confluent_base_config(broker.bootstrap)
    config.update({"enable.idempotence": True, "linger.ms": 2, "batch.num.messages": 100, "message.timeout.ms": 60000})
    producer = Producer(config)
    acked, failed = [0], []

    def on_delivery(error, message):
        if error is None:
            acked[0] += 1
        else:
            failed.append(error)

    killed = False
    deadline = time.monotonic() + DEADLINE_S
    for seq in range(RECORD_COUNT):
        if not killed and acked[0] >= KILL_AFTER_ACKS:
            broker.kill9()
            broker.start()
            killed = True
        while True:
            try:
                producer.produce(topic, value=f"seq={seq}".encode(), partition=seq % PARTITIONS, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
                assert time.monotonic() < deadline, "producer queue stayed full"
        # Keep acknowledgements flowing so the kill lands mid-stream.
        while not killed and seq - acked[0] > 2000:
            producer.poll(0.05)
            assert time.monotonic() < deadline
        producer.poll(0)
    assert killed, "the broker was killed mid-stream"
    assert producer.flush(60) == 0
    assert not failed, f"{len(failed)} delivery errors, first: {failed[:3]}"
    assert acked[0] == RECORD_COUNT

    records = read_all(broker.bootstrap, topic, PARTITIONS, timeout_s=60, expect_count=RECORD_COUNT)
    assert len(records) == RECORD_COUNT, f"{len(records)} stored for {RECORD_COUNT} produced"
    assert_exactly_once_in_order(records, RECORD_COUNT, PARTITIONS)


def assert_stored_once(broker, topic, count):
    records = read_all(broker.bootstrap, topic, PARTITIONS, timeout_s=60, expect_count=count)
    assert len(records) == count, f"{len(records)} stored for {count} produced"
    assert_exactly_once_in_order(records, count, PARTITIONS)


def kafka_python_produce(broker, topic, count, kill_at=None):
    """kafka-python's idempotent producer; with `kill_at`, the broker is killed (-9) and
    restarted after that many sends, while the sender thread still has batches in flight."""
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True, acks="all", linger_ms=2,
                             retries=100, retry_backoff_ms=100, request_timeout_ms=10000, reconnect_backoff_ms=50)
    futures = []
    for seq in range(count):
        futures.append(producer.send(topic, value=f"seq={seq}".encode(), partition=seq % PARTITIONS))
        if seq == kill_at:
            broker.kill9()
            broker.start()
    producer.flush(timeout=60)
    metadata = [f.get(timeout=30) for f in futures]
    producer.close(timeout=10)
    assert len({(m.partition, m.offset) for m in metadata}) == count


def kafkajs_produce(broker, topic, count, kill_at=None):
    """KafkaJS's idempotent producer (kafkajs/idempotent.js); with `kill_at`, the broker is
    killed (-9) and restarted once the script reports that many records sent."""
    import json
    import shutil
    import subprocess
    from pathlib import Path

    script_dir = Path(__file__).resolve().parent / "kafkajs"
    node = shutil.which("node") or "node"
    command = [node, str(script_dir / "idempotent.js"), broker.bootstrap, topic, str(PARTITIONS), str(count)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=script_dir)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line.strip())
            if kill_at is not None and line.startswith("progress") and int(line.split()[1]) >= kill_at:
                broker.kill9()
                broker.start()
                kill_at = None
        assert process.wait(timeout=90) == 0, f"idempotent.js failed: {process.stderr.read()}"
    finally:
        if process.poll() is None:
            process.kill()
    assert json.loads(lines[-1]) == {"sent": count}


def test_kafka_python_idempotent_producer(broker):
    topic = unique_topic("idempotent-kp")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    kafka_python_produce(broker, topic, 2000)
    assert_stored_once(broker, topic, 2000)


def test_kafkajs_idempotent_producer(broker):
    topic = unique_topic("idempotent-js")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    kafkajs_produce(broker, topic, 1000)
    assert_stored_once(broker, topic, 1000)


def test_kafka_python_idempotent_producer_survives_kill9(broker):
    topic = unique_topic("idempotent-kp-kill")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    kafka_python_produce(broker, topic, 4000, kill_at=2000)
    assert_stored_once(broker, topic, 4000)


def test_kafkajs_idempotent_producer_survives_kill9(broker):
    topic = unique_topic("idempotent-js-kill")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    kafkajs_produce(broker, topic, 3000, kill_at=1500)
    assert_stored_once(broker, topic, 3000)


def produce_raw(sock, correlation_id, topic, batch):
    sock.sendall(kafka_wire.produce_v3_request(correlation_id, topic, 0, batch, acks=-1))
    answered, results, _ = kafka_wire.parse_produce_v3_response(kafka_wire.read_response(sock))
    assert answered == correlation_id
    [(_, _, error_code, base_offset, _)] = results
    return error_code, base_offset


def test_a_resent_idempotent_batch_gets_its_first_offset_and_is_stored_once(broker):
    """The retry is forced: the same bytes (producer id, epoch and sequence) are sent again."""
    topic = unique_topic("idem-resend")
    create_topic(broker.bootstrap, topic, 1)
    with kafka_wire.connect(broker) as sock:
        producer_id, epoch = kafka_wire.init_producer_id(sock, 1)
        first = kafka_wire.record_batch([(b"k0", b"v0"), (b"k1", b"v1"), (b"k2", b"v2")],
                                        1_700_000_000_000, producer=(producer_id, epoch, 0))
        second = kafka_wire.record_batch([(b"k3", b"v3"), (b"k4", b"v4")],
                                         1_700_000_000_100, producer=(producer_id, epoch, 3))
        assert produce_raw(sock, 2, topic, first) == (0, 0)
        assert produce_raw(sock, 3, topic, second) == (0, 3)
        assert produce_raw(sock, 4, topic, first) == (0, 0)
        assert produce_raw(sock, 5, topic, second) == (0, 3)
    stored = [(offset, key, value) for _, offset, key, value, *_ in read_all(broker.bootstrap, topic, 1)]
    assert stored == [(i, f"k{i}".encode(), f"v{i}".encode()) for i in range(5)]
