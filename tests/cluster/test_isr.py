"""The ISR at the leader: on an RF 3 topic with min.insync.replicas 2, a follower stopped with
SIGSTOP leaves the ISR once it has not caught up for --replica-lag-time-max-ms, and acks=all
still succeeds with the two replicas left; with a second follower stopped the ISR shrinks to the
leader, an acks=all produce waiting meanwhile is answered NOT_ENOUGH_REPLICAS_AFTER_APPEND and a
new one is refused with NOT_ENOUGH_REPLICAS (acks=1 is still answered by the leader alone); after
SIGCONT both followers catch up, join the ISR again and acks=all succeeds again.

Five brokers, so that the metadata quorum (every broker votes) keeps a majority with two of them
stopped and the ISR changes commit; a session timeout far above the lag time, so that the
followers leave the ISR because the leader saw them fall behind, not because they were fenced.
Guarantee checked: acks=all is acknowledged only while at least min.insync.replicas replicas
hold the record, and refused, never acknowledged, below that."""

import pytest

import cluster_wire
from clients import create_topic, unique_topic
from harness import wait_until
from observe import partitions_of, wait_led

LAG_MAX_MS = 2000
MIN_INSYNC_REPLICAS = 2
ERROR_NOT_ENOUGH_REPLICAS = 19
ERROR_NOT_ENOUGH_REPLICAS_AFTER_APPEND = 20
# A stopped follower leaves the ISR within 1.5 lag times (the check runs every half) plus a commit
# of the metadata quorum, which may first elect a new leader if the stopped broker led it.
ISR_CHANGE_TIMEOUT_S = 20.0
# The Produce timeout of an acks=all request that must outlast an ISR change.
PRODUCE_TIMEOUT_MS = 20000
PRODUCE_SOCKET_TIMEOUT_S = PRODUCE_TIMEOUT_MS / 1000 + 10

pytestmark = [
    pytest.mark.cluster_args("--replica-lag-time-max-ms", str(LAG_MAX_MS),
                             "--min-insync-replicas", str(MIN_INSYNC_REPLICAS)),
    pytest.mark.cluster_size(5),
    pytest.mark.cluster_session_timeout_ms(120000),
]


def produce(leader, topic, value, acks=-1):
    error, _ = cluster_wire.produce_one(leader, topic, 0, value, acks=acks,
                                        timeout_ms=PRODUCE_TIMEOUT_MS,
                                        timeout_s=PRODUCE_SOCKET_TIMEOUT_S)
    return error


def wait_isr(leader, topic, expected):
    def isr():
        found = partitions_of(leader, topic)
        return found is not None and set(found[0]["isr"]) == set(expected)
    wait_until(f"the ISR of {topic}-0 at {leader.id} being {sorted(expected)}", isr,
               ISR_CHANGE_TIMEOUT_S, interval_s=0.1)


def test_the_isr_shrinks_and_grows_and_acks_all_follows_it(cluster):
    topic = unique_topic("isr")
    create_topic(cluster.bootstrap(), topic, 1, 3)
    partition = wait_led(cluster.node(1), topic, 1)[0]
    leader = cluster.node(partition["leader"])
    wait_led(leader, topic, 1)
    first, second = [cluster.node(r) for r in partition["replicas"] if r != leader.id]
    everyone = [leader.id, first.id, second.id]
    assert set(partition["isr"]) == set(everyone)
    assert produce(leader, topic, b"all-three") == cluster_wire.ERROR_NONE

    first.pause()
    # Waits until the stopped follower has left the ISR, then succeeds with two replicas.
    assert produce(leader, topic, b"one-stopped") == cluster_wire.ERROR_NONE
    wait_isr(leader, topic, [leader.id, second.id])
    assert produce(leader, topic, b"one-stopped-again") == cluster_wire.ERROR_NONE

    second.pause()
    # Appended while the ISR held two, then the second follower left it: not acknowledged.
    assert produce(leader, topic, b"two-stopped") == ERROR_NOT_ENOUGH_REPLICAS_AFTER_APPEND
    wait_isr(leader, topic, [leader.id])
    assert produce(leader, topic, b"refused") == ERROR_NOT_ENOUGH_REPLICAS
    assert produce(leader, topic, b"leader-alone", acks=1) == cluster_wire.ERROR_NONE

    first.resume()
    second.resume()
    wait_isr(leader, topic, everyone)
    assert produce(leader, topic, b"all-three-again") == cluster_wire.ERROR_NONE
