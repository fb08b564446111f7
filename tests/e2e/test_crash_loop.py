"""kill -9 loop under concurrent acks=all load: several idempotent producers write to small
segments (so the crashes land around segment rolls too) while the broker is killed and restarted
several times, each kill triggered by an acknowledgement count.

Afterwards every acknowledged record is at the offset it was acknowledged with, byte for byte;
every record is stored exactly once (idempotence holds across the crashes); offsets are dense;
and each producer's records are in its send order within a partition."""

import threading
import time

import pytest
from confluent_kafka import Producer

from e2e_util import (
    CLIENT_TIMEOUT_S,
    assert_dense_offsets,
    by_partition,
    confluent_base_config,
    create_topic,
    read_all,
    unique_topic,
)

PRODUCERS = 3
PARTITIONS = 2
RECORDS_PER_PRODUCER = 3000
CYCLES = 5
# A kill every this many acknowledgements (over all producers), so each lands mid-stream.
KILL_EVERY_ACKS = PRODUCERS * RECORDS_PER_PRODUCER // (CYCLES + 1)
VALUE_PADDING_BYTES = 200
DEADLINE_S = 100


class Driver:
    """One idempotent producer sending `RECORDS_PER_PRODUCER` records from its own thread."""

    def __init__(self, bootstrap, topic, index, counter):
        config = confluent_base_config(bootstrap)
        config.update({"enable.idempotence": True, "acks": "all", "linger.ms": 2,
                       "batch.num.messages": 50, "message.timeout.ms": 90000})
        self.producer = Producer(config)
        self.topic, self.index, self.counter = topic, index, counter
        self.acked = {}  # (partition, offset) -> value
        self.failed = []
        self.error = None
        self.thread = threading.Thread(target=self.run, name=f"producer-{index}", daemon=True)

    def on_delivery(self, error, message):
        if error is not None:
            self.failed.append(error)
            return
        where = (message.partition(), message.offset())
        assert where not in self.acked, f"offset acknowledged twice: {where}"
        self.acked[where] = message.value()
        self.counter.add()

    def run(self):
        try:
            deadline = time.monotonic() + DEADLINE_S
            for seq in range(RECORDS_PER_PRODUCER):
                value = f"p{self.index}-s{seq:06d}-".encode() + b"x" * VALUE_PADDING_BYTES
                while True:
                    try:
                        self.producer.produce(self.topic, value=value, partition=seq % PARTITIONS,
                                              on_delivery=self.on_delivery)
                        break
                    except BufferError:
                        self.producer.poll(0.05)
                        assert time.monotonic() < deadline, "producer queue stayed full"
                self.producer.poll(0)
            assert self.producer.flush(DEADLINE_S) == 0, "records unreported at the deadline"
        except BaseException as error:  # reported by the test thread
            self.error = error


class Counter:
    def __init__(self):
        self.lock = threading.Lock()
        self.value = 0

    def add(self):
        with self.lock:
            self.value += 1

    def get(self):
        with self.lock:
            return self.value


@pytest.mark.timeout(240)
@pytest.mark.broker_args("--internal-segment-bytes", 65536)
def test_kill9_loop_under_concurrent_idempotent_load(broker):
    topic = unique_topic("crash-loop")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    counter = Counter()
    drivers = [Driver(broker.bootstrap, topic, i, counter) for i in range(PRODUCERS)]
    for driver in drivers:
        driver.thread.start()
    deadline = time.monotonic() + DEADLINE_S
    for cycle in range(1, CYCLES + 1):
        while counter.get() < cycle * KILL_EVERY_ACKS:
            assert time.monotonic() < deadline, f"cycle {cycle}: only {counter.get()} acks"
            assert any(d.thread.is_alive() for d in drivers), "producers finished before the kills"
            time.sleep(0.01)  # polling an ack counter fed by other threads
        broker.kill9()
        broker.start()
    for driver in drivers:
        driver.thread.join(timeout=DEADLINE_S)
        assert not driver.thread.is_alive(), f"producer {driver.index} did not finish"
        assert driver.error is None, f"producer {driver.index}: {driver.error!r}"
        assert not driver.failed, f"producer {driver.index}: {driver.failed[:3]}"
        assert len(driver.acked) == RECORDS_PER_PRODUCER

    total = PRODUCERS * RECORDS_PER_PRODUCER
    records = read_all(broker.bootstrap, topic, PARTITIONS, timeout_s=CLIENT_TIMEOUT_S * 2, expect_count=total)
    assert_dense_offsets(records)
    stored = {(r[0], r[1]): r[3] for r in records}
    for driver in drivers:
        wrong = [where for where, value in driver.acked.items() if stored.get(where) != value]
        assert not wrong, f"producer {driver.index}: {len(wrong)} acknowledged records missing or changed"
    values = [r[3] for r in records]
    assert len(values) == len(set(values)) == total, f"{len(values)} stored, {len(set(values))} distinct"
    for partition, items in by_partition(records).items():
        for index in range(PRODUCERS):
            prefix = f"p{index}-".encode()
            sequence = [r[3][len(prefix):len(prefix) + 7] for r in items if r[3].startswith(prefix)]
            assert sequence == sorted(sequence), f"producer {index} is out of order in partition {partition}"
