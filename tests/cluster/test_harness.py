"""The harness itself: addresses, kill -9 and restart, SIGSTOP/SIGCONT, cut links, isolation, and
the sweep of a killed run's leftovers. These hold whatever the brokers do as a cluster."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cluster_wire
import network
from clients import create_topic, produce, read_all, unique_topic
from harness import KAFKA_PORT, wait_until

HERE = Path(__file__).resolve().parent


def test_every_node_answers_at_its_own_address(shared_cluster):
    addresses = {node.host for node in shared_cluster.nodes.values()}
    assert len(addresses) == len(shared_cluster.nodes), shared_cluster.describe()
    for node in shared_cluster.nodes.values():
        answer = cluster_wire.metadata(node)
        assert answer["brokers"].get(node.id) == (node.host, KAFKA_PORT, None), answer["brokers"]


def test_kill9_and_restart_keep_the_data_directory(cluster):
    node = cluster.node(1)
    topic = unique_topic("harness-restart")
    create_topic(node.bootstrap, topic, partitions=1, replication_factor=1)
    leader = cluster.node(wait_until("a leader of partition 0", lambda: _leader(node, topic), 10))
    produce(node.bootstrap, topic, [(0, b"k%d" % i, b"v%d" % i) for i in range(10)])
    leader.kill9()
    assert not leader.answers(timeout_s=1.0)
    leader.start()
    records = read_all(node.bootstrap, topic, partitions=1, expect_count=10)
    assert [(key, value) for _, _, key, value in records] == [
        (b"k%d" % i, b"v%d" % i) for i in range(10)]
    assert leader.starts == 2


def _leader(node, topic, partition=0):
    """The leader `node`'s Metadata names for a partition, or None while it names none."""
    leader = cluster_wire.metadata(node, [topic])["topics"][topic]["partitions"][partition]["leader"]
    return leader if leader >= 0 else None


def test_a_paused_node_answers_nothing_until_resumed(cluster):
    node = cluster.node(2)
    node.pause()
    assert not node.answers(timeout_s=1.0)
    node.resume()
    wait_until("node 2 answering after SIGCONT", node.answers, timeout_s=10)


def _can_connect_from(cluster, node_id, target):
    """Whether a TCP connection from node_id's namespace to `target`'s Kafka port succeeds."""
    script = textwrap.dedent(f"""
        import socket, sys
        try:
            socket.create_connection(({target.host!r}, {KAFKA_PORT}), timeout=1.5).close()
        except OSError:
            sys.exit(1)
    """)
    return cluster.in_namespace(node_id, [sys.executable, "-c", script]).returncode == 0


def test_a_cut_link_drops_only_that_pair(cluster):
    cluster.require_faults()
    one, two, three = (cluster.node(i) for i in (1, 2, 3))
    assert _can_connect_from(cluster, 1, two)
    cluster.cut(1, 2)
    assert not _can_connect_from(cluster, 1, two)
    assert not _can_connect_from(cluster, 2, one)
    assert _can_connect_from(cluster, 1, three)
    assert one.answers() and two.answers(), "the test process still reaches both"
    cluster.heal()
    assert _can_connect_from(cluster, 1, two)


def test_an_isolated_node_is_unreachable_until_healed(cluster):
    cluster.require_faults()
    three = cluster.node(3)
    cluster.isolate(3)
    assert not three.answers(timeout_s=1.0)
    assert not _can_connect_from(cluster, 1, three)
    assert three.is_running()
    cluster.heal()
    wait_until("node 3 reachable after heal", three.answers, timeout_s=10)
    assert _can_connect_from(cluster, 1, three)


def _names_of_run(run_id):
    prefix = f"{network.PREFIX}{run_id}"
    names = []
    if os.geteuid() == 0:
        names += [n.split()[0] for n in network.run(["ip", "netns", "list"]).stdout.splitlines()
                  if n.startswith(prefix)]
        names += [line.split(":")[1].strip().split("@")[0]
                  for line in network.run(["ip", "-o", "link", "show"]).stdout.splitlines()
                  if line.split(":")[1].strip().startswith(prefix)]
    return names


def test_the_leftovers_of_a_killed_run_are_swept(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(HERE)!r})
        import harness
        cluster = harness.Cluster({str(tmp_path)!r}, size=1)
        cluster.start()
        print(cluster.node(1).proc.pid, flush=True)
        time.sleep(120)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
    try:
        line = wait_until("the child's broker", child.stdout.readline, timeout_s=40)
        broker_pid = int(line)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert os.path.exists(f"/proc/{broker_pid}"), "the child's broker outlived it"
    if os.geteuid() == 0 and network.netns_usable()[0]:
        assert _names_of_run(child.pid), "the killed run left namespaces and links"
    removed = network.sweep_leftovers()
    assert removed, "the sweep found nothing"
    wait_until("the orphaned broker gone", lambda: not _alive(broker_pid), timeout_s=10)
    assert _names_of_run(child.pid) == []
    assert not (network.STATE_ROOT / f"{network.PREFIX}{child.pid}c1").exists()


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_sweep_leaves_a_live_run_alone(shared_cluster):
    network.sweep_leftovers()
    for node in shared_cluster.nodes.values():
        assert node.is_running() and node.answers()
