"""A group coordinator cut off from its metadata quorum (iptables between the brokers, clients
still reach it): once its lease ends it coordinates nothing. FindCoordinator at it names no
coordinator on itself, a commit sent to it answers NOT_COORDINATOR (retriable), and the groups
it coordinated (one of confluent-kafka consumers, one of kafka-python consumers, sharing one
`__consumer_offsets` partition) find the broker elected in its place and go on from their
commits.

Guarantee checked, per group: no committed offset is lost (OffsetFetch at the new coordinator
answers the last successful commit), no record below a commit is consumed again, nothing is
skipped, every record is consumed. After the heal the old coordinator names the new one too."""

import time

import pytest

import cluster_wire
from clients import produce, unique_topic
from harness import wait_until
from replication_check import create_topic, wait_isr_whole
from test_group_failover import (
    ISR_TIMEOUT_S, OFFSETS_TOPIC, RECORDS, RECORDS_BEFORE_KILL, RESUME_TIMEOUT_S,
    CONSUME_TIMEOUT_S, ConfluentMember, PythonMember, _committed, _consume, _coordinator,
    _groups_sharing_an_offsets_partition)

# From the cut to the cut-off broker refusing to coordinate: its lease (the harness's 3 s session
# timeout less 400 ms) after its last contact, and slack for a loaded machine.
REFUSAL_TIMEOUT_S = 10.0

# From one shard refusing to every shard refusing: a check interval, with slack.
SHARD_CHECK_TIMEOUT_S = 2.0

pytestmark = pytest.mark.timeout(180)


def _named_by(nodes, group):
    """The coordinator `nodes` all name for `group`, once they agree on one without error."""
    answers = {cluster_wire.find_coordinator(node, group)[:2] for node in nodes}
    if len(answers) != 1:
        return None
    error, node_id = answers.pop()
    return error == cluster_wire.ERROR_NONE and node_id


def test_a_cut_off_coordinator_refuses_commits_and_its_groups_move_losing_none(cluster):
    cluster.require_faults()
    topic = unique_topic("group-cut-off")
    create_topic(cluster, topic)
    produce(cluster.bootstrap(), topic, [(0, None, str(i).encode()) for i in range(RECORDS)])
    confluent_group, python_group, offsets_partition = _groups_sharing_an_offsets_partition()
    members = [ConfluentMember(cluster.bootstrap(), confluent_group, topic),
               PythonMember(cluster.bootstrap(), python_group, topic)]
    groups = [confluent_group, python_group]
    try:
        for member in members:
            _consume(member, RECORDS_BEFORE_KILL, CONSUME_TIMEOUT_S)
        wait_isr_whole(cluster, OFFSETS_TOPIC, ISR_TIMEOUT_S, partition=offsets_partition)
        coordinator = _coordinator(cluster, confluent_group)
        assert _coordinator(cluster, python_group) == coordinator
        cut_off = cluster.node(coordinator)
        others = [node for node in cluster.running() if node.id != coordinator]
        for other in others:
            cluster.cut(coordinator, other.id)
        cut_at = time.monotonic()

        def refuses():
            answer = cluster_wire.find_coordinator(cut_off, confluent_group)
            return answer[1] != coordinator and answer
        answer = wait_until(f"cut-off broker {coordinator} naming no coordinator on itself",
                            refuses, REFUSAL_TIMEOUT_S)
        refused_s = time.monotonic() - cut_at
        assert answer[0] == cluster_wire.ERROR_COORDINATOR_NOT_AVAILABLE, answer
        # Each shard of the broker checks its contact every 100 ms: a request on a connection
        # another shard serves may come a check before that shard refuses.
        for group in groups:
            wait_until(f"a commit of {group} at the cut-off broker answering NOT_COORDINATOR",
                       lambda: cluster_wire.offset_commit(cut_off, group, topic, 0, RECORDS)
                       == cluster_wire.ERROR_NOT_COORDINATOR, SHARD_CHECK_TIMEOUT_S)
        wait_until("OffsetFetch at the cut-off broker answering NOT_COORDINATOR",
                   lambda: cluster_wire.offset_fetch(cut_off, confluent_group, topic, [0])[0]
                   == cluster_wire.ERROR_NOT_COORDINATOR, SHARD_CHECK_TIMEOUT_S)

        for member in members:
            _consume(member, RECORDS, RESUME_TIMEOUT_S)
        resumed_s = time.monotonic() - cut_at
        successor = wait_until(f"the other brokers naming one coordinator of {confluent_group}",
                               lambda: _named_by(others, confluent_group), RESUME_TIMEOUT_S)
        assert successor != coordinator
        for member, group in zip(members, groups):
            member.history.check()
            assert _committed(cluster, successor, group, topic) == member.history.committed

        cluster.heal()
        assert _coordinator(cluster, confluent_group) == successor
        print(f"\ncoordinator {coordinator} cut off; it refused to coordinate {refused_s:.2f} s "
              f"after the cut; node {successor} coordinates; both groups consumed to the end "
              f"{resumed_s:.2f} s after the cut; went back (from, to): "
              f"{[member.history.rewinds for member in members]}")
    finally:
        cluster.heal()
        for member in members:
            member.close()
