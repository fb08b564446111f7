"""Group coordinator failover (issue 14): `__consumer_offsets` is replicated (RF 3) and group
coordination follows its partition's leadership, so committed offsets survive the coordinator's
death. Two groups, one of confluent-kafka consumers and one of kafka-python consumers, whose ids
map to the same `__consumer_offsets` partition (so one broker coordinates both), consume and
commit; the coordinator FindCoordinator names is killed with kill -9; each group finds the new
coordinator, rejoins and goes on from its committed offset.

Guarantee checked, per group: no record below the last successful commit is consumed again,
nothing is skipped (a consumer goes back, if at all, exactly to the committed offset), every
record is consumed, and OffsetFetch at the new coordinator answers the last successful commit."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException
from confluent_kafka import TopicPartition as ConfluentPartition
from kafka import KafkaConsumer
from kafka import TopicPartition as PythonPartition
from kafka.errors import KafkaError as PythonKafkaError
from kafka.structs import OffsetAndMetadata

import cluster_wire
from clients import confluent_config, produce, unique_topic
from harness import wait_until
from replication_check import create_topic, wait_isr_whole

OFFSETS_TOPIC = "__consumer_offsets"
RECORDS = 300
# Consumed and committed before the kill; the rest after it.
RECORDS_BEFORE_KILL = 120
COMMIT_EVERY = 20
# The broker's smallest session timeout; a heartbeat a second.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000
# From the kill to a group consuming again: fencing (3 s), a new leader of the offsets partition
# and its replay, the client's coordinator lookup, rejoin (a session timeout at most) and fetch.
RESUME_TIMEOUT_S = 40.0
# Bound of consuming the records before the kill (the group's first join included).
CONSUME_TIMEOUT_S = 30.0
ISR_TIMEOUT_S = 30.0

pytestmark = pytest.mark.timeout(150)


def _groups_sharing_an_offsets_partition():
    """Two group ids whose `__consumer_offsets` partition is the same: (confluent's, kafka-python's)."""
    first = f"failover-confluent-{uuid.uuid4().hex[:8]}"
    target = cluster_wire.offsets_partition(first)
    second = next(name for name in (f"failover-python-{uuid.uuid4().hex[:8]}" for _ in range(10000))
                  if cluster_wire.offsets_partition(name) == target)
    return first, second, target


class History:
    """What a consumer consumed and committed, in order, and the check of the guarantee."""

    def __init__(self, name):
        self.name = name
        self.consumed = []  # offsets, in delivery order
        self.committed = None  # the last successful commit
        self.problems = []
        self.rewinds = []

    def consume(self, offset):
        ahead = self.consumed[-1] + 1 if self.consumed else 0
        if self.committed is not None and offset < self.committed:
            self.problems.append(f"offset {offset} consumed again below the commit {self.committed}")
        elif offset > ahead:
            self.problems.append(f"offset {offset} consumed after {ahead - 1}: records skipped")
        elif offset < ahead:
            self.rewinds.append((ahead, offset))
            if offset != (self.committed or 0):
                self.problems.append(f"went back from {ahead} to {offset}, not to the commit "
                                     f"{self.committed}")
        self.consumed.append(offset)

    def next_offset(self):
        return self.consumed[-1] + 1

    def check(self):
        missing = sorted(set(range(RECORDS)) - set(self.consumed))
        if missing:
            self.problems.append(f"{len(missing)} records never consumed, first {missing[:5]}")
        assert not self.problems, f"{self.name}: {self.problems[:5]}"


class ConfluentMember:
    def __init__(self, bootstrap, group, topic):
        self.topic = topic
        self.history = History(f"confluent-kafka group {group}")
        self.consumer = Consumer(confluent_config(bootstrap, **{
            "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS}))
        self.consumer.subscribe([topic])

    def poll_one(self):
        message = self.consumer.poll(0.2)
        if message is None or message.error() is not None:
            return False
        self.history.consume(message.offset())
        return True

    def commit(self):
        offset = self.history.next_offset()
        try:
            self.consumer.commit(offsets=[ConfluentPartition(self.topic, 0, offset)],
                                 asynchronous=False)
        except KafkaException as error:
            print(f"{self.history.name}: commit of {offset} failed: {error}")
            return False
        self.history.committed = offset
        return True

    def close(self):
        self.consumer.close()


class PythonMember:
    def __init__(self, bootstrap, group, topic):
        self.partition = PythonPartition(topic, 0)
        self.history = History(f"kafka-python group {group}")
        self.pending = []
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap.split(","), group_id=group,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            request_timeout_ms=15000, max_poll_records=1, fetch_max_wait_ms=100)

    def poll_one(self):
        if not self.pending:
            for records in self.consumer.poll(timeout_ms=200).values():
                self.pending.extend(records)
        if not self.pending:
            return False
        self.history.consume(self.pending.pop(0).offset)
        return True

    def commit(self):
        offset = self.history.next_offset()
        try:
            self.consumer.commit({self.partition: OffsetAndMetadata(offset, "", -1)},
                                 timeout_ms=10000)
        except PythonKafkaError as error:
            print(f"{self.history.name}: commit of {offset} failed: {error!r}")
            return False
        self.history.committed = offset
        return True

    def close(self):
        self.consumer.close(autocommit=False)


def _consume(member, until, timeout_s):
    """Consume until the record before `until`, committing every COMMIT_EVERY records and at the
    end (a failed commit is retried at the next record, or at the end until it succeeds)."""
    deadline = time.monotonic() + timeout_s
    uncommitted = 0
    while not (member.history.consumed and member.history.next_offset() >= until
               and member.history.committed == member.history.next_offset()):
        assert time.monotonic() < deadline, (
            f"{member.history.name}: at {member.history.consumed[-1:]} of {until} after "
            f"{timeout_s}s, committed {member.history.committed}")
        if member.history.consumed and member.history.next_offset() >= until:
            member.commit() or time.sleep(0.2)  # pace of the retries, not synchronisation
            continue
        if member.poll_one():
            uncommitted += 1
            if uncommitted >= COMMIT_EVERY and member.commit():
                uncommitted = 0


def _coordinator(cluster, group):
    """The coordinator every running broker names for `group`."""
    def named():
        answers = {cluster_wire.find_coordinator(node, group)[:2] for node in cluster.running()}
        if len(answers) == 1:
            error, node_id = answers.pop()
            return error == cluster_wire.ERROR_NONE and node_id in (
                n.id for n in cluster.running()) and node_id
        return None
    return wait_until(f"the running brokers naming one live coordinator of {group}", named,
                      RESUME_TIMEOUT_S)


def _committed(cluster, node_id, group, topic):
    error, offsets = cluster_wire.offset_fetch(cluster.node(node_id), group, topic, [0])
    assert error == cluster_wire.ERROR_NONE, f"OffsetFetch of {group} at {node_id}: {error}"
    offset, partition_error = offsets[0]
    assert partition_error == cluster_wire.ERROR_NONE
    return offset


def test_groups_resume_from_their_commits_after_the_coordinator_is_killed(cluster):
    topic = unique_topic("group-failover")
    create_topic(cluster, topic)
    produce(cluster.bootstrap(), topic, [(0, None, str(i).encode()) for i in range(RECORDS)])
    confluent_group, python_group, offsets_partition = _groups_sharing_an_offsets_partition()
    members = [ConfluentMember(cluster.bootstrap(), confluent_group, topic),
               PythonMember(cluster.bootstrap(), python_group, topic)]
    groups = [confluent_group, python_group]
    try:
        for member in members:
            _consume(member, RECORDS_BEFORE_KILL, CONSUME_TIMEOUT_S)
        # The offsets partition has three replicas, all in sync, before its leader dies.
        wait_isr_whole(cluster, OFFSETS_TOPIC, ISR_TIMEOUT_S, partition=offsets_partition)
        coordinator = _coordinator(cluster, confluent_group)
        assert _coordinator(cluster, python_group) == coordinator
        for group in groups:
            assert _committed(cluster, coordinator, group, topic) == RECORDS_BEFORE_KILL

        cluster.node(coordinator).kill9()
        killed_at = time.monotonic()
        for member in members:
            _consume(member, RECORDS, RESUME_TIMEOUT_S)
        resumed_s = time.monotonic() - killed_at
        successor = _coordinator(cluster, confluent_group)
        assert successor != coordinator
        for member, group in zip(members, groups):
            member.history.check()
            assert _committed(cluster, successor, group, topic) == member.history.committed
        print(f"\ncoordinator {coordinator} killed; node {successor} coordinates; both groups "
              f"consumed to the end {resumed_s:.2f} s after the kill; went back (from, to): "
              f"{[member.history.rewinds for member in members]}")
    finally:
        for member in members:
            member.close()
