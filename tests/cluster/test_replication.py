"""Replication under faults (issue 14), Jepsen-style: real brokers, a real idempotent acks=all
producer (confluent-kafka) writing numbered records to an RF 3, min.insync.replicas 2 topic, and
real faults: kill -9 of the leader in repeated rounds, SIGSTOP of the leader, the leader cut off
from the other brokers but not from clients (iptables), a follower that falls behind (SIGSTOP)
and returns, and two replicas dead.

The guarantee (Kafka's): a record acknowledged with acks=all while min.insync.replicas held
survives while one member of the ISR lives; with fewer than min.insync.replicas in the ISR,
acks=all is refused (NOT_ENOUGH_REPLICAS) and nothing is acknowledged. After each fault the
cluster is healed, and `replication_check` asserts: every acknowledged number is read back once,
at the offset its acknowledgement named, the numbers increase strictly, the producer raised no
fatal error, and the replicas' logs end up holding the same batches. Each scenario also asserts
progress: records are acknowledged again within a bound after the fault and after the heal.
"""

import time
from contextlib import contextmanager

import pytest

from clients import unique_topic
from harness import ClusterError
from replication_check import (
    ERROR_NOT_ENOUGH_REPLICAS, NumberedProducer, check_history, create_topic, probe_acks_all,
    states_seen, wait_isr, wait_isr_whole, wait_leader, wait_replicas_identical)

# --replica-lag-time-max-ms: a silent follower leaves the ISR after 2 s (Kafka's default is 30 s).
REPLICA_LAG_TIME_MAX_MS = 2000
# A whole scenario, cluster start and teardown included.
SCENARIO_TIMEOUT_S = 240
# Records acknowledged before a fault is made: replication is running.
WARM_UP_RECORDS = 200
WARM_UP_TIMEOUT_S = 30.0
# From a fault (or a heal) to the next acknowledgement: fencing (the session timeout, 3 s) or the
# ISR shrink (the lag bound, 2 s), a second for the new leadership to reach every broker, and the
# client's metadata refresh and retries, its requests to a deposed leader timing out (5 s).
ACK_RESUME_TIMEOUT_S = 25.0
# From the leader's death (or pause, or cut) to other brokers naming another leader: the fencing
# guarantee is the session timeout plus 1 s (test_fencing.py); slack for a loaded machine.
LEADER_MOVE_TIMEOUT_S = 10.0
# From a broker's return to the ISR holding every replica again: its restart, its truncation and
# catch-up, and the leader's ISR expansion through the metadata log.
REJOIN_TIMEOUT_S = 45.0
# Rounds of the kill -9 scenario: each kills the leader of the time.
KILL_ROUNDS = 2
# Records the producer offers while a follower is paused, on top of those of the ISR shrink.
BEHIND_RECORDS = 600
# How long two dead replicas are held once acks=all is refused, probing that it stays refused.
REFUSAL_HOLD_S = 3.0
# Between two acks=all probes of the two-dead scenario.
PROBE_INTERVAL_S = 0.1
# Key of the raw acks=all probes of the two-dead scenario (not numbered records).
PROBE_KEY = b"probe"

pytestmark = [
    pytest.mark.cluster_args_if_listed(("--replica-lag-time-max-ms", REPLICA_LAG_TIME_MAX_MS)),
    pytest.mark.timeout(SCENARIO_TIMEOUT_S),
]


@pytest.fixture
def views(cluster):
    """A context in which a failed wait also says how each running broker sees the partition
    (leader, ISR, replicas)."""
    @contextmanager
    def of(topic):
        try:
            yield
        except ClusterError as error:
            raise ClusterError(f"{error}\npartition as seen: {states_seen(cluster, topic)}") \
                from None
    return of


@pytest.fixture
def producers():
    """The producers a test starts, each stopped when it ends, whatever its outcome."""
    started = []
    yield started
    for producer in started:
        producer.abort()


def _start(cluster, producers, prefix):
    """An RF 3 topic and a warmed-up producer on it: (topic, replicas, producer)."""
    topic = unique_topic(prefix)
    partitions = create_topic(cluster, topic)
    replicas = sorted(partitions[0]["replicas"])
    producer = NumberedProducer(cluster.bootstrap(), topic).start()
    producers.append(producer)
    producer.wait_acked_from(WARM_UP_RECORDS, "warm-up", WARM_UP_TIMEOUT_S)
    return topic, replicas, producer


def _leader(cluster, topic):
    return wait_leader(cluster, topic, LEADER_MOVE_TIMEOUT_S)


def _finish(cluster, topic, replicas, producer, what, skip_key=None):
    """The cluster is whole again: wait for the ISR, for acknowledgements, stop the producer and
    check the history and the replicas' logs."""
    leader, _ = wait_isr_whole(cluster, topic, REJOIN_TIMEOUT_S)
    number, whole_at = producer.mark()
    resumed_s = producer.wait_acked_from(number, f"{what}: after the heal",
                                         ACK_RESUME_TIMEOUT_S) - whole_at
    producer.stop()
    read, acked = check_history(cluster.bootstrap(), topic, producer, skip_key)
    wait_replicas_identical(cluster, topic, replicas)
    print(f"\n{what}: {producer.sent} records offered, {acked} acknowledged, {read} read back; "
          f"leader at the end {leader}; acknowledged {resumed_s:.2f} s after the ISR was whole; "
          f"producer errors: {producer.error_summary()}")


def test_kill9_of_the_leader_in_rounds_loses_no_acknowledged_record(cluster, producers, views):
    topic, replicas, producer = _start(cluster, producers, "repl-kill")
    with views(topic):
        for round_number in range(1, KILL_ROUNDS + 1):
            leader = _leader(cluster, topic)
            number, killed_at = producer.mark()
            cluster.node(leader).kill9()
            moved_to = wait_leader(cluster, topic, LEADER_MOVE_TIMEOUT_S, other_than=leader)
            moved_s = time.monotonic() - killed_at
            what = f"round {round_number}: kill -9 of {leader}"
            resumed_s = producer.wait_acked_from(number, what, ACK_RESUME_TIMEOUT_S) - killed_at
            print(f"\nround {round_number}: leader {leader} killed; node {moved_to} leads after "
                  f"{moved_s:.2f} s; records acknowledged again {resumed_s:.2f} s after the kill")
            cluster.node(leader).start()
            wait_isr_whole(cluster, topic, REJOIN_TIMEOUT_S)
        _finish(cluster, topic, replicas, producer, f"kill -9 of the leader, {KILL_ROUNDS} rounds")


def test_sigstop_of_the_leader_loses_no_acknowledged_record(cluster, producers, views):
    topic, replicas, producer = _start(cluster, producers, "repl-pause")
    with views(topic):
        leader = _leader(cluster, topic)
        number, paused_at = producer.mark()
        cluster.node(leader).pause()
        moved_to = wait_leader(cluster, topic, LEADER_MOVE_TIMEOUT_S, other_than=leader)
        moved_s = time.monotonic() - paused_at
        resumed_s = producer.wait_acked_from(number, f"SIGSTOP of leader {leader}",
                                             ACK_RESUME_TIMEOUT_S) - paused_at
        print(f"\nleader {leader} paused; node {moved_to} leads after {moved_s:.2f} s; records "
              f"acknowledged again {resumed_s:.2f} s after the pause")
        cluster.node(leader).resume()
        _finish(cluster, topic, replicas, producer, "SIGSTOP of the leader")


def test_a_leader_cut_off_from_the_other_brokers_loses_nothing(cluster, producers, views):
    cluster.require_faults()
    topic, replicas, producer = _start(cluster, producers, "repl-cut")
    with views(topic):
        leader = _leader(cluster, topic)
        others = [node for node in cluster.running() if node.id != leader]
        number, cut_at = producer.mark()
        for other in others:
            cluster.cut(leader, other.id)
        moved_to = wait_leader(cluster, topic, LEADER_MOVE_TIMEOUT_S, other_than=leader,
                               askers=others)
        moved_s = time.monotonic() - cut_at
        resumed_s = producer.wait_acked_from(number, f"leader {leader} cut off",
                                             ACK_RESUME_TIMEOUT_S) - cut_at
        print(f"\nleader {leader} cut off from the brokers; node {moved_to} leads after "
              f"{moved_s:.2f} s; records acknowledged again {resumed_s:.2f} s after the cut")
        cluster.heal()
        _finish(cluster, topic, replicas, producer, "the leader cut off from the other brokers")


def test_a_follower_that_falls_behind_catches_up_and_rejoins_the_isr(cluster, producers, views):
    topic, replicas, producer = _start(cluster, producers, "repl-behind")
    with views(topic):
        leader = _leader(cluster, topic)
        follower = next(replica for replica in replicas if replica != leader)
        number, _ = producer.mark()
        cluster.node(follower).pause()
        producer.wait_acked_from(number, f"follower {follower} paused", ACK_RESUME_TIMEOUT_S)
        shrunk = [replica for replica in replicas if replica != follower]
        wait_isr(cluster, topic, shrunk, ACK_RESUME_TIMEOUT_S)
        number, _ = producer.mark()
        producer.wait_acked_from(number + BEHIND_RECORDS, f"follower {follower} falling behind",
                                 ACK_RESUME_TIMEOUT_S)
        cluster.node(follower).resume()
        _finish(cluster, topic, replicas, producer, "a follower paused and resumed")


def _refusals(leader_node, topic, hold_s):
    """Probe acks=all at the leader until it answers NOT_ENOUGH_REPLICAS, then for `hold_s` more,
    in which every answer must be that refusal; returns the answers in order. No answer may be an
    acknowledgement (0)."""
    answers, deadline, held_until = [], time.monotonic() + ACK_RESUME_TIMEOUT_S, None
    while held_until is None or time.monotonic() < held_until:
        try:
            answers.append(probe_acks_all(leader_node, topic, PROBE_KEY))
        except (OSError, AssertionError) as error:
            answers.append(f"no answer: {error}")
        assert answers[-1] != 0, f"acks=all acknowledged with two replicas dead: {answers[-10:]}"
        if held_until is not None:
            assert answers[-1] == ERROR_NOT_ENOUGH_REPLICAS, f"refusal not held: {answers[-10:]}"
        elif answers[-1] == ERROR_NOT_ENOUGH_REPLICAS:
            held_until = time.monotonic() + hold_s
        elif time.monotonic() >= deadline:
            raise AssertionError(f"acks=all at leader {leader_node.id} not refused with "
                                 f"NOT_ENOUGH_REPLICAS within {ACK_RESUME_TIMEOUT_S}s: "
                                 f"{answers[-10:]}")
        time.sleep(PROBE_INTERVAL_S)  # the pace of the probes, not synchronisation
    return answers


@pytest.mark.cluster_size(5)
def test_with_two_replicas_dead_acks_all_is_refused_never_acknowledged(cluster, producers, views):
    # Five brokers: with two of them dead the metadata quorum (five voters) still has a
    # majority, so the ISR can shrink below min.insync.replicas.
    topic, replicas, producer = _start(cluster, producers, "repl-two-dead")
    with views(topic):
        leader = _leader(cluster, topic)
        victims = [replica for replica in replicas if replica != leader]
        for victim in victims:
            cluster.node(victim).kill9()
        number, killed_at = producer.mark()
        answers = _refusals(cluster.node(leader), topic, REFUSAL_HOLD_S)
        restarted_at = time.monotonic()
        early = producer.acked_during(number, killed_at, restarted_at)
        assert not early, f"records acknowledged with two replicas dead: {early[:10]}"
        print(f"\nreplicas {victims} killed: acks=all answered {answers[0]} first, refused with "
              f"NOT_ENOUGH_REPLICAS after {len(answers)} probes, "
              f"{restarted_at - killed_at:.2f} s in all")
        for victim in victims:
            cluster.node(victim).start()
        _finish(cluster, topic, replicas, producer, "two replicas dead", skip_key=PROBE_KEY)
