"""The data directory: start-up deletes nothing it does not own, and a full or read-only disk is
handled (refused at start, or recovered from through the API without a restart).

Needs root for mounts (a read-only bind mount, a loop-mounted small ext4 image), as CI has.
"""

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from conftest import SLUICE_BIN, Broker, free_port
from e2e_util import (
    CLIENT_TIMEOUT_S,
    confluent_base_config,
    confluent_consumer,
    create_topic,
    produce_records,
    read_all,
)

# A start-up that refuses to run must say so within this long, not hang or start listening.
REFUSAL_TIMEOUT_S = 20.0
# The loop-mounted file system: small enough to fill in a second or two.
IMAGE_BYTES = 40 << 20
# Small segments and records, so that filling the image takes a few round trips.
SEGMENT_BYTES = 1 << 20
FILL_RECORD_BYTES = 128 << 10
FILL_RECORDS_PER_ROUND = 16
# More rounds than the image can take: filling must end with KAFKA_STORAGE_ERROR before this.
FILL_ROUNDS_MAX = 2 * IMAGE_BYTES // (FILL_RECORD_BYTES * FILL_RECORDS_PER_ROUND)
KEEP_RECORDS = 20
OFFSETS_PARTITIONS = 50


def run(*command):
    subprocess.run([str(part) for part in command], check=True, capture_output=True, timeout=60)


def unmount(mountpoint):
    """Unmount, lazily if something still holds the file system (never leaves a mount behind)."""
    if subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=60).returncode != 0:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=60)


def serve(data_dir, timeout_s=REFUSAL_TIMEOUT_S):
    """Runs `sluice serve` expecting it to refuse to start; returns (exit code, output)."""
    command = [str(SLUICE_BIN), "serve", "--data-dir", str(data_dir), "--listen", f"127.0.0.1:{free_port()}",
               "--shards", "2"]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                                env={**os.environ, "RUST_BACKTRACE": "0"})
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"sluice serve on {data_dir} still ran after {timeout_s}s: {error.stderr}")
    return result.returncode, result.stdout + result.stderr


def segment_files(data_dir):
    return sorted(str(p.relative_to(data_dir)) for p in Path(data_dir).glob("*/*.log"))


def test_foreign_directories_survive_start(tmp_path):
    """A data directory without metadata or partition data (a first start) holding directories
    named like partitions: the broker starts and leaves them alone."""
    broker = Broker(tmp_path / "broker", free_port())
    notes = broker.data_dir / "notes-1"
    backup = broker.data_dir / "backup-2024"
    for directory in (notes, backup):
        directory.mkdir(parents=True)
        (directory / "keep.txt").write_text("not the broker's")
    try:
        broker.start()
        assert any((broker.data_dir / "meta" / "quorum").iterdir())
        broker.restart()
        assert (notes / "keep.txt").read_text() == "not the broker's"
        assert (backup / "keep.txt").read_text() == "not the broker's"
    finally:
        problem = broker.close()
    assert problem is None, problem


def test_missing_metadata_with_partition_data_is_refused(broker):
    topic = f"kept-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 2)
    produce_records(broker.bootstrap, topic, 10, 2, "kept")
    broker.kill9()
    before = segment_files(broker.data_dir)
    assert any(name.startswith(f"{topic}-") for name in before), before
    shutil.rmtree(broker.data_dir / "meta" / "quorum")

    code, output = serve(broker.data_dir)

    assert code != 0, output
    assert "quorum" in output and "partition" in output, output
    assert segment_files(broker.data_dir) == before
    assert not any((broker.data_dir / "meta" / "quorum").glob("log-*"))


@pytest.fixture
def read_only_mount():
    """Makes directories read-only with a bind mount; undoes every mount at teardown."""
    mounted = []

    def make_read_only(directory):
        run("mount", "--bind", directory, directory)
        mounted.append(directory)
        run("mount", "-o", "remount,bind,ro", directory)

    yield make_read_only
    for directory in reversed(mounted):
        unmount(directory)


def test_read_only_data_directory_fails_fast(broker, read_only_mount):
    topic = f"ro-{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap, topic, 2)
    produce_records(broker.bootstrap, topic, 10, 2, "ro")
    broker.kill9()
    read_only_mount(broker.data_dir)

    started = time.monotonic()
    code, output = serve(broker.data_dir)

    assert code != 0, output
    assert "not writable" in output and str(broker.data_dir) in output, output
    assert time.monotonic() - started < REFUSAL_TIMEOUT_S / 2


# --- a full disk --------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A small ext4 file system, loop-mounted; unmounted and removed at teardown, even on failure."""
    image = tmp_path / "disk.img"
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with open(image, "wb") as f:
        f.truncate(IMAGE_BYTES)
    # -m 0: the broker runs as root, which could otherwise use the blocks reserved for root.
    run("mkfs.ext4", "-q", "-F", "-m", "0", image)
    run("mount", "-o", "loop", image, mountpoint)
    try:
        yield mountpoint
    finally:
        unmount(mountpoint)
        image.unlink()


@pytest.fixture
def full_disk_broker(tmp_path, small_disk):
    """A broker (logs outside the image) whose data directory is on the small image."""
    instance = Broker(tmp_path / "broker", free_port(),
                      extra_args=("--segment-bytes", SEGMENT_BYTES, "--group-initial-rebalance-delay-ms", 0))
    instance.data_dir = small_disk / "data"
    instance.data_dir.mkdir()
    try:
        instance.start()
        yield instance
    finally:
        problem = instance.close()
        if problem:
            print(instance.log_tail())


def free_bytes(path):
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def produce_round(bootstrap, topic, count, value_bytes):
    """acks=all, no retries; returns the delivery errors (None for each record delivered)."""
    config = confluent_base_config(bootstrap)
    config.update({"acks": "all", "enable.idempotence": False, "retries": 0, "linger.ms": 5,
                   "message.timeout.ms": 15000})
    producer = Producer(config)
    errors = []
    for i in range(count):
        producer.produce(topic, value=os.urandom(value_bytes), partition=0,
                         on_delivery=lambda e, m: errors.append(e))
    assert producer.flush(CLIENT_TIMEOUT_S) == 0, "records not reported in time"
    return errors


def fill(bootstrap, topic):
    """Produces to `topic` until the broker answers KAFKA_STORAGE_ERROR; returns the records stored."""
    stored = 0
    for _ in range(FILL_ROUNDS_MAX):
        errors = produce_round(bootstrap, topic, FILL_RECORDS_PER_ROUND, FILL_RECORD_BYTES)
        failures = [e for e in errors if e]
        stored += len(errors) - len(failures)
        if failures:
            assert all(e.code() == KafkaError.KAFKA_STORAGE_ERROR for e in failures), failures[:3]
            return stored
    raise AssertionError(f"no KAFKA_STORAGE_ERROR after {FILL_ROUNDS_MAX} rounds")


def commit(bootstrap, group, topic, offset):
    consumer = confluent_consumer(bootstrap, **{"group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    finally:
        consumer.close()


def committed(bootstrap, group, topic):
    consumer = confluent_consumer(bootstrap, **{"group.id": group})
    try:
        return consumer.committed([TopicPartition(topic, 0)], timeout=CLIENT_TIMEOUT_S)[0].offset
    finally:
        consumer.close()


def delete_topic(bootstrap, topic):
    admin = AdminClient(confluent_base_config(bootstrap))
    admin.delete_topics([topic], operation_timeout=15, request_timeout=15)[topic].result(timeout=CLIENT_TIMEOUT_S)


def keep_and_fill(broker):
    """A small topic with a committed group offset, then a topic that fills the disk; then the
    small topic takes what its segment had preallocated, until it fails too."""
    keep, filler, group = "keep", "filler", "keepers"
    create_topic(broker.bootstrap, keep, 1)
    kept = produce_records(broker.bootstrap, keep, KEEP_RECORDS, 1, "keep")
    commit(broker.bootstrap, group, keep, KEEP_RECORDS // 2)
    create_topic(broker.bootstrap, filler, 1)
    fill(broker.bootstrap, filler)
    fill(broker.bootstrap, keep)
    return keep, filler, group, kept


def assert_produce_works(broker, topic):
    errors = produce_round(broker.bootstrap, topic, 4, 1000)
    assert errors == [None] * 4, errors


def test_full_disk_delete_topics_frees_space(full_disk_broker):
    broker = full_disk_broker
    keep, filler, _, _ = keep_and_fill(broker)
    full = free_bytes(broker.data_dir)
    assert produce_round(broker.bootstrap, keep, 1, FILL_RECORD_BYTES)[0].code() == KafkaError.KAFKA_STORAGE_ERROR

    delete_topic(broker.bootstrap, filler)

    assert free_bytes(broker.data_dir) > full + 8 * SEGMENT_BYTES
    assert_produce_works(broker, keep)
    broker.assert_running()


def fill_rest(directory, name):
    """Takes every block left on the file system of `directory` with the ballast file `name`."""
    chunk = b"\0" * (4 << 10)
    with open(directory / name, "wb") as ballast:
        try:
            while True:
                ballast.write(chunk)
                ballast.flush()
        except OSError:
            pass
        try:
            os.fsync(ballast.fileno())
        except OSError:
            pass


def test_restart_on_full_disk_opens_every_partition(full_disk_broker):
    broker = full_disk_broker
    keep, filler, group, kept = keep_and_fill(broker)
    broker.kill9()
    fill_rest(broker.data_dir.parent, "ballast")

    broker.start()

    records = read_all(broker.bootstrap, keep, 1, expect_count=KEEP_RECORDS)
    assert [(r[0], r[1], r[2], r[3]) for r in records[:KEEP_RECORDS]] == kept
    assert committed(broker.bootstrap, group, keep) == KEEP_RECORDS // 2
    consumer = confluent_consumer(broker.bootstrap)
    try:
        for partition in range(OFFSETS_PARTITIONS):
            consumer.get_watermark_offsets(TopicPartition("__consumer_offsets", partition), timeout=CLIENT_TIMEOUT_S)
    finally:
        consumer.close()
    # Recovery trimmed the preallocated ends of the segments; take that space too.
    fill_rest(broker.data_dir.parent, "ballast-2")
    assert produce_round(broker.bootstrap, keep, 1, FILL_RECORD_BYTES)[0].code() == KafkaError.KAFKA_STORAGE_ERROR
    delete_topic(broker.bootstrap, filler)
    assert_produce_works(broker, keep)
    commit(broker.bootstrap, group, keep, KEEP_RECORDS)
    assert committed(broker.bootstrap, group, keep) == KEEP_RECORDS
