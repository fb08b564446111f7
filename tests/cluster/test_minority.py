"""A minority of voters cannot change metadata: with two of three brokers cut off (iptables in
their namespaces) or paused (SIGSTOP), CreateTopics at the remaining one fails or times out and
changes nothing; once the others are back, it succeeds again."""

import pytest

import cluster_wire
from harness import wait_until
from kafka_wire import Closed
from observe import partitions_of, wait_agreement

# CreateTopics' own timeout, and how long the test waits for its answer beyond it.
REQUEST_TIMEOUT_MS = 3000
ANSWER_MARGIN_S = 5.0
# Bound of the recovery after the heal: an election and a commit, with client retries.
RECOVERY_TIMEOUT_S = 30.0


def _create_at(node, topic):
    """CreateTopics (3 partitions, RF 1) at `node`: its error code, or "no answer"."""
    try:
        answer = cluster_wire.create_topics(node, [(topic, 3, 1)], timeout_ms=REQUEST_TIMEOUT_MS,
                                            timeout_s=REQUEST_TIMEOUT_MS / 1000 + ANSWER_MARGIN_S)
    except (TimeoutError, Closed, OSError) as error:
        return f"no answer ({type(error).__name__})"
    return answer[topic][0]


@pytest.mark.parametrize("how", ["isolate", "pause"])
def test_a_minority_cannot_create_topics(cluster, how):
    controller = wait_agreement(cluster)
    # Isolation leaves a follower alone, pausing leaves the controller alone: a follower cannot
    # reach a leader, and a leader cannot reach a majority.
    if how == "isolate":
        cluster.require_faults()
        survivor = next(node for node in cluster.nodes.values() if node.id != controller)
    else:
        survivor = cluster.node(controller)
    others = [node for node in cluster.nodes.values() if node is not survivor]
    for node in others:
        if how == "isolate":
            cluster.isolate(node.id)
        else:
            node.pause()

    topic = "minority-" + how
    outcome = _create_at(survivor, topic)
    assert outcome != cluster_wire.ERROR_NONE, f"node {survivor.id} alone created {topic}"
    print(f"\nCreateTopics at node {survivor.id} alone ({how}): {outcome}")
    assert partitions_of(survivor, topic) is None

    if how == "isolate":
        cluster.heal()
    else:
        for node in others:
            node.resume()
    wait_agreement(cluster, timeout_s=RECOVERY_TIMEOUT_S)
    after = topic + "-healed"
    wait_until(f"CreateTopics {after} at node {survivor.id} after the heal",
               lambda: _create_at(survivor, after) in (cluster_wire.ERROR_NONE,
                                                      cluster_wire.ERROR_TOPIC_ALREADY_EXISTS),
               RECOVERY_TIMEOUT_S, interval_s=0.5)
    for node in cluster.nodes.values():
        wait_until(f"node {node.id} showing {after}", lambda: partitions_of(node, after), 10)
