"""Membership: every broker registers, and each one's Metadata lists all of them with their
advertised addresses and names the same controller (the metadata quorum's leader)."""

import subprocess

import cluster_wire
from clients import admin, kcat_metadata
from harness import SLUICE_BIN
from observe import expected_brokers, wait_agreement


def test_every_broker_lists_all_brokers_and_the_same_controller(shared_cluster):
    nodes = list(shared_cluster.nodes.values())
    controller = wait_agreement(shared_cluster)
    cluster_ids = {cluster_wire.metadata(node, topics=[])["cluster_id"] for node in nodes}
    assert len(cluster_ids) == 1 and None not in cluster_ids, cluster_ids

    # kcat (librdkafka) asking each broker alone sees the same.
    for node in nodes:
        seen = kcat_metadata(node.bootstrap)
        assert seen["originating_broker"]["id"] == node.id, seen["originating_broker"]
        assert seen["controllerid"] == controller
        assert {b["id"]: b["name"] for b in seen["brokers"]} == {
            n.id: n.bootstrap for n in nodes}

    # confluent-kafka bootstrapped at one broker learns every other one.
    metadata = admin(nodes[-1].bootstrap).list_topics(timeout=10)
    assert metadata.controller_id == controller
    assert {b.id: (b.host, b.port) for b in metadata.brokers.values()} == {
        node_id: (host, port) for node_id, (host, port, _) in expected_brokers(nodes).items()}


def _describe(node):
    """`sluice cluster describe` at `node`: (cluster id, controller id, {broker id: (address,
    state)})."""
    result = subprocess.run([str(SLUICE_BIN), "cluster", "describe", "--bootstrap-server", node.bootstrap],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    fields = [dict(part.split(": ", 1) for part in line.split("\t"))
              for line in result.stdout.splitlines() if ": " in line]
    head = next(f for f in fields if "ClusterId" in f)
    brokers = {int(f["Broker"]): (f["Address"], f["State"]) for f in fields if "Broker" in f}
    return head["ClusterId"], int(head["Controller"]), brokers


def test_describe_cluster_at_each_broker_agrees_with_metadata(shared_cluster):
    nodes = list(shared_cluster.nodes.values())
    controller = wait_agreement(shared_cluster)
    cluster_id = cluster_wire.metadata(nodes[0], topics=[])["cluster_id"]
    for node in nodes:
        assert _describe(node) == (cluster_id, controller, {
            n.id: (n.bootstrap, "live") for n in nodes}), f"asked node {node.id}"
