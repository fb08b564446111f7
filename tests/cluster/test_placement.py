"""Placement: replication factors up to the live brokers, replicas and leaders spread evenly,
`__consumer_offsets` with RF min(3, brokers)."""

from collections import Counter

import pytest
from confluent_kafka import KafkaError, KafkaException
from kafka.admin import KafkaAdminClient, NewTopic

import cluster_wire
from clients import create_topic, unique_topic
from observe import partitions_of, wait_led


def test_rf3_spreads_leaders_and_replicas_over_all_brokers(shared_cluster):
    nodes = list(shared_cluster.nodes.values())
    topic = unique_topic("placement-rf3")
    create_topic(shared_cluster.bootstrap(), topic, partitions=6, replication_factor=3)
    for node in nodes:
        partitions = wait_led(node, topic, 6)
        for index, p in partitions.items():
            assert sorted(p["replicas"]) == [1, 2, 3], (index, p)
            assert sorted(p["isr"]) == [1, 2, 3], (index, p)
            assert p["leader"] == p["replicas"][0], f"partition {index}: the preferred leader leads: {p}"
        assert Counter(p["leader"] for p in partitions.values()) == {1: 2, 2: 2, 3: 2}, partitions
        # Every position of the replica lists is spread too, not only the first.
        for position in range(3):
            assert Counter(p["replicas"][position] for p in partitions.values()) == {1: 2, 2: 2, 3: 2}


def test_rf2_through_kafka_python_spreads_replicas(shared_cluster):
    topic = unique_topic("placement-rf2")
    client = KafkaAdminClient(bootstrap_servers=shared_cluster.bootstrap(), request_timeout_ms=15000)
    try:
        client.create_topics([NewTopic(topic, num_partitions=6, replication_factor=2)], timeout_ms=15000)
    finally:
        client.close()
    partitions = wait_led(shared_cluster.node(1), topic, 6)
    assert all(len(set(p["replicas"])) == 2 for p in partitions.values()), partitions
    assert Counter(b for p in partitions.values() for b in p["replicas"]) == {1: 4, 2: 4, 3: 4}
    assert Counter(p["leader"] for p in partitions.values()) == {1: 2, 2: 2, 3: 2}, partitions


def test_rf4_is_invalid_replication_factor(shared_cluster):
    topic = unique_topic("placement-rf4")
    with pytest.raises(KafkaException) as raised:
        create_topic(shared_cluster.bootstrap(), topic, partitions=1, replication_factor=4)
    assert raised.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR, raised.value
    for node in shared_cluster.nodes.values():
        answer = cluster_wire.create_topics(node, [(topic, 1, 4)])
        assert answer[topic][0] == cluster_wire.ERROR_INVALID_REPLICATION_FACTOR, (node.id, answer)
        assert partitions_of(node, topic) is None


def test_consumer_offsets_has_rf3(shared_cluster):
    for node in shared_cluster.nodes.values():
        partitions = wait_led(node, "__consumer_offsets", 50)
        for index, p in partitions.items():
            assert sorted(p["replicas"]) == [1, 2, 3], (index, p)
        leaders = Counter(p["leader"] for p in partitions.values())
        assert set(leaders) == {1, 2, 3} and max(leaders.values()) - min(leaders.values()) <= 1, leaders
