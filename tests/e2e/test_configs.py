"""Topic configs changed at run time with AlterConfigs and IncrementalAlterConfigs, seen by
DescribeConfigs, kept across a restart, and refused when invalid."""

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewTopic,
    ResourceType,
)

from e2e_util import create_topic, unique_topic

TIMEOUT_S = 15


def describe(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)
    return {name: entry.value for name, entry in entries.items()}


def test_incremental_and_full_alter_configs(broker):
    topic = unique_topic("configs")
    create_topic(broker.bootstrap, topic, 1)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert describe(admin, topic)["retention.ms"] == "604800000"

    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ])
    admin.incremental_alter_configs([resource])[resource].result(timeout=TIMEOUT_S)
    configs = describe(admin, topic)
    assert configs["retention.ms"] == "3600000"
    assert configs["cleanup.policy"] == "delete,compact"

    delete = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    admin.incremental_alter_configs([delete])[delete].result(timeout=TIMEOUT_S)
    assert describe(admin, topic)["retention.ms"] == "604800000"

    bad = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET),
    ])
    with pytest.raises(KafkaException) as refused:
        admin.incremental_alter_configs([bad])[bad].result(timeout=TIMEOUT_S)
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG, refused.value
    assert describe(admin, topic)["retention.ms"] == "604800000"

    # AlterConfigs replaces every explicit config.
    full = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.bytes": "1048576"})
    admin.alter_configs([full])[full].result(timeout=TIMEOUT_S)
    configs = describe(admin, topic)
    assert configs["retention.bytes"] == "1048576"
    assert configs["cleanup.policy"] == "delete"

    broker.restart()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert describe(admin, topic)["retention.bytes"] == "1048576"


def test_segment_bytes_below_kafkas_minimum_is_refused(broker):
    """Kafka 4.0 refuses segment.bytes below 1 MiB: a tiny value (14 made every batch a new
    segment file, one descriptor each) fails CreateTopics and AlterConfigs with INVALID_CONFIG."""
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    tiny = unique_topic("tiny-segments")
    futures = admin.create_topics([NewTopic(tiny, 1, 1, config={"segment.bytes": "14"})])
    error = futures[tiny].exception(timeout=TIMEOUT_S)
    assert error is not None and error.args[0].code() == KafkaError.INVALID_CONFIG, error

    topic = unique_topic("segments")
    create_topic(broker.bootstrap, topic, 1)
    for alter in (
        lambda: admin.alter_configs([ConfigResource(ResourceType.TOPIC, topic, set_config={"segment.bytes": "14"})]),
        lambda: admin.incremental_alter_configs([ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry("segment.bytes", "14", incremental_operation=AlterConfigOpType.SET)])]),
    ):
        error = next(iter(alter().values())).exception(timeout=TIMEOUT_S)
        assert error is not None and error.args[0].code() == KafkaError.INVALID_CONFIG, error
    assert describe(admin, topic)["segment.bytes"] == "1073741824"

    # Kafka's minimum itself is accepted.
    minimum = ConfigResource(ResourceType.TOPIC, topic, set_config={"segment.bytes": "1048576"})
    admin.alter_configs([minimum])[minimum].result(timeout=TIMEOUT_S)
    assert describe(admin, topic)["segment.bytes"] == "1048576"


def test_every_kafka_topic_config_is_accepted_and_described(broker):
    """Kafka's topic configs beyond those Sluice acts on are accepted, validated and reported
    with their defaults; one Kafka 4.0 removed is accepted and dropped (librdkafka 0081, 0092)."""
    topic = unique_topic("allconfigs")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    new = NewTopic(topic, num_partitions=1, config={"delete.retention.ms": "1000"})
    admin.create_topics([new])[topic].result(timeout=TIMEOUT_S)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=TIMEOUT_S)
    assert entries["delete.retention.ms"].value == "1000"
    assert entries["delete.retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert entries["min.cleanable.dirty.ratio"].value == "0.5"
    assert entries["min.cleanable.dirty.ratio"].source == ConfigSource.DEFAULT_CONFIG.value

    # Write every described config back, as tools do, plus one Kafka 4.0 removed.
    written = {name: entry.value for name, entry in entries.items()}
    written["message.format.version"] = "0.10.0.0"
    full = ConfigResource(ResourceType.TOPIC, topic, set_config=written)
    admin.alter_configs([full])[full].result(timeout=TIMEOUT_S)
    configs = describe(admin, topic)
    assert "message.format.version" not in configs
    assert configs["delete.retention.ms"] == "1000"

    bad = ConfigResource(ResourceType.TOPIC, topic, set_config={"min.cleanable.dirty.ratio": "2"})
    try:
        admin.alter_configs([bad])[bad].result(timeout=TIMEOUT_S)
        raise AssertionError("an out-of-range value was accepted")
    except KafkaException as error:
        assert error.args[0].code() == KafkaError.INVALID_CONFIG, error
