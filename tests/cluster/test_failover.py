"""Controller failover: kill -9 the active controller (the metadata quorum's leader); the others
elect a new one and accept metadata changes again within a few seconds, and the killed node,
restarted on its data directory, catches up on what changed while it was down."""

import time

from confluent_kafka import KafkaError, KafkaException

import cluster_wire
from clients import create_topic, unique_topic
from harness import wait_until
from observe import partitions_of, wait_agreement, wait_led

# "Within a few seconds": raft elections take about a second; this bounds election, the new
# controller's first commit and the client's retries on a loaded CI machine.
FAILOVER_TIMEOUT_S = 15.0


def test_kill9_of_the_controller_elects_another_and_the_node_catches_up(cluster):
    old_id = wait_agreement(cluster)
    old = cluster.node(old_id)
    others = [node for node in cluster.nodes.values() if node.id != old_id]

    old.kill9()
    killed_at = time.monotonic()
    # Survivors name a new controller; the dead broker may stay listed until it is fenced.
    new_id = wait_until("a new controller named by both survivors",
                        lambda: _controller_among(others), FAILOVER_TIMEOUT_S)
    elected_s = time.monotonic() - killed_at

    topic = unique_topic("failover")
    bootstrap = ",".join(node.bootstrap for node in others)
    wait_until(f"CreateTopics {topic} succeeding", lambda: _created(bootstrap, topic),
               FAILOVER_TIMEOUT_S, interval_s=0.2)
    created_s = time.monotonic() - killed_at
    print(f"\ncontroller {old_id} killed: node {new_id} named controller after {elected_s:.2f}s, "
          f"CreateTopics succeeded after {created_s:.2f}s")
    for node in others:
        wait_led(node, topic, 3)

    old.start()
    wait_led(old, topic, 3)
    wait_until(f"node {old_id} seeing {topic} as the others do",
               lambda: partitions_of(old, topic) == partitions_of(others[0], topic), timeout_s=20)
    wait_agreement(cluster)


def _controller_among(nodes):
    """The controller id that every node of `nodes` names, if they agree on one of them."""
    named = {cluster_wire.metadata(node, topics=[])["controller_id"] for node in nodes}
    if len(named) == 1 and named <= {node.id for node in nodes}:
        return named.pop()
    return None


def _created(bootstrap, topic):
    """Try CreateTopics through confluent-kafka once: True once the topic exists (created now
    or by an earlier attempt whose answer was lost)."""
    try:
        create_topic(bootstrap, topic, partitions=3, replication_factor=2, timeout_s=4)
        return True
    except KafkaException as error:
        if error.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
            return True
        raise
