"""Fencing: the active controller fences a broker it no longer hears from (kill -9, SIGSTOP)
within the session timeout, so another broker's Metadata shows the broker's partitions led by
other replicas and the broker no longer listed; a restarted or resumed broker is listed again.

The guarantee checked (issue 13): leadership moves within `--session-timeout-ms` + 1 s of a
broker's death, measured from the kill to the first Metadata answer of another broker that shows
every partition the dead broker led now led by a live replica. That holds for a dead controller
too: the next one, which followed it, counts its silence from when it last heard it, not from its
own election."""

import re
import subprocess
import time

import cluster_wire
import observe
from clients import unique_topic
from harness import SLUICE_BIN, wait_until

# The guarantee's slack past the session timeout.
FENCE_SLACK_S = 1.0
# How often Metadata is asked while waiting for leadership to move.
POLL_INTERVAL_S = 0.05
# Longer than an election plus a registration.
CONVERGE_TIMEOUT_S = 30
PARTITIONS = 6
REPLICATION_FACTOR = 3
ERROR_NOT_CONTROLLER = 41
ERROR_REQUEST_TIMED_OUT = 7


def _topic_led_everywhere(cluster):
    """A new topic with RF 3 whose partitions are led by every broker; returns (topic, leaders by
    partition) as node 1 sees them."""
    topic = unique_topic("membership")
    node = cluster.nodes[1]

    def created():
        answer = cluster_wire.create_topics(node, [(topic, PARTITIONS, REPLICATION_FACTOR)])
        return answer[topic][0] not in (ERROR_NOT_CONTROLLER, ERROR_REQUEST_TIMED_OUT) and answer
    answer = wait_until(f"{topic} created", created, CONVERGE_TIMEOUT_S)
    assert answer[topic][0] == 0, answer
    for other in cluster.nodes.values():
        observe.wait_led(other, topic, PARTITIONS)
    partitions = observe.partitions_of(node, topic)
    return topic, {index: entry["leader"] for index, entry in partitions.items()}


def _wait_moved(observer, topic, victim, led, since, timeout_s):
    """Polls `observer`'s Metadata until `victim` is no longer listed and every partition in `led`
    is led by another broker; returns the seconds since `since`."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        answer = cluster_wire.metadata(observer, [topic])
        partitions = answer["topics"][topic]["partitions"]
        last = (sorted(answer["brokers"]), {i: partitions[i]["leader"] for i in led})
        moved = all(partitions[i]["leader"] not in (victim, -1) for i in led)
        if moved and victim not in answer["brokers"]:
            assert all(victim not in partitions[i]["isr"] for i in led), partitions
            return time.monotonic() - since
        time.sleep(POLL_INTERVAL_S)
    raise AssertionError(f"node {observer.id} still shows broker {victim} or its leaderships "
                         f"after {timeout_s}s: brokers and leaders {last}")


def _cluster_describe(node):
    """`sluice cluster describe` at `node`: (controller, {broker: state}, voter ids)."""
    result = subprocess.run([str(SLUICE_BIN), "cluster", "describe", "-b", node.bootstrap],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result
    out = result.stdout
    controller = re.search(r"(?m)^ClusterId: \S+\tController: (-?\d+)$", out)
    states = dict(re.findall(r"(?m)^Broker: (\d+)\t.*\tState: (\w+)$", out))
    voters = re.findall(r"(?m)^Voter: (\d+)\t", out)
    assert controller, out
    return int(controller.group(1)), {int(b): s for b, s in states.items()}, sorted(map(int, voters))


def _fence_and_return(cluster, stop, restart, what):
    nodes = cluster.nodes
    controller = observe.wait_agreement(cluster)
    topic, leaders = _topic_led_everywhere(cluster)
    victim = next(n for n in sorted(nodes) if n != controller)
    observer = nodes[controller]
    led = [index for index, leader in leaders.items() if leader == victim]
    assert led, leaders
    session_s = cluster.session_timeout_ms / 1000
    stopped_at = time.monotonic()
    stop(nodes[victim])
    elapsed = _wait_moved(observer, topic, victim, led, stopped_at, session_s + 5)
    print(f"\n{what} of broker {victim}: its {len(led)} partitions led elsewhere after "
          f"{elapsed:.2f} s (session timeout {session_s:.1f} s)")
    assert elapsed <= session_s + FENCE_SLACK_S, f"leadership moved after {elapsed:.2f} s"
    # DescribeCluster v2 lists the fenced broker too, marked; DescribeQuorum every voter.
    described = _cluster_describe(observer)
    expected = {n: ("fenced" if n == victim else "live") for n in nodes}
    assert described == (controller, expected, sorted(nodes)), described
    restart(nodes[victim])
    observe.wait_agreement(cluster, timeout_s=CONVERGE_TIMEOUT_S)
    wait_until(f"broker {victim} described as live again",
               lambda: _cluster_describe(observer)[1].get(victim) == "live", CONVERGE_TIMEOUT_S)


def test_a_killed_broker_is_fenced_within_the_session_timeout_and_listed_again_after_restart(cluster):
    _fence_and_return(cluster, lambda node: node.kill9(), lambda node: node.start(), "kill -9")


def test_a_paused_broker_is_fenced_and_unfenced_when_it_resumes(cluster):
    _fence_and_return(cluster, lambda node: node.pause(), lambda node: node.resume(), "SIGSTOP")


def test_a_killed_controller_is_fenced_by_the_next_one(cluster):
    nodes = cluster.nodes
    old = observe.wait_agreement(cluster)
    topic, leaders = _topic_led_everywhere(cluster)
    led = [index for index, leader in leaders.items() if leader == old]
    observer = next(node for node in nodes.values() if node.id != old)
    killed_at = time.monotonic()
    nodes[old].kill9()
    wait_until("another controller",
               lambda: cluster_wire.metadata(observer)["controller_id"] not in (old, -1),
               CONVERGE_TIMEOUT_S, interval_s=POLL_INTERVAL_S)
    elected_at = time.monotonic()
    session_s = cluster.session_timeout_ms / 1000
    elapsed = _wait_moved(observer, topic, old, led, killed_at, session_s + 5)
    print(f"\nkill -9 of the controller {old}: new controller after "
          f"{elected_at - killed_at:.2f} s, its partitions led elsewhere {elapsed:.2f} s after the "
          f"kill (session timeout {session_s:.1f} s)")
    assert elapsed <= session_s + FENCE_SLACK_S, f"leadership moved after {elapsed:.2f} s"
