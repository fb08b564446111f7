"""Leader elections (issue 14): the preferred replica leads again after it returns, asked for
(`sluice topic elect-leaders`, confluent-kafka's ElectLeaders) or on its own (the active
controller's rebalancing); and a partition whose every ISR member is dead stays offline unless
the topic allows an unclean election, or one is asked for.

Each partition here has the explicit replicas [1, 2, 3]: node 1 is the preferred replica.
Guarantees checked: a preferred election moves leadership only to a live, in-sync first replica
(PREFERRED_LEADER_NOT_AVAILABLE otherwise, ELECTION_NOT_NEEDED when it leads); an out-of-sync
replica never leads by default, and does once the topic's `unclean.leader.election.enable` is
set or an UNCLEAN election is asked for, serving only what it held."""

import subprocess

import pytest
from confluent_kafka import ElectionType, KafkaError, TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource

from clients import admin, produce, read_all, unique_topic
from harness import SLUICE_BIN, wait_until
from observe import wait_agreement
from replication_check import agreed_state, create_topic, wait_isr, wait_isr_whole, wait_leader

PREFERRED = 1
ASSIGNMENT = [[PREFERRED, 2, 3]]
# Fencing (the harness's 3 s session timeout) and every broker applying the new leader.
LEADER_MOVE_TIMEOUT_S = 15.0
# A restarted broker's start, truncation and catch-up, and its return to the ISR.
REJOIN_TIMEOUT_S = 45.0
# How long an offline partition is watched staying offline.
OFFLINE_HOLD_S = 3.0
# The rebalancing period of the automatic test, and how long it may take to act: a round or
# two after the preferred replica is back in the ISR.
IMBALANCE_CHECK_INTERVAL_MS = 1000
REBALANCE_TIMEOUT_S = 15.0
# Bound of one admin request.
ADMIN_TIMEOUT_S = 20.0
RECORDS = 30

# Without automatic rebalancing, the leader moves back only when asked to.
NO_REBALANCE = pytest.mark.cluster_args("--auto-leader-rebalance-enable", "false")
pytestmark = pytest.mark.timeout(180)


def _elect(cluster, election, topic):
    """ElectLeaders through confluent-kafka's AdminClient for partition 0 of `topic`: None on
    success, else the Kafka error code of the partition's result."""
    partition = TopicPartition(topic, 0)
    # No timeouts passed: confluent-kafka 2.16's binding fails on any keyword argument here.
    client = admin(cluster.bootstrap())  # held until the result: a destroyed client fails it
    future = client.elect_leaders(election, [partition])
    results = future.result(timeout=ADMIN_TIMEOUT_S)
    error = {(p.topic, p.partition): e for p, e in results.items()}[(topic, 0)]
    if isinstance(error, Exception):  # a KafkaException, or a KafkaError as this version gives
        error = error.args[0]
    return None if error is None else error.code()


def _numbered(prefix, count):
    return [(0, f"{prefix}-{i}".encode(), f"{prefix}-{i}".encode()) for i in range(count)]


def _preferred_killed_and_back(cluster, topics, on_down=None):
    """Kill -9 the preferred replica (it leads `topics`), wait for another leader of each, call
    `on_down`, restart it and wait until every ISR holds it again; returns the leader the
    partitions moved to."""
    for topic in topics:
        assert wait_leader(cluster, topic, LEADER_MOVE_TIMEOUT_S) == PREFERRED
    cluster.node(PREFERRED).kill9()
    moved = {wait_leader(cluster, topic, LEADER_MOVE_TIMEOUT_S, other_than=PREFERRED)
             for topic in topics}
    if on_down is not None:
        on_down()
    cluster.node(PREFERRED).start()
    for topic in topics:
        leader, _ = wait_isr_whole(cluster, topic, REJOIN_TIMEOUT_S)
        assert leader != PREFERRED, "the preferred replica led again without an election"
    return moved


@NO_REBALANCE
def test_the_preferred_replica_leads_again_when_an_election_asks_for_it(cluster):
    by_cli, by_client = unique_topic("elect-cli"), unique_topic("elect-client")
    for topic in (by_cli, by_client):
        create_topic(cluster, topic, assignment=ASSIGNMENT)
        produce(cluster.bootstrap(), topic, _numbered("before", RECORDS))

    def while_down():
        # The preferred replica is dead: not available.
        assert _elect(cluster, ElectionType.PREFERRED, by_client) == (
            KafkaError.PREFERRED_LEADER_NOT_AVAILABLE)

    _preferred_killed_and_back(cluster, [by_cli, by_client], while_down)

    result = subprocess.run(
        [str(SLUICE_BIN), "topic", "elect-leaders", "--topic", by_cli,
         "--bootstrap-server", cluster.node(2).bootstrap],
        capture_output=True, text=True, timeout=ADMIN_TIMEOUT_S)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{by_cli}-0\telected leader {PREFERRED}" in result.stdout, result.stdout
    wait_leader(cluster, by_cli, LEADER_MOVE_TIMEOUT_S, expected=PREFERRED)

    assert _elect(cluster, ElectionType.PREFERRED, by_client) is None
    wait_leader(cluster, by_client, LEADER_MOVE_TIMEOUT_S, expected=PREFERRED)
    assert _elect(cluster, ElectionType.PREFERRED, by_client) == KafkaError.ELECTION_NOT_NEEDED

    for topic in (by_cli, by_client):
        produce(cluster.bootstrap(), topic, _numbered("after", RECORDS))
        values = [value for _, _, _, value in read_all(cluster.bootstrap(), topic, 1, 2 * RECORDS)]
        assert values == [v for _, _, v in _numbered("before", RECORDS) + _numbered("after", RECORDS)]


@pytest.mark.cluster_args("--leader-imbalance-check-interval-ms", IMBALANCE_CHECK_INTERVAL_MS)
def test_the_preferred_replica_leads_again_on_its_own_with_automatic_rebalancing(cluster):
    topic = unique_topic("elect-auto")
    create_topic(cluster, topic, assignment=ASSIGNMENT)
    cluster.node(PREFERRED).kill9()
    wait_leader(cluster, topic, LEADER_MOVE_TIMEOUT_S, other_than=PREFERRED)
    cluster.node(PREFERRED).start()
    # Rebalancing may move it back as soon as it is in the ISR: wait for the leader alone.
    wait_leader(cluster, topic, REJOIN_TIMEOUT_S + REBALANCE_TIMEOUT_S, expected=PREFERRED)
    wait_isr_whole(cluster, topic, REJOIN_TIMEOUT_S)


def _offline(cluster, topic):
    """Whether every running node shows the partition without a leader."""
    state = agreed_state(cluster.running(), topic)
    return state is not None and state[0] == -1


def _hold_offline(cluster, topics):
    """The partitions stay offline (checked over OFFLINE_HOLD_S)."""
    for topic in topics:
        wait_until(f"{topic} offline", lambda t=topic: _offline(cluster, t), LEADER_MOVE_TIMEOUT_S)

    def any_led():
        return [topic for topic in topics if not _offline(cluster, topic)]
    try:
        led = wait_until("a partition of an offline ISR getting a leader", any_led,
                         OFFLINE_HOLD_S)
    except AssertionError:
        return
    raise AssertionError(f"{led} got a leader outside the ISR: "
                         f"{[agreed_state(cluster.running(), t) for t in led]}")


@NO_REBALANCE
@pytest.mark.cluster_size(5)
def test_an_out_of_sync_replica_leads_only_after_an_unclean_election(cluster):
    # Five brokers: with the two ISR members dead the metadata quorum keeps its majority.
    by_config, by_request = unique_topic("unclean-config"), unique_topic("unclean-request")
    topics = (by_config, by_request)
    for topic in topics:
        create_topic(cluster, topic, assignment=ASSIGNMENT)
        produce(cluster.bootstrap(), topic, _numbered("held", RECORDS))
    # Node 3 dies and leaves the ISR; records it lacks are acknowledged by nodes 1 and 2.
    cluster.node(3).kill9()
    for topic in topics:
        wait_isr(cluster, topic, [1, 2], LEADER_MOVE_TIMEOUT_S)
        produce(cluster.bootstrap(), topic, _numbered("lost", RECORDS))
    cluster.node(2).kill9()
    cluster.node(1).kill9()
    cluster.node(3).start()
    wait_agreement(cluster)  # node 3 registered again, nodes 1 and 2 fenced
    _hold_offline(cluster, topics)
    assert _elect(cluster, ElectionType.PREFERRED, by_request) == (
        KafkaError.PREFERRED_LEADER_NOT_AVAILABLE)

    resource = ConfigResource(ConfigResource.Type.TOPIC, by_config, incremental_configs=[
        ConfigEntry("unclean.leader.election.enable", "true",
                    incremental_operation=AlterConfigOpType.SET)])
    client = admin(cluster.bootstrap())
    client.incremental_alter_configs([resource])[resource].result(timeout=ADMIN_TIMEOUT_S)
    wait_leader(cluster, by_config, LEADER_MOVE_TIMEOUT_S, expected=3)
    assert agreed_state(cluster.running(), by_request)[0] == -1, "the other topic stays offline"

    assert _elect(cluster, ElectionType.UNCLEAN, by_request) is None
    wait_leader(cluster, by_request, LEADER_MOVE_TIMEOUT_S, expected=3)
    assert _elect(cluster, ElectionType.UNCLEAN, by_request) == KafkaError.ELECTION_NOT_NEEDED

    for topic in topics:
        assert agreed_state(cluster.running(), topic)[1] == [3], "the ISR is the new leader alone"
        values = [value for _, _, _, value in read_all(cluster.bootstrap(), topic, 1, RECORDS)]
        assert values == [v for _, _, v in _numbered("held", RECORDS)], (
            "an unclean leader serves what it held, and the records it lacked are lost")
