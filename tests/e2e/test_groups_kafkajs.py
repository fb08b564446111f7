"""Consumer groups with KafkaJS 2.2.4 (its own protocol code): tests/e2e/kafkajs/group_consume.js
joins a group, reads every record produced beforehand (fromBeginning, eachMessage), commits and
leaves; a second run of the same group resumes after the commit and reads only newer records."""

import json
import shutil
import subprocess
from pathlib import Path

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from e2e_util import CLIENT_TIMEOUT_S, confluent_base_config, create_topic, produce_records, unique_topic

KAFKAJS_DIR = Path(__file__).resolve().parent / "kafkajs"
NODE = shutil.which("node") or shutil.which("nodejs") or "node"
PARTITIONS = 3


def run_group_consume(bootstrap, topic, group, count):
    assert (KAFKAJS_DIR / "node_modules" / "kafkajs").is_dir(), "run scripts/test: it installs kafkajs with npm ci"
    command = [NODE, str(KAFKAJS_DIR / "group_consume.js"), bootstrap, topic, group, str(count)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=75, cwd=KAFKAJS_DIR)
    except subprocess.TimeoutExpired as error:
        raise AssertionError(f"group_consume.js did not finish in 75s; stderr: {error.stderr}")
    assert result.returncode == 0, (
        f"group_consume.js exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def consumed(out):
    return sorted((m["partition"], m["offset"], m["key"].encode(), m["value"].encode()) for m in out["messages"])


def test_kafkajs_group_reads_commits_and_resumes(broker):
    topic = unique_topic("js-group")
    group = unique_topic("js-g")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    first = produce_records(broker.bootstrap, topic, 30, PARTITIONS, "js-first")

    out = run_group_consume(broker.bootstrap, topic, group, len(first))
    assert consumed(out) == first, out["messages"]
    assert out["joins"], "no GROUP_JOIN event"
    join = out["joins"][-1]
    assert join["groupId"] == group and join["memberId"], join
    assert join["isLeader"] and join["leaderId"] == join["memberId"], join
    assert sorted(join["memberAssignment"].get(topic, [])) == list(range(PARTITIONS)), join
    assert [(c["partition"], c["offset"]) for c in out["committed"]] == [(p, 10) for p in range(PARTITIONS)], out
    assert out["crashes"] == [], out["crashes"]

    # Records produced after the first run; the second run must start after the commit, so the
    # first records it sees (in offset order per partition) are exactly these.
    second = produce_records(broker.bootstrap, topic, 15, PARTITIONS, "js-second", first=30)
    out = run_group_consume(broker.bootstrap, topic, group, len(second))
    assert consumed(out) == second, f"second run read {consumed(out)}"
    assert [(c["partition"], c["offset"]) for c in out["committed"]] == [(p, 15) for p in range(PARTITIONS)], out
    assert out["crashes"] == [], out["crashes"]

    # Another client sees the same committed offsets (OffsetFetch through the admin client).
    admin = AdminClient(confluent_base_config(broker.bootstrap))
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(PARTITIONS)])
    result = admin.list_consumer_group_offsets([request], request_timeout=15)[group].result(timeout=CLIENT_TIMEOUT_S)
    assert sorted((tp.partition, tp.offset) for tp in result.topic_partitions) == [(p, 15) for p in range(PARTITIONS)]
