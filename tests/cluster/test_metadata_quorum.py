"""The metadata quorum as clients see it: a change made through any broker reaches every broker,
every broker names the same controller (the quorum's leader), and losing the controller elects
another that takes changes."""

import cluster_wire
from clients import unique_topic
from harness import wait_until

# Longer than an election (1 to 2 s with the default ticks) plus the clients' retries.
CONVERGE_TIMEOUT_S = 20


def _partitions(node, topic):
    """The partition count `node`'s Metadata lists for `topic`, or None while it lists none."""
    entry = cluster_wire.metadata(node, [topic])["topics"].get(topic)
    if entry is None or entry.get("error", 0) != 0:
        return None
    return len(entry["partitions"])


def _controller(node):
    return cluster_wire.metadata(node)["controller_id"]


def _create(node, topic, partitions):
    """CreateTopics at `node`, retried while the quorum has no leader (NOT_CONTROLLER, 41) or
    the proposal timed out (REQUEST_TIMED_OUT, 7), as Kafka clients retry."""
    answer = {}

    def created():
        answer.update(cluster_wire.create_topics(node, [(topic, partitions, 1)]))
        return answer[topic][0] not in (7, 41)

    wait_until(f"{topic} created through node {node.id}", created, CONVERGE_TIMEOUT_S)
    return answer[topic]


def test_a_topic_created_through_one_broker_appears_on_every_broker(shared_cluster):
    nodes = shared_cluster.nodes
    topic = unique_topic("quorum-everywhere")
    error, message = _create(nodes[2], topic, 3)
    assert error == 0, message
    # The proposer answers once its own shards serve the topic.
    assert _partitions(nodes[2], topic) == 3
    for node in nodes.values():
        wait_until(f"node {node.id} lists {topic}", lambda: _partitions(node, topic) == 3,
                   CONVERGE_TIMEOUT_S)
    answers = [cluster_wire.metadata(node) for node in nodes.values()]
    assert len({answer["cluster_id"] for answer in answers}) == 1, answers
    controllers = {answer["controller_id"] for answer in answers}
    assert len(controllers) == 1 and controllers <= set(nodes), answers
    # Created once: a second create through another broker finds it.
    assert _create(nodes[3], topic, 3)[0] == 36  # TOPIC_ALREADY_EXISTS


def test_losing_the_controller_elects_another_that_takes_changes(cluster):
    nodes = cluster.nodes
    wait_until("a controller", lambda: _controller(nodes[1]) in nodes, CONVERGE_TIMEOUT_S)
    old = _controller(nodes[1])
    nodes[old].kill9()
    others = [node for node in nodes.values() if node.id != old]
    wait_until("another controller",
               lambda: all(_controller(node) in set(nodes) - {old} for node in others),
               CONVERGE_TIMEOUT_S)
    topic = unique_topic("quorum-after-failover")
    error, message = _create(others[0], topic, 2)
    assert error == 0, message
    for node in others:
        wait_until(f"node {node.id} lists {topic}", lambda: _partitions(node, topic) == 2,
                   CONVERGE_TIMEOUT_S)
    # The old controller catches up when it returns.
    nodes[old].start()
    wait_until(f"node {old} lists {topic}", lambda: _partitions(nodes[old], topic) == 2,
               CONVERGE_TIMEOUT_S)
