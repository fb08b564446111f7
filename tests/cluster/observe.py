"""What the cluster's brokers say about it (Metadata asked of each broker), with bounded waits."""

import cluster_wire
from harness import KAFKA_PORT, wait_until

# How long a formed cluster may take to agree on its brokers and controller (after a start, a
# restart or a heal: elections, registrations and metadata propagation).
AGREEMENT_TIMEOUT_S = 30.0


def expected_brokers(nodes):
    """Metadata's broker entries for `nodes`: {id: (host, port, rack)}."""
    return {node.id: (node.host, KAFKA_PORT, None) for node in nodes}


def agreement(askers, listed):
    """If every node of `askers` lists exactly the brokers `listed` and names one controller
    among them, that controller id; else None."""
    expected = expected_brokers(listed)
    controllers = set()
    for node in askers:
        answer = cluster_wire.metadata(node, topics=[])
        if answer["brokers"] != expected:
            return None
        controllers.add(answer["controller_id"])
    if len(controllers) == 1 and controllers <= set(expected):
        return controllers.pop()
    return None


def wait_agreement(cluster, askers=None, listed=None, timeout_s=AGREEMENT_TIMEOUT_S):
    """Wait until the running nodes (or `askers`) list `listed` (default: the running nodes) and
    agree on a controller; return its id."""
    askers = askers or cluster.running()
    listed = listed or cluster.running()
    return wait_until(
        f"nodes {[n.id for n in askers]} listing brokers {[n.id for n in listed]} with one controller",
        lambda: agreement(askers, listed), timeout_s)


def partitions_of(node, topic):
    """{index: {error, leader, leader_epoch, replicas, isr, offline}} of `topic` as `node` sees
    it, or None if it does not know the topic."""
    entry = cluster_wire.metadata(node, [topic])["topics"].get(topic)
    if entry is None or entry["error"] != cluster_wire.ERROR_NONE:
        return None
    return entry["partitions"]


def wait_led(node, topic, partitions, timeout_s=AGREEMENT_TIMEOUT_S):
    """Wait until `node` shows `topic` with `partitions` partitions, each with a leader."""
    def led():
        found = partitions_of(node, topic)
        if found and len(found) == partitions and all(p["leader"] >= 0 for p in found.values()):
            return found
        return None
    return wait_until(f"node {node.id} showing {topic} with {partitions} led partitions", led, timeout_s)
