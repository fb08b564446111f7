"""Membership: every broker registers, and each one's Metadata lists all of them with their
advertised addresses and names the same controller (the metadata quorum's leader)."""

import cluster_wire
from clients import admin, kcat_metadata
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
