"""Compressed batches and acks=0.

Every codec (gzip, snappy, lz4, zstd) from kcat, confluent-kafka and Sluice's own batching
producer (driven by sluice-bench), read back identical with kafka-python (which decompresses on
its own) and kcat. The segment files must hold the batches as produced, still compressed with
the producer's codec. One partition holding batches of every codec reads back whole with
confluent-kafka and kafka-python, also from an offset in the middle of a compressed batch, and
with KafkaJS (gzip: its only built-in codec). acks=0 gets no response at all and leaves the
connection usable.
"""

import json
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka import TopicPartition as ConfluentTopicPartition
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

import kafka_wire
from conftest import REPO_ROOT
from e2e_util import (
    CLIENT_TIMEOUT_S,
    confluent_base_config,
    confluent_consumer,
    create_topic,
    read_all,
    run_sluice,
    unique_topic,
    wait_until,
)
from test_groups_kafkajs import run_group_consume
from test_kcat import kcat

CODECS = ["gzip", "snappy", "lz4", "zstd"]
# RecordBatch attributes bits 0-2.
CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
BENCH_BIN = REPO_ROOT / "target" / "release" / "sluice-bench"
BENCH_TIMEOUT_S = 60
PARTITIONS = 3
RECORDS = 600


def filler(i):
    """Compressible, but different for every record."""
    return f"record {i:06d} " + "sluice " * (5 + i % 20)


def kafka_python_read(bootstrap, topic, partitions, count):
    """Every record of the topic through kafka-python: [(partition, offset, key, value, headers)]."""
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=15000,
        fetch_max_wait_ms=100,
    )
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning()
        records = []
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                for r in batch:
                    records.append((r.partition, r.offset, r.key, r.value, [(k, v) for k, v in r.headers]))
        assert len(records) == count, f"kafka-python read {len(records)} of {count} records"
        return sorted(records, key=lambda r: (r[0], r[1]))
    finally:
        consumer.close(autocommit=False)


def kcat_read(bootstrap, topic):
    """Every record through kcat, as (partition, offset, key, value) with text keys and values."""
    out = kcat("-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p|%o|%k|%s\\n")
    records = []
    for line in out.splitlines():
        partition, offset, key, value = line.split("|", 3)
        records.append((int(partition), int(offset), key.encode(), value.encode()))
    return sorted(records)


def stored_batches(broker, topic, partition):
    """(base offset, record count, codec) of every batch of a partition, read from its segment
    files in offset order."""
    batches = []
    directory = Path(broker.data_dir) / f"{topic}-{partition}"
    for segment in sorted(directory.glob("*.log"), key=lambda path: int(path.stem)):
        data = segment.read_bytes()
        position = 0
        while position + 27 <= len(data):
            (base_offset, batch_length) = struct.unpack(">qi", data[position:position + 12])
            if batch_length <= 0:
                break  # Zero padding after the last batch.
            (attributes, last_offset_delta) = struct.unpack(">hi", data[position + 21:position + 27])
            batches.append((base_offset, last_offset_delta + 1, attributes & 0x7))
            position += 12 + batch_length
    return batches


def stored_codecs(broker, topic, partitions):
    """The compression codec of every batch in the topic's segment files, read from disk."""
    return [codec for partition in range(partitions) for _, _, codec in stored_batches(broker, topic, partition)]


def assert_stored_with(broker, topic, partitions, codec):
    codecs = stored_codecs(broker, topic, partitions)
    assert codecs, "no batch on disk"
    assert set(codecs) == {CODEC_IDS[codec]}, f"batches stored with codecs {sorted(set(codecs))}, not {codec}"


def assert_partition_order(records):
    """Record indexes (from the keys) rise within every partition: produced in order."""
    last = {}
    for partition, _offset, key, *_ in records:
        index = int(key.decode().rsplit("-", 1)[1])
        assert index > last.get(partition, -1), f"partition {partition}: {index} after {last[partition]}"
        last[partition] = index


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_compressed_batches_read_back(broker, codec):
    topic = unique_topic(f"kcat-{codec}")
    run_sluice(["topic", "create", topic, "--partitions", PARTITIONS, "-b", broker.bootstrap])
    lines = "".join(f"key-{i}:{filler(i)}\n" for i in range(RECORDS))
    kcat("-P", "-b", broker.bootstrap, "-t", topic, "-K:", "-z", codec,
         "-X", "acks=all", "-X", "linger.ms=20", "-X", "partitioner=murmur2_random", input_text=lines)
    by_python = kafka_python_read(broker.bootstrap, topic, PARTITIONS, RECORDS)
    expected = {(f"key-{i}".encode(), filler(i).encode()) for i in range(RECORDS)}
    assert {(key, value) for _, _, key, value, _ in by_python} == expected
    assert_partition_order(by_python)
    for partition, _, key, _, _ in by_python:
        # librdkafka's murmur2_random is the Java partitioner; kafka-python has its own murmur2.
        assert partition == (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
    by_kcat = kcat_read(broker.bootstrap, topic)
    assert by_kcat == [(p, o, k, v) for p, o, k, v, _ in by_python]
    assert_stored_with(broker, topic, PARTITIONS, codec)


@pytest.mark.parametrize("codec", CODECS)
def test_confluent_compressed_batches_read_back(broker, codec):
    topic = unique_topic(f"confluent-{codec}")
    run_sluice(["topic", "create", topic, "--partitions", PARTITIONS, "-b", broker.bootstrap])
    config = confluent_base_config(broker.bootstrap)
    config.update({"acks": "all", "compression.type": codec, "linger.ms": 20, "message.timeout.ms": 15000})
    producer = Producer(config)
    reports = []
    for i in range(RECORDS):
        producer.produce(topic, key=f"key-{i}".encode(), value=filler(i).encode(), partition=i % PARTITIONS,
                         headers=[("index", str(i).encode())], on_delivery=lambda e, m: reports.append((e, m)))
    assert producer.flush(CLIENT_TIMEOUT_S) == 0, "not every record was delivered"
    assert all(error is None for error, _ in reports), [e for e, _ in reports if e][:3]
    delivered = sorted((m.partition(), m.offset(), m.key(), m.value(), [("index", m.key()[4:])])
                       for _, m in reports)
    by_python = kafka_python_read(broker.bootstrap, topic, PARTITIONS, RECORDS)
    assert by_python == delivered
    by_kcat = kcat_read(broker.bootstrap, topic)
    assert by_kcat == [(p, o, k, v) for p, o, k, v, _ in by_python]
    assert_stored_with(broker, topic, PARTITIONS, codec)


def run_bench(args):
    command = [str(BENCH_BIN)] + [str(arg) for arg in args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=BENCH_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"{command} did not finish in {BENCH_TIMEOUT_S}s; stderr: {error.stderr}")
    assert result.returncode == 0, f"{command} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.parametrize("codec", ["none"] + CODECS)
def test_native_producer_compressed_batches_read_back(broker, codec, tmp_path):
    """sluice-bench's batching producer: its consumers verify every record (lost, duplicated,
    reordered all zero), kafka-python reads the same records, and keyed records sit in the Java
    partitioner's partition."""
    topic = unique_topic(f"native-{codec}")
    records = 20_000
    report_path = tmp_path / "report.json"
    run_bench(["--bootstrap", broker.bootstrap, "--topic", topic, "--partitions", PARTITIONS,
               "--workload", "e2e", "--records", records, "--record-size", "64..300",
               "--compression", codec, "--keys", "random:50", "--acks", "all",
               "--batch-bytes", 16384, "--linger-ms", 2, "--json", report_path])
    report = json.loads(report_path.read_text())
    verify = report["consume"]["verify"]
    assert (verify["lost"], verify["duplicated"], verify["reordered"]) == (0, 0, 0), verify
    assert report["consume"]["throughput"]["records"] == records
    assert report["produce"]["batches"] < records / 10, "records went out in batches"
    for plot in ("report-latency.svg", "report-throughput.svg"):
        assert (tmp_path / plot).read_text().startswith("<svg"), plot
    by_python = kafka_python_read(broker.bootstrap, topic, PARTITIONS, records)
    for partition, _offset, key, value, _ in by_python:
        assert value.startswith(b"SLBV"), value[:8]
        assert 64 <= len(value) <= 300
        assert partition == (murmur2(key) & 0x7FFFFFFF) % PARTITIONS, key
    assert_stored_with(broker, topic, PARTITIONS, codec)


def test_acks_zero_gets_no_response_and_keeps_the_connection(broker):
    topic = unique_topic("acks0")
    run_sluice(["topic", "create", topic, "--partitions", 1, "-b", broker.bootstrap])
    sock = kafka_wire.connect(broker)
    try:
        for i in range(3):
            batch = kafka_wire.record_batch([(f"k{i}".encode(), f"fire-and-forget {i}".encode())], 1_700_000_000_000)
            sock.sendall(kafka_wire.produce_v3_request(10 + i, topic, 0, batch, acks=0))
        # The next answer on the connection belongs to the next request: nothing for acks=0.
        sock.sendall(kafka_wire.api_versions_request(20, 0))
        correlation_id, error_code, _ = kafka_wire.parse_api_versions_v0_response(kafka_wire.read_response(sock))
        assert (correlation_id, error_code) == (20, 0)
        batch = kafka_wire.record_batch([(b"k3", b"acknowledged 3")], 1_700_000_000_000)
        sock.sendall(kafka_wire.produce_v3_request(21, topic, 0, batch, acks=1))
        correlation_id, results, _ = kafka_wire.parse_produce_v3_response(kafka_wire.read_response(sock))
        assert correlation_id == 21
        assert [(partition, error, offset) for _, partition, error, offset, _ in results] == [(0, 0, 3)]
        # Silence after the last answer: no late response to the acks=0 requests.
        sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            sock.recv(1)
    finally:
        sock.close()
    values = [value for *_, value, _ in kafka_python_read(broker.bootstrap, topic, 1, 4)]
    assert values == [b"fire-and-forget 0", b"fire-and-forget 1", b"fire-and-forget 2", b"acknowledged 3"]


def test_kcat_acks_zero_compressed(broker):
    topic = unique_topic("kcat-acks0")
    run_sluice(["topic", "create", topic, "--partitions", 1, "-b", broker.bootstrap])
    lines = "".join(f"key-{i}:{filler(i)}\n" for i in range(RECORDS))
    kcat("-P", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-K:", "-z", "lz4",
         "-X", "acks=0", "-X", "linger.ms=5", input_text=lines)
    # Nothing acknowledges the records: wait until they are all readable.
    wait_until(lambda: len(kcat_read(broker.bootstrap, topic)) == RECORDS, CLIENT_TIMEOUT_S,
               lambda: f"{len(kcat_read(broker.bootstrap, topic))} of {RECORDS} records stored")
    records = kafka_python_read(broker.bootstrap, topic, 1, RECORDS)
    assert [(key, value) for _, _, key, value, _ in records] == [
        (f"key-{i}".encode(), filler(i).encode()) for i in range(RECORDS)
    ]
    assert_stored_with(broker, topic, 1, "lz4")


RECORDS_PER_CODEC = 40


def produce_with_codecs(bootstrap, topic, codecs):
    """RECORDS_PER_CODEC records per codec into partition 0, one producer (and one flush) per
    codec in the given order; returns the delivered [(partition, offset, key, value)]."""
    delivered = []
    for number, codec in enumerate(codecs):
        config = confluent_base_config(bootstrap)
        config.update({"acks": "all", "compression.type": codec, "linger.ms": 50, "message.timeout.ms": 15000})
        producer = Producer(config)
        reports = []
        for i in range(number * RECORDS_PER_CODEC, (number + 1) * RECORDS_PER_CODEC):
            producer.produce(topic, key=f"key-{i}".encode(), value=filler(i).encode(), partition=0,
                             on_delivery=lambda e, m: reports.append((e, m)))
        assert producer.flush(CLIENT_TIMEOUT_S) == 0, f"not every {codec} record was delivered"
        assert all(error is None for error, _ in reports), [e for e, _ in reports if e][:3]
        delivered += [(m.partition(), m.offset(), m.key(), m.value()) for _, m in reports]
    return sorted(delivered)


def confluent_read_from(bootstrap, topic, offset, count):
    consumer = confluent_consumer(bootstrap)
    try:
        consumer.assign([ConfluentTopicPartition(topic, 0, offset)])
        records = []
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while len(records) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                records.append((message.partition(), message.offset(), message.key(), message.value()))
        return records
    finally:
        consumer.close()


def kafka_python_read_from(bootstrap, topic, offset, count):
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=15000, fetch_max_wait_ms=100)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        consumer.seek(TopicPartition(topic, 0), offset)
        records = []
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while len(records) < count and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records += [(r.partition, r.offset, r.key, r.value) for r in batch]
        return records
    finally:
        consumer.close(autocommit=False)


def test_every_codec_in_one_partition_reads_back_also_from_inside_a_batch(broker):
    topic = unique_topic("mixed-codecs")
    create_topic(broker.bootstrap, topic, 1)
    codecs = ["none"] + CODECS
    delivered = produce_with_codecs(broker.bootstrap, topic, codecs)
    batches = stored_batches(broker, topic, 0)
    assert [codec for _, _, codec in batches] == sorted(codec for _, _, codec in batches), batches
    assert {codec for _, _, codec in batches} == {CODEC_IDS[codec] for codec in codecs}, batches

    assert [record[:4] for record in read_all(broker.bootstrap, topic, 1)] == delivered
    assert [record[:4] for record in kafka_python_read(broker.bootstrap, topic, 1, len(delivered))] == delivered
    # From the second record of each compressed batch: the broker serves the whole batch, and
    # the client skips the records before the offset it asked for.
    for base_offset, count, codec in batches:
        if codec == CODEC_IDS["none"] or count < 2:
            continue
        expected = delivered[base_offset + 1:]
        by_confluent = confluent_read_from(broker.bootstrap, topic, base_offset + 1, len(expected))
        by_python = kafka_python_read_from(broker.bootstrap, topic, base_offset + 1, len(expected))
        assert by_confluent == expected, f"confluent-kafka from {base_offset + 1} (codec {codec})"
        assert by_python == expected, f"kafka-python from {base_offset + 1} (codec {codec})"


def test_kafkajs_reads_gzip_and_uncompressed_batches_of_one_partition(broker):
    topic = unique_topic("js-gzip")
    create_topic(broker.bootstrap, topic, 1)
    delivered = produce_with_codecs(broker.bootstrap, topic, ["none", "gzip", "none", "gzip"])
    assert {codec for _, _, codec in stored_batches(broker, topic, 0)} == {0, CODEC_IDS["gzip"]}
    out = run_group_consume(broker.bootstrap, topic, unique_topic("js-gzip-g"), len(delivered))
    consumed = sorted((m["partition"], m["offset"], m["key"].encode(), m["value"].encode())
                      for m in out["messages"])
    assert consumed == delivered
