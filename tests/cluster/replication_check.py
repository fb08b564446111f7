"""The checker of the replication tests (issue 14): a numbered, idempotent acks=all producer, a
read of the whole partition afterwards, and each replica's log read from its segment files.

The guarantee checked (Kafka's): a record acknowledged with acks=all while min.insync.replicas
held survives as long as one member of the ISR lives. Checked as: every acknowledged number is
read back exactly once, at the offset its acknowledgement named, and the partition's numbers
increase strictly (a number that was never acknowledged may be missing, never repeated or out of
order). Once the cluster is whole and quiet, every replica holds the same batches (a deposed
leader's divergent suffix does not survive). The idempotent producer never raises a fatal error:
its sequence state moves with leadership.
"""

import struct
import threading
import time
from collections import Counter

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

import cluster_wire
import observe
from clients import admin, confluent_config
from harness import ClusterError, wait_until
from kafka_wire import crc32c

REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
# Records the producer offers per second: enough to have many batches in flight at a fault,
# few enough for three brokers and the producer on two shared cores.
PRODUCE_RATE_PER_S = 200
# How long a record may wait for its acknowledgement, retries included (librdkafka's
# message.timeout.ms): longer than any fault a test holds, so records sent during one are
# retried until the partition can take them again.
MESSAGE_TIMEOUT_MS = 40000
# Produce's timeout_ms (librdkafka's request.timeout.ms): an acks=all request a deposed leader
# cannot complete times out in this, and the producer asks for metadata again.
REQUEST_TIMEOUT_MS = 5000
# Bound of the producer's final flush and of its thread's end.
FLUSH_TIMEOUT_S = 45.0
# Bound of the final read of the partition.
READ_TIMEOUT_S = 60.0
# Bound of the replicas' logs becoming the same once the cluster is whole and nothing is produced
# (a follower needs one fetch, at most --replica-fetch-wait-max-ms, to reach the leader's end).
CONVERGE_TIMEOUT_S = 20.0
# Kafka error codes the tests look for.
ERROR_NOT_ENOUGH_REPLICAS = 19
ERROR_NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
# RecordBatch v2: baseOffset, batchLength, partitionLeaderEpoch, magic, crc; then the CRC'd part
# from attributes: attributes, lastOffsetDelta, two timestamps, producer id, epoch, base sequence,
# record count (kafka.apache.org/documentation/#recordbatch).
BATCH_HEAD = struct.Struct(">qiibI")
BATCH_BODY_HEAD = struct.Struct(">hiqqqhii")
BATCH_BYTES_MIN = BATCH_HEAD.size + BATCH_BODY_HEAD.size


def create_topic(cluster, topic, partitions=1, assignment=None, configs=None):
    """RF 3, min.insync.replicas 2 (and `configs`), created through confluent-kafka and led at
    every running node; `assignment` (each partition's replicas, the preferred first) replaces
    the broker's placement. Returns the partitions as the first running node sees them."""
    client = admin(cluster.bootstrap())
    config = {"min.insync.replicas": str(MIN_INSYNC_REPLICAS), **(configs or {})}
    if assignment is None:
        new = NewTopic(topic, num_partitions=partitions, replication_factor=REPLICATION_FACTOR,
                       config=config)
    else:
        partitions = len(assignment)
        new = NewTopic(topic, num_partitions=partitions, replica_assignment=assignment,
                       config=config)
    client.create_topics([new], request_timeout=10, operation_timeout=10)[topic].result(timeout=20)
    for node in cluster.running():
        observe.wait_led(node, topic, partitions)
    return observe.partitions_of(cluster.running()[0], topic)


def partition_state(node, topic, partition=0):
    """(leader, sorted ISR, sorted replicas) of the partition as `node` sees it, else None."""
    try:
        entry = cluster_wire.metadata(node, [topic], timeout_s=2.0)["topics"].get(topic)
    except (OSError, AssertionError):
        return None
    if entry is None or entry["error"] != cluster_wire.ERROR_NONE:
        return None
    found = entry["partitions"][partition]
    return found["leader"], sorted(found["isr"]), sorted(found["replicas"])


def agreed_state(nodes, topic, partition=0):
    """The partition's state if every node of `nodes` answers with the same one, else None: a
    node just resumed or healed may still answer from an old snapshot."""
    states = [partition_state(node, topic, partition) for node in nodes]
    if not states or states[0] is None or states.count(states[0]) != len(states):
        return None
    return states[0]


def wait_leader(cluster, topic, timeout_s, other_than=None, askers=None, expected=None):
    """Wait until the nodes `askers` (default: the running ones but `other_than`) agree on a
    leader that is neither `other_than` nor -1 (and is `expected`, if given); returns it."""
    askers = askers or [node for node in cluster.running() if node.id != other_than]

    def led():
        state = agreed_state(askers, topic)
        return (state is not None and state[0] not in (other_than, -1)
                and expected in (None, state[0]) and state[0])
    what = f"{topic} led" + ("" if other_than is None else f" by another node than {other_than}")
    what += "" if expected is None else f" by node {expected}"
    return wait_until(what, led, timeout_s)


def wait_isr_whole(cluster, topic, timeout_s, partition=0):
    """Wait until every running node shows every replica of the partition in its ISR, and the
    same leader; returns (leader, isr)."""
    def whole():
        state = agreed_state(cluster.running(), topic, partition)
        return state is not None and state[0] >= 0 and state[1] == state[2] and state[:2]
    return wait_until(f"{topic}-{partition}'s ISR holding every replica again", whole, timeout_s)


def states_seen(cluster, topic):
    """Each running node's view of the partition, for a failure message."""
    return "; ".join(f"node {node.id}: {partition_state(node, topic)}"
                     for node in cluster.running())


def wait_isr(cluster, topic, isr, timeout_s, askers=None):
    """Wait until every running node (or each of `askers`) shows the partition's ISR as `isr`
    (sorted node ids)."""
    def shown():
        state = agreed_state(askers or cluster.running(), topic)
        return state is not None and state[1] == isr
    wait_until(f"{topic}'s ISR {isr}", shown, timeout_s)


class NumberedProducer:
    """An idempotent acks=all confluent-kafka producer writing 0, 1, 2, ... (the value is the
    number in decimal, padded with spaces to `value_bytes`) to partition 0 of a topic from a
    thread of its own, at a steady rate, recording which numbers were acknowledged, at which
    offset and when."""

    def __init__(self, bootstrap, topic, rate_per_s=PRODUCE_RATE_PER_S, value_bytes=0):
        self.topic = topic
        self.value_bytes = value_bytes
        self.interval_s = 1.0 / rate_per_s
        self.config = confluent_config(bootstrap, **{
            "acks": "all", "enable.idempotence": True, "linger.ms": 5,
            "compression.type": "none", "message.timeout.ms": MESSAGE_TIMEOUT_MS,
            "request.timeout.ms": REQUEST_TIMEOUT_MS, "retry.backoff.ms": 100,
            "error_cb": self._on_error})
        self.lock = threading.Lock()
        self.acked = {}  # number -> (offset, time.monotonic() of its report)
        self.failed = {}  # number -> the error its delivery report gave
        self.errors = []  # (fatal, text) from error_cb
        self.sent = 0
        self.unflushed = None
        self.crashed = None
        self._stop = threading.Event()
        self._flush_timeout_s = FLUSH_TIMEOUT_S
        self._thread = threading.Thread(target=self._run, name=f"producer-{topic}", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _on_error(self, error):
        with self.lock:
            self.errors.append((error.fatal(), str(error)))

    def _on_delivery(self, number, error, message):
        now = time.monotonic()
        with self.lock:
            if error is None:
                self.acked[number] = (message.offset(), now)
            else:
                self.failed[number] = str(error)

    def _run(self):
        try:
            producer = Producer(self.config)
            number, next_at = 0, time.monotonic()
            while not self._stop.is_set():
                try:
                    value = str(number).encode().ljust(self.value_bytes)
                    producer.produce(self.topic, value=value, partition=0,
                                     on_delivery=lambda e, m, n=number: self._on_delivery(n, e, m))
                except BufferError:
                    producer.poll(0.1)  # the local queue is full: serve reports, offer it again
                    continue
                number += 1
                with self.lock:
                    self.sent = number
                next_at += self.interval_s
                # Pacing of the load, not synchronisation: poll serves delivery reports meanwhile.
                while (left := next_at - time.monotonic()) > 0:
                    producer.poll(left)
            self.unflushed = producer.flush(self._flush_timeout_s)
        except Exception as error:  # noqa: BLE001 - reported by stop()
            self.crashed = error

    def stop(self):
        """Stop offering records, flush (bounded) and end the thread."""
        self._stop.set()
        self._thread.join(FLUSH_TIMEOUT_S + 15)
        if self._thread.is_alive():
            raise ClusterError(f"the producer of {self.topic} did not finish its flush")
        if self.crashed is not None:
            raise ClusterError(f"the producer of {self.topic} failed: {self.crashed!r}")

    def abort(self):
        """At teardown, on any exit path: stop at once, with a short flush, and end the thread, so
        no client outlives its test and its cluster."""
        self._flush_timeout_s = 1.0
        self._stop.set()
        self._thread.join(FLUSH_TIMEOUT_S + 15)

    def mark(self):
        """(numbers offered so far, now): a point in the run to compare acknowledgements with."""
        with self.lock:
            return self.sent, time.monotonic()

    def wait_acked_from(self, number, what, timeout_s):
        """Wait until some number >= `number` is acknowledged; returns when the first of them was
        (time.monotonic())."""
        def first_acked_at():
            with self.lock:
                return min((at for n, (_, at) in self.acked.items() if n >= number), default=None)
        return wait_until(f"{what}: an acknowledgement of a record numbered {number} or later "
                          f"(errors so far: {self.error_summary()})", first_acked_at, timeout_s,
                          interval_s=0.05)

    def acked_during(self, first_number, since, until):
        """Numbers >= `first_number` whose acknowledgement came between `since` and `until`."""
        with self.lock:
            return sorted(n for n, (_, at) in self.acked.items()
                          if n >= first_number and since <= at < until)

    def fatal_errors(self):
        with self.lock:
            return [text for fatal, text in self.errors if fatal]

    def error_summary(self):
        with self.lock:
            failed = Counter(self.failed.values())
            return f"{len(self.failed)} failed {dict(failed.most_common(3))}, " \
                   f"client errors {self.errors[-3:]}"


def read_partition(bootstrap, topic, acked, timeout_s=READ_TIMEOUT_S):
    """Read partition 0 of `topic` from its start with a plain consumer until its end, once every
    number of `acked` came or at `timeout_s`; returns [(offset, key, value)] in read order."""
    consumer = Consumer(confluent_config(bootstrap, **{
        "group.id": "sluice-replication-check", "enable.auto.commit": False,
        "enable.partition.eof": True, "auto.offset.reset": "earliest"}))
    records, seen, at_end = [], set(), False
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not (at_end and seen >= acked):
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() != KafkaError._PARTITION_EOF:
                    raise ClusterError(f"consume error: {message.error()}")
                at_end = True
                continue
            at_end = False
            records.append((message.offset(), message.key(), message.value()))
            try:
                seen.add(int(message.value()))
            except (TypeError, ValueError):
                pass  # reported by history_problems
    finally:
        consumer.close()
    return records


def history_problems(records, acked, skip_key=None):
    """What breaks the guarantee in a read of the partition: `records` [(offset, key, value)] in
    read order, `acked` {number: offset}. Records whose key is `skip_key` are not numbered."""
    problems, numbers = [], []
    for offset, key, value in records:
        if skip_key is not None and key == skip_key:
            continue
        try:
            numbers.append((offset, int(value)))
        except (TypeError, ValueError):
            problems.append(f"offset {offset}: value {value!r} is not a number this test wrote")
    offsets = [offset for offset, _ in numbers]
    if offsets != sorted(set(offsets)):
        problems.append("the read returned offsets out of order or twice")
    counts = Counter(number for _, number in numbers)
    repeated = sorted(number for number, count in counts.items() if count > 1)
    if repeated:
        problems.append(f"{len(repeated)} numbers stored more than once, first "
                        f"{[(n, [o for o, m in numbers if m == n]) for n in repeated[:5]]}")
    backwards = [(offset, number, before) for (_, before), (offset, number)
                 in zip(numbers, numbers[1:]) if number <= before]
    if backwards:
        problems.append(f"{len(backwards)} numbers out of order (offset, number, the one before): "
                        f"{backwards[:5]}")
    missing = sorted(set(acked) - set(counts))
    if missing:
        problems.append(f"{len(missing)} of {len(acked)} acknowledged numbers missing, first "
                        f"{[(n, acked[n]) for n in missing[:10]]} (number, acknowledged offset)")
    read_at = {number: offset for offset, number in numbers}
    moved = [(n, acked[n], read_at[n]) for n in sorted(acked)
             if n in read_at and read_at[n] != acked[n]]
    if moved:
        problems.append(f"{len(moved)} acknowledged numbers read at another offset (number, "
                        f"acknowledged at, read at): {moved[:5]}")
    return problems


def check_history(bootstrap, topic, producer, skip_key=None):
    """Read the partition back and assert the guarantee for `producer`'s acknowledgements;
    returns (records read, acknowledged count)."""
    with producer.lock:
        acked = {number: offset for number, (offset, _) in producer.acked.items()}
    records = read_partition(bootstrap, topic, set(acked))
    problems = history_problems(records, acked, skip_key)
    fatal = producer.fatal_errors()
    if fatal:
        problems.append(f"the idempotent producer raised fatal errors: {fatal[:3]}")
    assert not problems, (f"{topic}: {len(records)} records read, {len(acked)} acknowledged of "
                          f"{producer.sent} sent; " + "; ".join(problems))
    return len(records), len(acked)


def replica_batches(node, topic, partition=0):
    """The batches of a replica's log read from its segment files, oldest first: [(base offset,
    leader epoch, the CRC'd bytes)], up to the first incomplete or damaged batch (the active
    segment ends in zeros, or in a write still in flight)."""
    directory = node.data_dir / f"{topic}-{partition}"
    batches = []
    for segment in sorted(directory.glob("*.log")):
        data = segment.read_bytes()
        position = 0
        while position + BATCH_BYTES_MIN <= len(data):
            base_offset, length, epoch, magic, crc = BATCH_HEAD.unpack_from(data, position)
            end = position + 12 + length
            if length < BATCH_BYTES_MIN - 12 or magic != 2 or end > len(data):
                break
            body = data[position + BATCH_HEAD.size:end]
            if crc32c(body) != crc:
                break
            batches.append((base_offset, epoch, body))
            position = end
    return batches


def _describe_batch(batch):
    base_offset, epoch, body = batch
    _, last_delta, stamp, _, producer_id, _, sequence, count = BATCH_BODY_HEAD.unpack_from(body)
    return (f"offsets {base_offset}..{base_offset + last_delta} epoch {epoch} producer "
            f"{producer_id} sequence {sequence} ({count} records, timestamp {stamp})")


def _logs_differ(logs):
    """None if every replica's log holds the same batches, else how they differ: each replica's
    batch count and its batch where the logs first differ."""
    if all(log == logs[min(logs)] for log in logs.values()):
        return None
    shortest = min(len(log) for log in logs.values())
    index = next((i for i in range(shortest) if len({log[i] for log in logs.values()}) > 1),
                 shortest)
    return f"first difference at batch {index}: " + "; ".join(
        f"node {node_id} ({len(log)} batches): "
        + (_describe_batch(log[index]) if index < len(log) else "(its end)")
        for node_id, log in sorted(logs.items()))


def wait_replicas_identical(cluster, topic, replicas, timeout_s=CONVERGE_TIMEOUT_S):
    """Wait until the logs of `replicas` (node ids) hold the same batches: same offsets, same
    leader epochs, same bytes. Call once nothing is produced and every replica is in the ISR."""
    last = [None]

    def identical():
        logs = {node_id: replica_batches(cluster.node(node_id), topic) for node_id in replicas}
        last[0] = _logs_differ(logs)
        return last[0] is None and sum(len(log) for log in logs.values())
    try:
        wait_until(f"the replicas of {topic} holding the same log", identical, timeout_s,
                   interval_s=0.5)
    except ClusterError as error:
        raise ClusterError(f"{error}\n{last[0]}") from None


def probe_acks_all(node, topic, key):
    """One acks=all Produce (v8, timeout 1 s) of a record keyed `key` at `node`: its error code."""
    error, _ = cluster_wire.produce_one(node, topic, 0, value=key, key=key, acks=-1,
                                        timeout_ms=1000, timeout_s=5.0)
    return error
