"""Debian's kcat (librdkafka 2.0.2) against the broker: metadata, keyed produce with headers, read back."""

import json
import shutil
import subprocess

from e2e_util import run_sluice, unique_topic

KCAT = shutil.which("kcat") or "kcat"
KCAT_TIMEOUT_S = 30
PARTITIONS = 4
RECORDS_PER_PARTITION = 12
FORMAT = "%k|%s|%h|%p|%o\\n"


def kcat(*args, input_text=None):
    command = [KCAT, "-X", "broker.address.family=v4", "-X", "socket.timeout.ms=10000"] + list(args)
    try:
        result = subprocess.run(
            command, input=input_text if input_text is not None else "", capture_output=True, text=True,
            timeout=KCAT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"{command} did not finish in {KCAT_TIMEOUT_S}s; stderr: {error.stderr}")
    assert result.returncode == 0, f"{command} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result.stdout


def produce_partition(bootstrap, topic, partition, first, count):
    """kcat -P with -K: keys and -H headers, into one explicit partition."""
    lines = "".join(f"key-{partition}-{i}:value {partition}/{i} \u00fcn\u00efc\u00f6de\n" for i in range(first, first + count))
    kcat(
        "-P", "-b", bootstrap, "-t", topic, "-p", str(partition), "-K:",
        "-H", "origin=kcat", "-H", f"part={partition}",
        "-X", "acks=all", "-X", "linger.ms=5",
        input_text=lines,
    )


def expected_lines(partition, first, count):
    return [
        f"key-{partition}-{i}|value {partition}/{i} \u00fcn\u00efc\u00f6de|origin=kcat,part={partition}|{partition}|{i}"
        for i in range(first, first + count)
    ]


def consume_all(bootstrap, topic):
    out = kcat("-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", FORMAT)
    return out.splitlines()


def per_partition(lines):
    grouped = {}
    for line in lines:
        partition = int(line.split("|")[3])
        grouped.setdefault(partition, []).append(line)
    return grouped


def test_kcat_metadata_lists_broker_and_topic(broker):
    topic = unique_topic("kcat-meta")
    run_sluice(["topic", "create", topic, "--partitions", PARTITIONS, "-b", broker.bootstrap])
    metadata = json.loads(kcat("-L", "-J", "-b", broker.bootstrap))
    brokers = metadata["brokers"]
    assert len(brokers) == 1, brokers
    assert brokers[0]["name"] == f"{broker.host}:{broker.port}", brokers
    topics = {t["topic"]: t for t in metadata["topics"]}
    assert topic in topics, sorted(topics)
    partitions = sorted(topics[topic]["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in partitions] == list(range(PARTITIONS))
    for partition in partitions:
        assert partition["leader"] == brokers[0]["id"], partition
        assert "error" not in partition, partition

    # The same through the text listing, for one topic.
    text = kcat("-L", "-b", broker.bootstrap, "-t", topic)
    assert f"{broker.host}:{broker.port}" in text, text
    assert f'topic "{topic}" with {PARTITIONS} partitions' in text, text


def test_kcat_roundtrip_survives_restart(broker):
    topic = unique_topic("kcat")
    run_sluice(["topic", "create", topic, "--partitions", PARTITIONS, "-b", broker.bootstrap])
    for partition in range(PARTITIONS):
        produce_partition(broker.bootstrap, topic, partition, 0, RECORDS_PER_PARTITION)
    expected = {p: expected_lines(p, 0, RECORDS_PER_PARTITION) for p in range(PARTITIONS)}

    assert per_partition(consume_all(broker.bootstrap, topic)) == expected

    broker.restart()
    assert per_partition(consume_all(broker.bootstrap, topic)) == expected

    # Appends after the restart continue at the next offset.
    produce_partition(broker.bootstrap, topic, 1, RECORDS_PER_PARTITION, 3)
    expected[1] += expected_lines(1, RECORDS_PER_PARTITION, 3)
    assert per_partition(consume_all(broker.bootstrap, topic)) == expected
