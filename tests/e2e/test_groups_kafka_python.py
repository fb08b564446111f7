"""Consumer groups with kafka-python 3 (pure Python; ApiVersions-negotiated group protocol versions).

Two subscribed members share a 4-partition topic, consume every record exactly once between
them and commit; when one closes (LeaveGroup), the other is given all partitions by the next
poll-driven rebalance and resumes after the committed offsets. A manual commit of half the
records survives a broker restart: a new member of the group resumes exactly there.
"""

import queue
import threading
import time
from concurrent.futures import Future

from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from e2e_util import create_topic, produce_records, unique_topic, wait_until

PARTITIONS = 4
ALL_PARTITIONS = frozenset(range(PARTITIONS))
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000
JOIN_TIMEOUT_S = 30.0
CONSUME_TIMEOUT_S = 30.0
# No member thread outlives this, whatever happens in the test.
MEMBER_LIFETIME_S = 100.0
# Bound of each blocking kafka-python call (commit, committed, position, close).
KP_CALL_TIMEOUT_MS = 15000


def group_consumer(bootstrap, group, client_id):
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        # Also the rebalance timeout of JoinGroup: bounds how long a join can wait for others.
        max_poll_interval_ms=20000,
        request_timeout_ms=25000,
        fetch_max_wait_ms=100,
        retry_backoff_ms=100,
        reconnect_backoff_ms=50,
        reconnect_backoff_max_ms=1000,
    )


def record_view(record):
    return (record.partition, record.offset, record.key, record.value)


class PollingMember(threading.Thread):
    """A subscribed KafkaConsumer polled in its own thread (kafka-python consumers are not
    thread-safe: every call on it happens here; the test sends commands through a queue)."""

    def __init__(self, bootstrap, group, topic, name):
        super().__init__(name=name, daemon=True)
        self.consumer = group_consumer(bootstrap, group, name)
        self.consumer.subscribe([topic])
        self.topic = topic
        self.lock = threading.Lock()
        self.records = []
        self.assignment = frozenset()
        self.assignment_history = []
        self.error = None
        self.closed = threading.Event()
        self.commands = queue.Queue()

    def run(self):
        deadline = time.monotonic() + MEMBER_LIFETIME_S
        try:
            while time.monotonic() < deadline:
                batches = self.consumer.poll(timeout_ms=100)
                assignment = frozenset(tp.partition for tp in self.consumer.assignment())
                with self.lock:
                    for records in batches.values():
                        self.records.extend(record_view(r) for r in records)
                    if assignment != self.assignment:
                        self.assignment = assignment
                        self.assignment_history.append(sorted(assignment))
                if self._run_commands():
                    return
        except Exception as error:  # reported to the test by check()
            self.error = error
        finally:
            try:
                self.consumer.close(autocommit=False, timeout_ms=KP_CALL_TIMEOUT_MS)
            finally:
                self.closed.set()

    def _run_commands(self):
        """Runs queued commands; True once asked to stop."""
        while True:
            try:
                command, future = self.commands.get_nowait()
            except queue.Empty:
                return False
            if command is None:
                future.set_result(None)
                return True
            try:
                future.set_result(command(self.consumer))
            except Exception as error:
                future.set_exception(error)

    def call(self, command, timeout_s=CONSUME_TIMEOUT_S):
        """Run command(consumer) on the member's thread and return its result."""
        self.check()
        future = Future()
        self.commands.put((command, future))
        return future.result(timeout=timeout_s)

    def close(self, timeout_s=CONSUME_TIMEOUT_S):
        """Stop polling and close the consumer (kafka-python sends LeaveGroup)."""
        if self.closed.is_set():
            return
        future = Future()
        self.commands.put((None, future))
        assert self.closed.wait(timeout_s), f"{self.name} did not close within {timeout_s}s"
        self.check()

    def check(self):
        if self.error is not None:
            raise AssertionError(f"{self.name} failed: {self.error!r}") from self.error

    def snapshot(self):
        with self.lock:
            return self.assignment, list(self.records)


def describe_members(members):
    parts = []
    for member in members:
        assignment, records = member.snapshot()
        parts.append(f"{member.name}: assignment {sorted(assignment)} (history {member.assignment_history}), "
                     f"{len(records)} records, error {member.error!r}")
    return "; ".join(parts)


def test_kafka_python_members_share_partitions_and_take_over(broker):
    topic = unique_topic("kp-group")
    group = unique_topic("kp-g")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    a = PollingMember(broker.bootstrap, group, topic, "kp-member-a")
    b = PollingMember(broker.bootstrap, group, topic, "kp-member-b")
    members = [a, b]
    try:
        for member in members:
            member.start()

        def shared():
            for member in members:
                member.check()
            sa, sb = a.snapshot()[0], b.snapshot()[0]
            return sa and sb and not (sa & sb) and (sa | sb) == ALL_PARTITIONS

        wait_until(shared, JOIN_TIMEOUT_S, lambda: describe_members(members))
        assignment_a, assignment_b = a.snapshot()[0], b.snapshot()[0]

        expected = produce_records(broker.bootstrap, topic, 200, PARTITIONS, "kp-first")
        wait_until(lambda: sum(len(m.snapshot()[1]) for m in members) >= len(expected), CONSUME_TIMEOUT_S,
                   lambda: describe_members(members))
        records_a, records_b = a.snapshot()[1], b.snapshot()[1]
        # Exactly once between them: every record, none twice; each from its own partitions.
        assert sorted(records_a + records_b) == expected, describe_members(members)
        assert {r[0] for r in records_a} <= assignment_a and {r[0] for r in records_b} <= assignment_b
        # The assignment did not move while consuming.
        assert (a.snapshot()[0], b.snapshot()[0]) == (assignment_a, assignment_b), describe_members(members)

        # Synchronous commits of each member's positions (OffsetCommit with the generation).
        ends = {p: sum(1 for r in expected if r[0] == p) for p in range(PARTITIONS)}
        for member in members:
            member.call(lambda consumer: consumer.commit(timeout_ms=KP_CALL_TIMEOUT_MS))
        committed = a.call(lambda c: {p: c.committed(TopicPartition(topic, p), timeout_ms=KP_CALL_TIMEOUT_MS) for p in range(PARTITIONS)})
        assert committed == ends, f"committed offsets {committed}, expected the end offsets {ends}"

        # a leaves; b must be given every partition by its next rebalance, well within the session
        # timeout (a broker ignoring LeaveGroup would only notice a's absence after it).
        a.close()
        took = wait_until(lambda: b.check() or b.snapshot()[0] == ALL_PARTITIONS, SESSION_TIMEOUT_MS / 1000,
                          lambda: describe_members([b]))
        print(f"b took over all partitions {took:.2f}s after a left")

        # b resumes a's partitions after a's commit: only the new records, each once.
        before = len(b.snapshot()[1])
        more = produce_records(broker.bootstrap, topic, 80, PARTITIONS, "kp-second", first=200)
        wait_until(lambda: len(b.snapshot()[1]) - before >= len(more), CONSUME_TIMEOUT_S,
                   lambda: describe_members([b]))
        after = b.snapshot()[1][before:]
        assert sorted(after) == more, f"after the takeover b read {sorted(after)[:10]}..., expected {more[:10]}..."
        positions = b.call(lambda c: {p: c.position(TopicPartition(topic, p), timeout_ms=KP_CALL_TIMEOUT_MS) for p in range(PARTITIONS)})
        assert positions == {p: ends[p] + 20 for p in range(PARTITIONS)}, positions
    finally:
        for member in members:
            if member.is_alive():
                member.close()


def consume_until_positions(consumer, topic, ends, timeout_s=CONSUME_TIMEOUT_S):
    """Poll a subscribed consumer until it holds every partition and its positions reach `ends`."""
    records = []
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    def step():
        for batch in consumer.poll(timeout_ms=100).values():
            records.extend(record_view(r) for r in batch)

    def done():
        assigned = {tp.partition for tp in consumer.assignment()}
        return assigned == ALL_PARTITIONS and all(consumer.position(tp, timeout_ms=KP_CALL_TIMEOUT_MS) >= ends[tp.partition] for tp in tps)

    wait_until(done, timeout_s, lambda: f"assignment {consumer.assignment()}, {len(records)} records", step=step)
    return records


def test_kafka_python_resumes_after_committed_offset_across_restart(broker):
    topic = unique_topic("kp-resume")
    group = unique_topic("kp-resume-g")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    expected = produce_records(broker.bootstrap, topic, 80, PARTITIONS, "kp-resume")
    ends = {p: 20 for p in range(PARTITIONS)}
    half = {p: 10 for p in range(PARTITIONS)}

    consumer = group_consumer(broker.bootstrap, group, "kp-resume-1")
    try:
        consumer.subscribe([topic])
        records = consume_until_positions(consumer, topic, ends)
        assert sorted(records) == expected
        # Commit only the first half of every partition, with metadata.
        consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(half[p], f"half-{p}", -1) for p in range(PARTITIONS)},
                        timeout_ms=KP_CALL_TIMEOUT_MS)
        committed = {p: consumer.committed(TopicPartition(topic, p), timeout_ms=KP_CALL_TIMEOUT_MS) for p in range(PARTITIONS)}
        assert committed == half, committed
    finally:
        consumer.close(autocommit=False, timeout_ms=KP_CALL_TIMEOUT_MS)

    broker.restart()

    consumer = group_consumer(broker.bootstrap, group, "kp-resume-2")
    try:
        consumer.subscribe([topic])
        records = consume_until_positions(consumer, topic, ends)
        # Exactly the second half: nothing before the committed offset, no gap, no repeat.
        assert sorted(records) == [r for r in expected if r[1] >= half[r[0]]], sorted(records)[:20]
        committed = {p: consumer.committed(TopicPartition(topic, p), metadata=True, timeout_ms=KP_CALL_TIMEOUT_MS) for p in range(PARTITIONS)}
        assert {p: (c.offset, c.metadata) for p, c in committed.items()} == {
            p: (half[p], f"half-{p}") for p in range(PARTITIONS)
        }, committed
    finally:
        consumer.close(autocommit=False, timeout_ms=KP_CALL_TIMEOUT_MS)
