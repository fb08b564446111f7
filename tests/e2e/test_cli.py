"""The sluice command-line tools against a running broker: topic create/list/describe/delete,
produce key<TAB>value lines from stdin, consume them back from the beginning."""

import re

from confluent_kafka.admin import AdminClient

from e2e_util import confluent_base_config, read_all, run_sluice, unique_topic


def topic_names(bootstrap):
    out = run_sluice(["topic", "list", "-b", bootstrap]).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def metadata_topics(bootstrap):
    # Metadata for all topics (no names given), so that nothing is auto-created by asking.
    return AdminClient(confluent_base_config(bootstrap)).list_topics(timeout=10).topics


def test_cli_topic_lifecycle(broker):
    bs = broker.bootstrap
    topic = unique_topic("cli-topic")
    other = unique_topic("cli-other")
    run_sluice(["topic", "create", topic, "--partitions", 3, "-b", bs])
    run_sluice(["topic", "create", other, "--partitions", 1, "-b", bs])

    assert {topic, other} <= topic_names(bs)
    topics = metadata_topics(bs)
    assert sorted(topics[topic].partitions) == [0, 1, 2]
    assert sorted(topics[other].partitions) == [0]

    described = run_sluice(["topic", "describe", topic, "-b", bs]).stdout
    assert topic in described, described
    # Each partition is described: its number appears on a line of its own.
    for p in range(3):
        assert re.search(rf"(?im)^.*\bpartition\b\W*{p}\b", described), f"partition {p} missing:\n{described}"
    assert not re.search(r"(?im)\bpartition\b\W*3\b", described), described

    # Creating it again fails and changes nothing.
    again = run_sluice(["topic", "create", topic, "--partitions", 5, "-b", bs], check=False)
    assert again.returncode != 0, again
    assert sorted(metadata_topics(bs)[topic].partitions) == [0, 1, 2]

    run_sluice(["topic", "delete", topic, "-b", bs])
    names = topic_names(bs)
    assert topic not in names and other in names, names
    assert topic not in metadata_topics(bs)

    # Gone after a restart too, and the other topic is still there.
    broker.restart()
    names = topic_names(bs)
    assert topic not in names and other in names, names


def test_cli_topic_describe_replicas(broker):
    """describe names the topic id and, per partition, the leader, leader epoch, replicas and ISR
    (all this one broker, node 0, at epoch 0), for several topics at once, and refuses an unknown
    topic."""
    bs = broker.bootstrap
    first = unique_topic("cli-desc-a")
    second = unique_topic("cli-desc-b")
    run_sluice(["topic", "create", first, "--partitions", 3, "-b", bs])
    run_sluice(["topic", "create", second, "--partitions", 1, "--config", "retention.ms=1234", "-b", bs])

    def describe():
        out = run_sluice(["topic", "describe", first, second, "-b", bs]).stdout
        headers = re.findall(r"(?m)^Topic: (\S+)\tTopicId: ([0-9a-f-]{36})\tPartitions: (\d+)\tReplicationFactor: (\d+)\tConfigs: (.*)$", out)
        rows = re.findall(
            r"(?m)^\tPartition: (\d+)\tLeader: (\S+)\tLeaderEpoch: (-?\d+)\tReplicas: (\S+)\tIsr: (\S+)\t", out
        )
        return out, headers, rows

    out, headers, rows = describe()
    assert [(h[0], h[2], h[3]) for h in headers] == [(first, "3", "1"), (second, "1", "1")], out
    assert headers[0][1] != headers[1][1], out
    assert "retention.ms=1234" in headers[1][4], out
    assert rows == [(str(p), "0", "0", "0", "0") for p in (0, 1, 2, 0)], out

    # The ids and assignments are what the broker stored: the same after a restart.
    broker.restart()
    again, headers_again, rows_again = describe()
    assert [h[:2] for h in headers_again] == [h[:2] for h in headers], again
    assert rows_again == rows, again

    missing = run_sluice(["topic", "describe", unique_topic("cli-desc-none"), "-b", bs], check=False)
    assert missing.returncode != 0, missing


def test_cli_produce_consume_keyed_lines(broker):
    bs = broker.bootstrap
    topic = unique_topic("cli-data")
    run_sluice(["topic", "create", topic, "--partitions", 2, "-b", bs])
    pairs = [(f"k{i}", f"value number {i} with spaces and \u00e9") for i in range(40)]
    stdin = "".join(f"{k}\t{v}\n" for k, v in pairs)
    run_sluice(["produce", topic, "-b", bs, "--key-separator", "\\t"], input_text=stdin)

    # What the broker stored: keys and values split at the tab, every record once.
    stored = read_all(bs, topic, 2, expect_count=len(pairs))
    assert sorted((r[2], r[3]) for r in stored) == sorted((k.encode(), v.encode()) for k, v in pairs)
    # The same key always goes to the same partition (keyed partitioning).
    assert len({r[0] for r in stored}) == 2, "all records landed in one partition"
    # describe reports each partition's end offset.
    described = run_sluice(["topic", "describe", topic, "-b", bs]).stdout
    end_offsets = [int(n) for n in re.findall(r"LogEndOffset:\s*(\d+)", described)]
    per_partition = [sum(1 for r in stored if r[0] == p) for p in range(2)]
    assert end_offsets == per_partition, described

    out = run_sluice(["consume", topic, "-b", bs, "--from", "beginning", "--max-records", len(pairs)]).stdout
    lines = out.splitlines()
    assert len(lines) == len(pairs), out
    values = sorted(line.split("\t")[-1] for line in lines)
    assert values == sorted(v for _, v in pairs), out
    # A partial read stops after --max-records.
    out = run_sluice(["consume", topic, "-b", bs, "--from", "beginning", "--max-records", 5]).stdout
    assert len(out.splitlines()) == 5, out


def test_cli_produce_consume_plain_lines(broker):
    bs = broker.bootstrap
    topic = unique_topic("cli-plain")
    run_sluice(["topic", "create", topic, "--partitions", 1, "-b", bs])
    lines = [f"line {i}: {'=' * (i % 13)}" for i in range(25)]
    run_sluice(["produce", topic, "-b", bs], input_text="\n".join(lines) + "\n")

    stored = read_all(bs, topic, 1, expect_count=len(lines))
    assert [(r[1], r[2], r[3]) for r in stored] == [(i, None, line.encode()) for i, line in enumerate(lines)]

    out = run_sluice(["consume", topic, "-b", bs, "--from", "beginning", "--max-records", len(lines)]).stdout
    assert out.splitlines() == lines
