"""KafkaJS (a pure JavaScript client with its own protocol code) against the broker.

tests/e2e/kafkajs/roundtrip.js creates a topic, produces keyed records with headers and
timestamps (acks=-1) and fetches the topic offsets. KafkaJS can only consume through a
consumer group, so the records are read back here with confluent_kafka and compared.
"""

import json
import shutil
import subprocess
from pathlib import Path

from confluent_kafka import TIMESTAMP_CREATE_TIME

from e2e_util import assert_dense_offsets, read_all, unique_topic

KAFKAJS_DIR = Path(__file__).resolve().parent / "kafkajs"
NODE = shutil.which("node") or shutil.which("nodejs") or "node"
PARTITIONS = 4
RECORD_COUNT = 60


def run_roundtrip(bootstrap, topic):
    assert (KAFKAJS_DIR / "node_modules" / "kafkajs").is_dir(), "run scripts/test: it installs kafkajs with npm ci"
    command = [NODE, str(KAFKAJS_DIR / "roundtrip.js"), bootstrap, topic, str(PARTITIONS), str(RECORD_COUNT)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=90, cwd=KAFKAJS_DIR)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"roundtrip.js did not finish in 90s; stderr: {error.stderr}")
    assert result.returncode == 0, f"roundtrip.js exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def expected_records(sent):
    """Offsets follow the send order within each partition."""
    next_offset = [0] * PARTITIONS
    expected = []
    for message in sent:
        p = message["partition"]
        headers = tuple((name, value.encode()) for name, value in message["headers"].items())
        expected.append(
            (p, next_offset[p], message["key"].encode(), message["value"].encode(), headers,
             TIMESTAMP_CREATE_TIME, int(message["timestamp"]))
        )
        next_offset[p] += 1
    return sorted(expected, key=lambda r: (r[0], r[1])), next_offset


def test_kafkajs_produce_and_offsets(broker):
    topic = unique_topic("kafkajs")
    out = run_roundtrip(broker.bootstrap, topic)
    assert out["created"] is True, out["created"]
    assert len(out["sent"]) == RECORD_COUNT

    expected, per_partition_count = expected_records(out["sent"])
    assert_dense_offsets(expected)

    # Produce responses: one per partition per send; no errors; the second send continues the first.
    half = RECORD_COUNT // 2
    first_send_counts = [sum(1 for m in out["sent"][:half] if m["partition"] == p) for p in range(PARTITIONS)]
    results = out["results"]
    assert len(results) == 2 * PARTITIONS, results
    for i, result in enumerate(results):
        assert result["topicName"] == topic and result["errorCode"] == 0, result
        expected_base = 0 if i < PARTITIONS else first_send_counts[result["partition"]]
        assert int(result["baseOffset"]) == expected_base, result

    # admin.fetchTopicOffsets (ListOffsets latest and earliest).
    offsets = sorted(out["offsets"], key=lambda o: o["partition"])
    assert [o["partition"] for o in offsets] == list(range(PARTITIONS))
    for o in offsets:
        assert (int(o["low"]), int(o["high"]), int(o["offset"])) == (0, per_partition_count[o["partition"]],
                                                                     per_partition_count[o["partition"]]), o

    topics = out["metadata"]["topics"]
    assert [t["name"] for t in topics] == [topic]
    assert sorted(p["partitionId"] for p in topics[0]["partitions"]) == list(range(PARTITIONS))

    assert read_all(broker.bootstrap, topic, PARTITIONS, expect_count=RECORD_COUNT) == expected
    broker.restart()
    assert read_all(broker.bootstrap, topic, PARTITIONS, expect_count=RECORD_COUNT) == expected
