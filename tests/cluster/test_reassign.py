"""Partition reassignment (KIP-455) through `sluice topic reassign`, on four brokers.

Moving one replica of an RF 3, min.insync.replicas 2 partition to the fourth broker while an
idempotent acks=all producer writes numbered records: `--wait` returns once the move completed,
every broker's Metadata then shows the new replica set with the new replica in the ISR, the
broker that left deleted its copy, the new replicas hold the same log, and every acknowledged
record reads back exactly once, in order, at its acknowledged offset (replication_check.py).

A reassignment held in progress (its new replica paused) is listed by the CLI, and cancelling it
restores the replicas; kafka-python's ListPartitionReassignments then lists none. (kafka-python
sends it to whichever broker it finds least loaded, the paused one included, so it is asked only
while every broker answers.) A broker
killed while a reassignment moves its partition away finds its stale copy removed when it
starts again (start-up removes the directories of partitions it is no longer a replica of).
"""

import subprocess

import pytest
from kafka.admin import KafkaAdminClient

import cluster_wire
from harness import SLUICE_BIN, wait_until
from replication_check import (NumberedProducer, agreed_state, check_history, create_topic,
                               wait_isr_whole, wait_replicas_identical)
from clients import unique_topic

# How long `--wait` may block for a move: the new replica fetches the partition from offset 0
# (a few thousand small records here) and joins the ISR, then the ISR change commits.
MOVE_TIMEOUT_MS = 40000
# Bound of the CLI process itself beyond its own timeout.
CLI_TIMEOUT_S = MOVE_TIMEOUT_MS / 1000 + 15
# Bound of every broker agreeing on a committed metadata change and acting on it.
AGREE_TIMEOUT_S = 20.0
# Records acknowledged before the move starts, so the new replica has a log to copy.
ACKED_BEFORE_MOVE = 400
# The exit code of `--wait` when the timeout ends it first (cli/src/reassign.rs).
EXIT_STILL_IN_PROGRESS = 3

pytestmark = [pytest.mark.cluster_size(4)]


def reassign(cluster, *args, node=None):
    """Runs `sluice topic reassign ARGS` against `node` (default: the first running one)."""
    node = node or cluster.running()[0]
    return subprocess.run(
        [str(SLUICE_BIN), "topic", "reassign", *map(str, args),
         "--bootstrap-server", node.bootstrap],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}: {result.stdout}{result.stderr}"
    return result.stdout


def wait_state(cluster, topic, leader_in, isr, replicas):
    """Wait until every running broker shows the partition with these sorted ISR and replicas
    and a leader among `leader_in`."""
    def shown():
        state = agreed_state(cluster.running(), topic)
        return (state is not None and state[0] in leader_in and state[1] == isr
                and state[2] == replicas and state)
    return wait_until(f"{topic}: replicas {replicas}, ISR {isr}", shown, AGREE_TIMEOUT_S)


def copy_of(node, topic):
    return node.data_dir / f"{topic}-0"


def test_a_replica_moves_to_the_fourth_broker_under_acks_all_load(cluster):
    topic = unique_topic("reassign-move")
    # Broker 1, the leader, leaves: leadership moves with the reassignment's completion.
    create_topic(cluster, topic, assignment=[[1, 2, 3]])
    producer = NumberedProducer(cluster.bootstrap(), topic).start()
    try:
        producer.wait_acked_from(ACKED_BEFORE_MOVE, "before the move", AGREE_TIMEOUT_S)
        assert copy_of(cluster.node(1), topic).is_dir()
        out = ok(reassign(cluster, topic, "--partition", 0, "--replicas", "2,3,4", "--wait",
                          "--timeout-ms", MOVE_TIMEOUT_MS, node=cluster.node(2)))
        assert f"Reassignment of {topic}-0 complete" in out and "replicas 2,3,4" in out, out
        moved_at, _ = producer.mark()
        leader, _ = wait_state(cluster, topic, (2, 3, 4), [2, 3, 4], [2, 3, 4])[:2]
        assert leader == 2, "the first target replica in the ISR leads"
        wait_until(f"broker 1 deleting its copy of {topic}-0",
                   lambda: not copy_of(cluster.node(1), topic).exists(), AGREE_TIMEOUT_S)
        # Nothing is left in progress, as the CLI and kafka-python see it.
        assert ok(reassign(cluster, "--list")) == "No reassignment in progress.\n"
        producer.wait_acked_from(moved_at + 100, "after the move", AGREE_TIMEOUT_S)
        producer.stop()
    finally:
        producer.abort()
    read, acked = check_history(cluster.bootstrap(), topic, producer)
    assert acked >= ACKED_BEFORE_MOVE + 100 and read >= acked
    wait_isr_whole(cluster, topic, AGREE_TIMEOUT_S)
    wait_replicas_identical(cluster, topic, [2, 3, 4])


def listed_by_kafka_python(admin):
    """ListPartitionReassignments through kafka-python: {(topic, partition): (replicas,
    adding, removing)}."""
    listed = admin.list_partition_reassignments()
    return {(tp.topic, tp.partition): (list(r["replicas"]), list(r["adding_replicas"]),
                                       list(r["removing_replicas"]))
            for tp, r in listed.items()}


@pytest.mark.cluster_session_timeout_ms(30000)
def test_a_reassignment_in_progress_is_listed_and_cancelled(cluster):
    topic = unique_topic("reassign-cancel")
    controller = cluster_wire.metadata(cluster.node(1), topics=[])["controller_id"]
    # The added broker is paused so the reassignment stays in progress; not the controller, so
    # the metadata quorum keeps its leader.
    added = max(n for n in (1, 2, 3, 4) if n != controller)
    original = [n for n in (1, 2, 3, 4) if n != added]
    target = original[1:] + [added]
    create_topic(cluster, topic, assignment=[original])
    cluster.node(added).pause()
    asker = cluster.node(controller)
    ok(reassign(cluster, topic, "-p", 0, "--replicas", ",".join(map(str, target)), node=asker))
    listed = ok(reassign(cluster, "--list", node=asker)).splitlines()
    row = [f"{topic}", "0", ",".join(map(str, target)), ",".join(map(str, target + original[:1])),
           str(added), str(original[0])]
    assert listed[0].split() == ["TOPIC", "PARTITION", "TARGET", "REPLICAS", "ADDING", "REMOVING"]
    assert [line.split() for line in listed[1:]] == [row], listed
    # --wait gives up at its timeout with its own exit code while the new replica is paused.
    waited = reassign(cluster, topic, "-p", 0, "--wait", "--timeout-ms", 500, node=asker)
    assert waited.returncode == EXIT_STILL_IN_PROGRESS, waited.stdout + waited.stderr
    assert "still in progress" in waited.stderr, waited.stderr

    out = ok(reassign(cluster, topic, "-p", 0, "--cancel", node=asker))
    # Cancelling keeps the replicas in progress without the added one, in their order (as
    # Kafka's revert does): the original replicas, the removed one now last.
    restored = original[1:] + original[:1]
    assert f"replicas {','.join(map(str, restored))}" in out, out
    cluster.node(added).resume()
    wait_state(cluster, topic, original, original, original)
    assert ok(reassign(cluster, "--list", node=asker)) == "No reassignment in progress.\n"
    admin = KafkaAdminClient(bootstrap_servers=cluster.node(controller).bootstrap,
                             request_timeout_ms=10000)
    assert listed_by_kafka_python(admin) == {}
    admin.close()
    wait_until(f"broker {added} holding no copy of {topic}-0",
               lambda: not copy_of(cluster.node(added), topic).exists(), AGREE_TIMEOUT_S)
    # Cancelling again is refused: nothing is in progress.
    again = reassign(cluster, topic, "-p", 0, "--cancel", node=asker)
    assert again.returncode == 1 and "NO_REASSIGNMENT_IN_PROGRESS" in again.stderr, again


def test_a_broker_down_while_its_partition_moves_away_drops_its_copy_at_start(cluster):
    topic = unique_topic("reassign-down")
    create_topic(cluster, topic, assignment=[[1, 2, 3]])
    for number in range(50):
        error, _ = cluster_wire.produce_one(cluster.node(1), topic, 0, str(number).encode(),
                                            acks=-1, timeout_ms=5000, timeout_s=10.0)
        assert error == 0
    wait_isr_whole(cluster, topic, AGREE_TIMEOUT_S)
    # A follower that is not the controller, so the metadata quorum keeps its leader.
    controller = cluster_wire.metadata(cluster.node(1), topics=[])["controller_id"]
    leaving = cluster.node(3 if controller != 3 else 2)
    target = sorted({1, 2, 3, 4} - {leaving.id})
    assert copy_of(leaving, topic).is_dir()
    leaving.kill9()
    ok(reassign(cluster, topic, "-p", 0, "--replicas", ",".join(map(str, target)), "--wait",
                "--timeout-ms", MOVE_TIMEOUT_MS))
    wait_state(cluster, topic, target, target, target)
    assert copy_of(leaving, topic).is_dir(), "a dead broker deletes nothing"
    leaving.start()
    # Start-up removes the stale copy before the broker answers.
    assert not copy_of(leaving, topic).exists()
