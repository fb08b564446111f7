"""Consumer groups with confluent_kafka (librdkafka 2.1x): subscribe() members of one group share a
topic; a member killed with SIGKILL (no LeaveGroup) is evicted after its session timeout and the
survivor takes its partitions; cooperative-sticky incremental rebalances; independent groups;
committed offsets survive kill -9; groups coordinated by both shards.

Members in this process are polled from the test's thread (librdkafka heartbeats in its own
threads; rebalance callbacks and assignments happen in poll()). A member that must die without
a goodbye runs in a child process (MEMBER_SCRIPT) that reports its assignment as JSON lines.
"""

import json
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from conftest import _live_processes
from e2e_util import (
    CLIENT_TIMEOUT_S,
    confluent_base_config,
    create_topic,
    kafka_group_partition,
    produce_records,
    unique_topic,
    wait_until,
)

PARTITIONS = 4
ALL_PARTITIONS = frozenset(range(PARTITIONS))
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000
JOIN_TIMEOUT_S = 30.0
CONSUME_TIMEOUT_S = 30.0
CHILD_LIFETIME_S = 90.0


def group_config(bootstrap, group, client_id, **extra):
    config = confluent_base_config(bootstrap)
    config.update(
        {
            "group.id": group,
            "client.id": client_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
            # Also the JoinGroup rebalance timeout: bounds how long a join waits for other members.
            "max.poll.interval.ms": 20000,
            "fetch.wait.max.ms": 100,
            "topic.metadata.refresh.interval.ms": 5000,
        }
    )
    config.update(extra)
    return config


class Member:
    """A subscribed confluent_kafka Consumer in this process, with its rebalance events."""

    def __init__(self, bootstrap, group, topic, name, **extra):
        self.name = name
        self.topic = topic
        self.consumer = Consumer(group_config(bootstrap, group, name, **extra))
        self.records = []
        self.events = []  # ("assign" | "revoke" | "lost", [partitions]) in callback order
        self.errors = []
        self.closed = False
        self.consumer.subscribe(
            [topic],
            on_assign=lambda c, ps: self.events.append(("assign", sorted(p.partition for p in ps))),
            on_revoke=lambda c, ps: self.events.append(("revoke", sorted(p.partition for p in ps))),
            on_lost=lambda c, ps: self.events.append(("lost", sorted(p.partition for p in ps))),
        )

    def poll(self, timeout_s=0.05):
        if self.closed:
            return
        message = self.consumer.poll(timeout_s)
        if message is None:
            return
        if message.error() is not None:
            if message.error().code() != KafkaError._PARTITION_EOF:
                self.errors.append(message.error())
            return
        self.records.append((message.partition(), message.offset(), message.key(), message.value()))

    def assignment(self):
        if self.closed:
            return frozenset()
        return frozenset(tp.partition for tp in self.consumer.assignment())

    def close(self):
        if not self.closed:
            self.closed = True
            self.consumer.close()

    def describe(self):
        return (f"{self.name}: assignment {sorted(self.assignment())}, events {self.events}, "
                f"{len(self.records)} records, errors {self.errors[:3]}")


def poll_all(members):
    def step():
        for member in members:
            member.poll(0.02)
    return step


def fatal_errors(members):
    return [e for m in members for e in m.errors if e.fatal()]


def assert_shared(members, timeout_s=JOIN_TIMEOUT_S, step=None, assignments=None):
    """Wait until every member holds partitions, none twice, all of them between them."""
    assignments = assignments or (lambda: [m.assignment() for m in members])

    def shared():
        current = assignments()
        union = frozenset().union(*current)
        return all(current) and sum(len(a) for a in current) == len(union) == PARTITIONS

    wait_until(shared, timeout_s, lambda: "; ".join(m.describe() for m in members), step=step or poll_all(members))
    return assignments()


# A group member in a child process, so that it can die by SIGKILL without LeaveGroup or commits.
# argv: config JSON, topic. Prints one JSON line per event: assign/revoke with partitions,
# "record" for each consumed record (committed synchronously before it is reported).
MEMBER_SCRIPT = r"""
import json, sys, time
from confluent_kafka import Consumer, KafkaError
config, topic, lifetime = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3])
if sys.argv[4:] == ["gated"]:
    # Imports done: the consumer is made (and joins) only when the test says go.
    print(json.dumps({"event": "ready"}), flush=True)
    sys.stdin.readline()
consumer = Consumer(config)
def say(**event):
    event["member_id"] = consumer.memberid()
    print(json.dumps(event), flush=True)
consumer.subscribe([topic],
    on_assign=lambda c, ps: say(event="assign", partitions=sorted(p.partition for p in ps)),
    on_revoke=lambda c, ps: say(event="revoke", partitions=sorted(p.partition for p in ps)))
say(event="started")
deadline = time.monotonic() + lifetime
while time.monotonic() < deadline:
    m = consumer.poll(0.05)
    if m is None:
        continue
    if m.error() is not None:
        if m.error().code() != KafkaError._PARTITION_EOF:
            say(event="error", error=str(m.error()))
        continue
    consumer.commit(message=m, asynchronous=False)
    say(event="record", partition=m.partition(), offset=m.offset(), key=m.key().decode(), value=m.value().decode())
consumer.close()
"""


class ChildMember:
    """A member in a child process; its events arrive through a reader thread."""

    def __init__(self, bootstrap, group, topic, name, gated=False, **extra):
        """gated: the child starts Python and imports its client, then waits for go()."""
        self.name = name
        config = group_config(bootstrap, group, name, **extra)
        # librdkafka's log goes to a file: a full pipe would block the child.
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MEMBER_SCRIPT, json.dumps(config), topic, str(CHILD_LIFETIME_S)]
            + (["gated"] if gated else []),
            stdin=subprocess.PIPE if gated else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            start_new_session=True,
        )
        _live_processes.add(self.proc)
        self.lines = queue.Queue()
        self.events = []
        self.partitions = frozenset()
        self.records = []
        self.member_id = None
        self.assigned_at = None
        self.started_at = time.monotonic()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def update(self):
        """Take in the events reported so far."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            event = json.loads(line)
            self.events.append(event)
            if event.get("member_id"):
                self.member_id = event["member_id"]
            if event["event"] == "assign":
                self.partitions = frozenset(event["partitions"])
                self.assigned_at = time.monotonic()
            elif event["event"] == "revoke":
                self.partitions = frozenset()
            elif event["event"] == "record":
                self.records.append((event["partition"], event["offset"], event["key"].encode(),
                                     event["value"].encode()))

    def assignment(self):
        self.update()
        return self.partitions

    def wait_ready(self):
        """A gated child has started and waits for go()."""
        wait_until(lambda: any(event["event"] == "ready" for event in self.events), JOIN_TIMEOUT_S,
                   self.describe, step=self.update)

    def go(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        _live_processes.discard(self.proc)
        self.update()

    def stop(self):
        if self.proc.poll() is None:
            self.kill9()
        _live_processes.discard(self.proc)

    def describe(self):
        self.update()
        stderr = ""
        if self.proc.poll() is not None:
            self.stderr.seek(0)
            stderr = f", exited {self.proc.returncode}: {self.stderr.read()[-2000:]}"
        return f"{self.name} (child): assignment {sorted(self.partitions)}, events {self.events[-8:]}{stderr}"


def test_confluent_members_share_and_survivor_takes_over_killed_member(broker):
    topic = unique_topic("cf-group")
    group = unique_topic("cf-g")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    child = ChildMember(broker.bootstrap, group, topic, "cf-doomed")
    survivor = Member(broker.bootstrap, group, topic, "cf-survivor")
    members = [child, survivor]
    try:
        assignments = assert_shared(members, step=lambda: (survivor.poll(0.05), child.update()))
        child_partitions = child.assignment()

        first = produce_records(broker.bootstrap, topic, 40, PARTITIONS, "cf-first")
        # The child commits each record before reporting it.
        wait_until(lambda: len(survivor.records) + len(child.records) >= len(first), CONSUME_TIMEOUT_S,
                   lambda: "; ".join(m.describe() for m in members), step=lambda: (survivor.poll(0.05), child.update()))
        assert sorted(survivor.records + child.records) == first
        assert {r[0] for r in child.records} <= child_partitions
        assert [m.assignment() for m in members] == assignments, "assignment moved while consuming"
        # The survivor commits too: after the rebalance it starts every partition at the committed offset.
        survivor.consumer.commit(asynchronous=False)

        # SIGKILL: no LeaveGroup, no heartbeats. The coordinator must expire the member after the
        # session timeout and rebalance; the survivor learns it from its next heartbeat.
        child.kill9()
        took = wait_until(lambda: survivor.assignment() == ALL_PARTITIONS,
                          SESSION_TIMEOUT_MS / 1000 + HEARTBEAT_INTERVAL_MS / 1000 + 5.0,
                          survivor.describe, step=lambda: survivor.poll(0.05))
        print(f"survivor took over all partitions {took:.2f}s after the kill")

        # The survivor resumes the dead member's partitions after its commits: new records only.
        before = len(survivor.records)
        more = produce_records(broker.bootstrap, topic, 40, PARTITIONS, "cf-second", first=40)
        wait_until(lambda: len(survivor.records) - before >= len(more), CONSUME_TIMEOUT_S, survivor.describe,
                   step=lambda: survivor.poll(0.05))
        assert sorted(survivor.records[before:]) == more, sorted(survivor.records[before:])[:10]
        assert not fatal_errors([survivor])
    finally:
        child.stop()
        survivor.close()


def test_confluent_cooperative_sticky_incremental_rebalance(broker):
    topic = unique_topic("cf-coop")
    group = unique_topic("cf-coop-g")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    coop = {"partition.assignment.strategy": "cooperative-sticky"}
    a = Member(broker.bootstrap, group, topic, "cf-coop-a", **coop)
    b = None
    try:
        wait_until(lambda: a.assignment() == ALL_PARTITIONS, JOIN_TIMEOUT_S, a.describe, step=poll_all([a]))
        a_events_before = len(a.events)

        b = Member(broker.bootstrap, group, topic, "cf-coop-b", **coop)
        members = [a, b]
        assignments = assert_shared(members)
        assert [len(x) for x in assignments] == [2, 2], assignments
        # Incremental: a gives up only the two partitions that move, and is never given its own again.
        a_new = [e for e in a.events[a_events_before:] if e[1]]
        assert a_new == [("revoke", sorted(ALL_PARTITIONS - assignments[0]))], a.events
        assert [e for e in b.events if e[1]] == [("assign", sorted(assignments[1]))], b.events

        expected = produce_records(broker.bootstrap, topic, 80, PARTITIONS, "cf-coop")
        wait_until(lambda: len(a.records) + len(b.records) >= len(expected), CONSUME_TIMEOUT_S,
                   lambda: f"{a.describe()}; {b.describe()}", step=poll_all(members))
        assert sorted(a.records + b.records) == expected
        for member in members:
            member.consumer.commit(asynchronous=False)

        # b leaves: a is given b's partitions incrementally, keeping its own without a revoke.
        a_events_before = len(a.events)
        b.close()
        wait_until(lambda: a.assignment() == ALL_PARTITIONS, SESSION_TIMEOUT_MS / 1000, a.describe,
                   step=poll_all([a]))
        assert [e for e in a.events[a_events_before:] if e[1]] == [("assign", sorted(assignments[1]))], a.events
        assert not fatal_errors(members)
    finally:
        a.close()
        if b is not None:
            b.close()


def test_confluent_two_groups_each_receive_every_record(broker):
    topic = unique_topic("cf-fanout")
    create_topic(broker.bootstrap, topic, 3)
    members = [Member(broker.bootstrap, unique_topic(f"cf-fanout-g{i}"), topic, f"cf-fanout-{i}") for i in range(2)]
    try:
        wait_until(lambda: all(len(m.assignment()) == 3 for m in members), JOIN_TIMEOUT_S,
                   lambda: "; ".join(m.describe() for m in members), step=poll_all(members))
        expected = produce_records(broker.bootstrap, topic, 60, 3, "cf-fanout")
        wait_until(lambda: all(len(m.records) >= len(expected) for m in members), CONSUME_TIMEOUT_S,
                   lambda: "; ".join(m.describe() for m in members), step=poll_all(members))
        for member in members:
            assert sorted(member.records) == expected, member.describe()
    finally:
        for member in members:
            member.close()


def committed_offsets(consumer, topic, partitions=PARTITIONS):
    result = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=CLIENT_TIMEOUT_S)
    for tp in result:
        assert tp.error is None, f"committed() error for partition {tp.partition}: {tp.error}"
    return {tp.partition: (tp.offset, tp.metadata or None) for tp in result}


def test_confluent_committed_offsets_survive_kill9(broker):
    topic = unique_topic("cf-commit")
    group = unique_topic("cf-commit-g")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    expected = produce_records(broker.bootstrap, topic, 80, PARTITIONS, "cf-commit")
    member = Member(broker.bootstrap, group, topic, "cf-commit-1")
    try:
        wait_until(lambda: len(member.records) >= len(expected), JOIN_TIMEOUT_S + CONSUME_TIMEOUT_S,
                   member.describe, step=poll_all([member]))
        assert sorted(member.records) == expected
        # Different offsets per partition, with metadata; one partition left uncommitted.
        wanted = {p: (3 + 4 * p, f"cf-meta-{p}") for p in range(PARTITIONS - 1)}
        member.consumer.commit(
            offsets=[TopicPartition(topic, p, offset, metadata) for p, (offset, metadata) in wanted.items()],
            asynchronous=False,
        )
        committed = committed_offsets(member.consumer, topic)
        assert committed == {**wanted, PARTITIONS - 1: (-1001, None)}, committed
    finally:
        member.close()

    broker.kill9()
    broker.start()

    member = Member(broker.bootstrap, group, topic, "cf-commit-2")
    try:
        committed = committed_offsets(member.consumer, topic)
        assert committed == {**wanted, PARTITIONS - 1: (-1001, None)}, f"after kill -9: {committed}"
        # Resumes at the committed offsets; the uncommitted partition from the beginning.
        resume = {p: wanted.get(p, (0, None))[0] for p in range(PARTITIONS)}
        tail = [r for r in expected if r[1] >= resume[r[0]]]
        wait_until(lambda: len(member.records) >= len(tail), JOIN_TIMEOUT_S + CONSUME_TIMEOUT_S,
                   member.describe, step=poll_all([member]))
        assert sorted(member.records) == tail
    finally:
        member.close()


def groups_for_offsets_partitions(wanted, prefix):
    """Group ids whose __consumer_offsets partitions are `wanted` (Kafka's group placement)."""
    found = {}
    i = 0
    while len(found) < len(wanted):
        candidate = f"{prefix}-{i}"
        p = kafka_group_partition(candidate)
        if p in wanted and p not in found:
            found[p] = candidate
        i += 1
        assert i < 100_000
    return [found[p] for p in wanted]


def test_confluent_groups_on_every_shard(broker):
    topic = unique_topic("cf-shards")
    create_topic(broker.bootstrap, topic, 2)
    # Six groups on six consecutive __consumer_offsets partitions, which the broker spreads over
    # both shards.
    groups = groups_for_offsets_partitions(list(range(10, 16)), unique_topic("cf-shard-g"))
    expected = produce_records(broker.bootstrap, topic, 30, 2, "cf-shards")
    members = [Member(broker.bootstrap, g, topic, f"cf-shard-{i}") for i, g in enumerate(groups)]
    try:
        wait_until(lambda: all(len(m.records) >= len(expected) for m in members), JOIN_TIMEOUT_S + CONSUME_TIMEOUT_S,
                   lambda: "; ".join(m.describe() for m in members), step=poll_all(members))
        for i, member in enumerate(members):
            assert sorted(member.records) == expected, member.describe()
            member.consumer.commit(offsets=[TopicPartition(topic, p, i + p) for p in range(2)], asynchronous=False)
        for i, member in enumerate(members):
            assert committed_offsets(member.consumer, topic, 2) == {p: (i + p, None) for p in range(2)}, groups[i]
    finally:
        for member in members:
            member.close()
    # The broker says which shard coordinates each new group: both shards do.
    coordinators = dict((group, int(shard)) for shard, group in
                        re.findall(r"shard (\d+): coordinating new group (\S+)", broker.log_path.read_text()))
    assert {coordinators.get(g) for g in groups} == set(range(broker.shards)), coordinators

    broker.restart()
    for i, g in enumerate(groups):
        checker = Consumer(group_config(broker.bootstrap, g, f"cf-shard-check-{i}"))
        try:
            committed = committed_offsets(checker, topic, 2)
        finally:
            checker.close()
        assert committed == {p: (i + p, None) for p in range(2)}, f"group {g} after restart: {committed}"
    # Each group's records are in the log of its own __consumer_offsets partition (data-dir layout
    # TOPIC-PARTITION/*.log), so the commits really went through coordinators on both shards.
    for g in groups:
        directory = broker.data_dir / f"__consumer_offsets-{kafka_group_partition(g)}"
        sizes = [f.stat().st_size for f in directory.glob("*.log")]
        assert sum(sizes) > 0, f"no records of group {g} in {directory}: {sizes}"
