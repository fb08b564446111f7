"""Real Kafka clients (confluent-kafka, kafka-python, kcat) pointed at a test cluster, every call
bounded in time."""

import json
import subprocess
import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import ClusterError

# Bound of one client operation.
CLIENT_TIMEOUT_S = 20.0


def unique_topic(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def confluent_config(bootstrap, **extra):
    config = {
        "bootstrap.servers": bootstrap,
        "broker.address.family": "v4",
        "socket.timeout.ms": 10000,
        "reconnect.backoff.ms": 50,
        "reconnect.backoff.max.ms": 1000,
        "topic.metadata.refresh.interval.ms": 1000,
    }
    config.update(extra)
    return config


def admin(bootstrap):
    return AdminClient(confluent_config(bootstrap))


def create_topic(bootstrap, topic, partitions, replication_factor, timeout_s=CLIENT_TIMEOUT_S):
    """CreateTopics through confluent-kafka's AdminClient (it sends it to the controller)."""
    client = admin(bootstrap)  # held until the result: a destroyed client fails its futures
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor)],
        request_timeout=timeout_s / 2, operation_timeout=timeout_s / 2)
    futures[topic].result(timeout=timeout_s)


def produce(bootstrap, topic, records, timeout_s=CLIENT_TIMEOUT_S):
    """Produce [(partition, key, value)] with acks=all and wait for every delivery; returns
    {(partition, key): offset}."""
    producer = Producer(confluent_config(bootstrap, acks="all", **{"linger.ms": 5},
                                         **{"message.timeout.ms": int(timeout_s * 1000)}))
    delivered, errors = {}, []

    def on_delivery(error, message):
        if error is not None:
            errors.append(error)
        else:
            delivered[(message.partition(), message.key())] = message.offset()

    for partition, key, value in records:
        producer.produce(topic, value=value, key=key, partition=partition, on_delivery=on_delivery)
    remaining = producer.flush(timeout_s)
    if errors or remaining:
        raise ClusterError(f"produce: {len(errors)} errors ({errors[:3]}), {remaining} undelivered")
    return delivered


def read_all(bootstrap, topic, partitions, expect_count, timeout_s=CLIENT_TIMEOUT_S):
    """Read every partition from the beginning with assign() until `expect_count` records came
    and each partition reached its end; returns [(partition, offset, key, value)]."""
    consumer = Consumer(confluent_config(
        bootstrap, **{"group.id": "sluice-cluster-unused", "enable.auto.commit": False,
                      "enable.partition.eof": True, "auto.offset.reset": "earliest"}))
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        records, at_end = [], set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                continue
            if message.error() is not None:
                if message.error().code() != KafkaError._PARTITION_EOF:
                    raise ClusterError(f"consume error: {message.error()}")
                at_end.add(message.partition())
                if len(at_end) == partitions and len(records) >= expect_count:
                    return sorted(records)
                continue
            at_end.discard(message.partition())
            records.append((message.partition(), message.offset(), message.key(), message.value()))
        raise ClusterError(f"read {len(records)} of {expect_count} records of {topic} within {timeout_s}s")
    finally:
        consumer.close()


def kcat_metadata(bootstrap, timeout_s=CLIENT_TIMEOUT_S):
    """`kcat -L -J` against `bootstrap`: kcat's own parse of a Metadata response."""
    result = subprocess.run(["kcat", "-L", "-J", "-b", bootstrap, "-m", str(int(timeout_s / 2)),
                             "-X", "broker.address.family=v4"],
                            capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        raise ClusterError(f"kcat -L exited {result.returncode}: {result.stderr.strip()}")
    return json.loads(result.stdout)
