"""Power loss: the broker runs with `--simulate-power-loss`, so that cutting the power loses
every write not covered by a completed fdatasync (a kill -9 loses nothing that reached the
kernel). What Sluice acknowledged as durable must all come back: records produced with
acks=all, records of topics with flush.messages=1 or a short flush.ms, committed offsets,
created topics and changed configs. Records produced with acks=1 and no flush policy are
lost, which shows that the crash discards unsynced writes at all."""

import time

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

from conftest import BROKER_STOP_TIMEOUT_S, Broker, free_port
from e2e_util import (
    CLIENT_TIMEOUT_S,
    confluent_consumer,
    create_topic,
    produce_records,
    read_all,
    unique_topic,
    wait_for_partitions,
)

PARTITIONS = 2
RECORDS = 60
FLUSH_MS = 20
# flush.ms is a promise about time: after this long (many flush intervals) the flush task has
# synced what acks=1 stored, on a loaded machine too.
FLUSH_MS_GRACE_S = 1.0
GROUP = "power-loss-group"
RETENTION_MS = "123456789"


def cut_power(broker):
    """Creates the trigger file and waits for the broker to roll its files back and die."""
    (broker.data_dir / "power-loss").touch()
    code = broker.proc.wait(timeout=BROKER_STOP_TIMEOUT_S)
    assert code == -9, f"the broker exited with {code}, not by its own SIGKILL\n{broker.log_tail(40)}"
    broker.wait_port_released()


def create_topics(admin, bootstrap, configs_by_topic):
    new_topics = [NewTopic(topic, PARTITIONS, 1, config=configs) for topic, configs in configs_by_topic.items()]
    for future in admin.create_topics(new_topics, request_timeout=15).values():
        future.result(timeout=CLIENT_TIMEOUT_S)
    for topic in configs_by_topic:
        wait_for_partitions(bootstrap, topic, PARTITIONS, admin=admin)


def commit_offsets(bootstrap, topic):
    offsets = [TopicPartition(topic, p, 10 + p) for p in range(PARTITIONS)]
    consumer = confluent_consumer(bootstrap, **{"group.id": GROUP})
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
    finally:
        consumer.close()
    return {(tp.partition, tp.offset) for tp in offsets}


def committed_offsets(bootstrap, topic):
    consumer = confluent_consumer(bootstrap, **{"group.id": GROUP})
    try:
        committed = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)],
                                       timeout=CLIENT_TIMEOUT_S)
    finally:
        consumer.close()
    return {(tp.partition, tp.offset) for tp in committed}


def stored(bootstrap, topic):
    return [record[:4] for record in read_all(bootstrap, topic, PARTITIONS)]


def retention_ms(admin, topic):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(timeout=CLIENT_TIMEOUT_S)["retention.ms"].value


def test_what_was_acknowledged_as_durable_survives_a_power_loss(tmp_path):
    broker = Broker(tmp_path / "broker", free_port(), extra_args=["--simulate-power-loss"])
    try:
        broker.start()
        acks_all, messages, by_time, unsynced = (unique_topic(name) for name in
                                                 ("acks-all", "flush-messages", "flush-ms", "acks-1"))
        admin = create_topic(broker.bootstrap, acks_all, PARTITIONS)
        create_topics(admin, broker.bootstrap, {
            messages: {"flush.messages": "1"},
            by_time: {"flush.ms": str(FLUSH_MS)},
            unsynced: {},
        })
        change = ConfigResource(ResourceType.TOPIC, acks_all, incremental_configs=[
            ConfigEntry("retention.ms", RETENTION_MS, incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([change])[change].result(timeout=CLIENT_TIMEOUT_S)

        produced = {
            acks_all: produce_records(broker.bootstrap, acks_all, RECORDS, PARTITIONS, "all"),
            messages: produce_records(broker.bootstrap, messages, RECORDS, PARTITIONS, "m", acks="1"),
            by_time: produce_records(broker.bootstrap, by_time, RECORDS, PARTITIONS, "t", acks="1"),
        }
        produce_records(broker.bootstrap, unsynced, RECORDS, PARTITIONS, "u", acks="1")
        committed = commit_offsets(broker.bootstrap, acks_all)
        time.sleep(FLUSH_MS_GRACE_S)  # see FLUSH_MS_GRACE_S: the property itself is about time

        cut_power(broker)
        broker.start()

        survived = {
            "acks=all records": stored(broker.bootstrap, acks_all) == produced[acks_all],
            "flush.messages=1 records": stored(broker.bootstrap, messages) == produced[messages],
            "flush.ms records": stored(broker.bootstrap, by_time) == produced[by_time],
            "committed offsets": committed_offsets(broker.bootstrap, acks_all) == committed,
            "changed config": retention_ms(admin, acks_all) == RETENTION_MS,
        }
        assert survived == {name: True for name in survived}
        # The control: what nothing synced is gone, so the crash did discard unsynced writes.
        assert len(read_all(broker.bootstrap, unsynced, PARTITIONS)) < RECORDS
        broker.assert_running()
    finally:
        problem = broker.close()
    assert problem is None, problem
