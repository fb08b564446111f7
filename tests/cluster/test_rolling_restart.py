"""A rolling restart under load (issue 14): each broker of three in turn gets SIGTERM, exits by
itself after its controlled shutdown, is restarted and catches up before the next one.

Controlled shutdown (Kafka's): a broker stopping on SIGTERM first has the controller move every
partition it leads to another in-sync replica and take it out of the ISRs, through the metadata
log, and stops only once that is applied (or after `--controlled-shutdown-timeout-ms`). So while
an idempotent acks=all producer writes numbered records to an RF 3, min.insync.replicas 2 topic:
- each SIGTERMed broker exits by itself, with code 0, within the harness's shutdown timeout;
- when it has exited it leads nothing (another broker's metadata, read at once: well within the
  session timeout, so fencing on silence cannot be what moved its leaderships);
- records are acknowledged again soon after each stop (no wait for fencing or the ISR shrink);
- the restarted broker rejoins the ISR, and preferred-leader rebalancing gives it back its
  partition;
- afterwards every acknowledged record is read back exactly once and in order, and the producer
  had no delivery failure and no fatal error (only retriable ones, such as a connection closed
  by a stopping broker).
"""

import time

import pytest

import cluster_wire
import observe
from clients import unique_topic
from harness import CONTROLLED_SHUTDOWN_TIMEOUT_MS, wait_until
from replication_check import (
    NumberedProducer, check_history, create_topic, states_seen, wait_isr_whole,
    wait_replicas_identical)

# The whole test, cluster start and teardown included (it takes about 30 s).
TEST_TIMEOUT_S = 90
# Preferred-leader rebalancing every second, so the restarted broker leads its partition again
# within the test (Kafka checks every 300 s).
LEADER_IMBALANCE_CHECK_INTERVAL_MS = 1000
WARM_UP_RECORDS = 200
WARM_UP_TIMEOUT_S = 30.0
# From SIGTERM to the process's exit: the controlled shutdown's own bound and a second to sync
# the logs and exit.
EXIT_TIMEOUT_S = CONTROLLED_SHUTDOWN_TIMEOUT_MS / 1000 + 1.0
# From SIGTERM to the next acknowledgement: the leadership moves at once, and the client learns
# the new leader from its next metadata request (NOT_LEADER_OR_FOLLOWER or the lost connection).
ACK_RESUME_TIMEOUT_S = 10.0
# From a restart to the ISR holding every replica again: start-up, catch-up, ISR expansion.
REJOIN_TIMEOUT_S = 30.0
# From the last rejoin to the preferred replica leading: a rebalancing round or two.
PREFERRED_LEADER_TIMEOUT_S = 10.0

pytestmark = [
    pytest.mark.cluster_args_if_listed(
        ("--leader-imbalance-check-interval-ms", LEADER_IMBALANCE_CHECK_INTERVAL_MS)),
    pytest.mark.timeout(TEST_TIMEOUT_S),
]


def led_by(node, broker_id):
    """The (topic, partition)s `node`'s metadata shows `broker_id` leading, every topic included
    (`__consumer_offsets` too)."""
    topics = cluster_wire.metadata(node, timeout_s=2.0)["topics"]
    return sorted((name, index) for name, topic in topics.items()
                  for index, partition in topic["partitions"].items()
                  if partition["leader"] == broker_id)


def roll(cluster, producer, topic, node):
    """SIGTERM `node`, check its exit and what it left, restart it and wait until it is back in
    the ISR; returns (seconds to exit, seconds to the next acknowledgement)."""
    other = next(n for n in cluster.running() if n.id != node.id)
    number, stopped_at = producer.mark()
    code = node.terminate(EXIT_TIMEOUT_S)
    exited_s = time.monotonic() - stopped_at
    assert code == 0, f"node {node.id} exited with code {code} after SIGTERM\n{node.log_tail()}"
    still_led = led_by(other, node.id)
    assert not still_led, f"node {node.id} exited leading {still_led[:5]} (seen by {other.id})"
    resumed_s = producer.wait_acked_from(number, f"after SIGTERM of node {node.id}",
                                         ACK_RESUME_TIMEOUT_S) - stopped_at
    node.start()
    wait_isr_whole(cluster, topic, REJOIN_TIMEOUT_S)
    return exited_s, resumed_s


def test_a_rolling_restart_loses_no_acknowledged_record_and_stops_cleanly(cluster):
    topic = unique_topic("rolling")
    partitions = create_topic(cluster, topic)
    preferred = partitions[0]["replicas"][0]
    producer = NumberedProducer(cluster.bootstrap(), topic).start()
    try:
        producer.wait_acked_from(WARM_UP_RECORDS, "warm-up", WARM_UP_TIMEOUT_S)
        rounds = []
        for node_id in sorted(cluster.nodes):
            exited_s, resumed_s = roll(cluster, producer, topic, cluster.node(node_id))
            rounds.append(f"node {node_id}: exited {exited_s:.2f} s after SIGTERM, records "
                          f"acknowledged {resumed_s:.2f} s after it")
        wait_until(f"preferred replica {preferred} leading {topic} again "
                   f"({states_seen(cluster, topic)})",
                   lambda: all(observe.partitions_of(n, topic)[0]["leader"] == preferred
                               for n in cluster.running()),
                   PREFERRED_LEADER_TIMEOUT_S)
        producer.stop()
    finally:
        producer.abort()
    read, acked = check_history(cluster.bootstrap(), topic, producer)
    assert not producer.failed, f"delivery failures: {producer.error_summary()}"
    wait_replicas_identical(cluster, topic, sorted(partitions[0]["replicas"]))
    print(f"\nrolling restart: {producer.sent} records offered, {acked} acknowledged, {read} read "
          f"back; " + "; ".join(rounds) + f"; producer errors: {producer.error_summary()}")
