"""Disk full on one follower (issue 14): node 3's data directory is on a 64 MiB filesystem
(small_disk.py) that a ballast file fills but for a few MiB; an idempotent acks=all producer on
an RF 3 / min.insync.replicas 2 topic with the replicas [1, 2, 3] writes past what is left.

Node 3's appends then fail with ENOSPC: it must keep running (no crash, no crash loop), leave
its log a clean prefix of the leader's (no torn or foreign batch), and drop out of the ISR, while
the producer goes on with the ISR {1, 2} (2 >= min.insync.replicas) and every acknowledged record
is read back once and in order (replication_check).

Then, with the ballast removed and no restart, node 3 comes back by itself: its metadata quorum
node retried its failed Raft writes (acknowledging nothing meanwhile) and resumes, so the active
controller unfences it, and its fetcher, which retried its appends, catches up and rejoins the
ISR, and every replica holds the same log. Only then is it restarted, and it rejoins again from
its own directory."""

import time

import pytest

from clients import unique_topic
from replication_check import (
    NumberedProducer, check_history, create_topic, replica_batches, states_seen, wait_isr,
    wait_isr_whole, wait_replicas_identical)
import small_disk

FOLLOWER = 3
DISK_MIB = 64
# What the ballast leaves free, filled within seconds. The whole log stays a few MiB: the checks
# read every replica's segments and check each batch's CRC in Python (about 1 MB/s).
LEFT_FREE_BYTES = 256 << 10
VALUE_BYTES = 1 << 10
SEGMENT_BYTES = 1 << 20
LAG_MAX_MS = 2000
WARM_UP_RECORDS = 100
# Records acknowledged with node 3 out of the ISR: more than the space it had left.
RECORDS_PAST_FULL = 2 * LEFT_FREE_BYTES // VALUE_BYTES
# The ISR shrink: a lag time after the follower stops appending, plus the metadata commit.
ISR_TIMEOUT_S = 20.0
ACK_TIMEOUT_S = 30.0
# How long node 3 is given to rejoin on its own once there is space again: its quorum node retries
# a failed Raft write at least every second, the controller unfences it once heard and caught up,
# its fetcher retries a failed append every 250 ms, and the leader adds it back at its next
# caught-up fetch.
REJOIN_UNAIDED_S = 20.0
# Its restart, recovery, catch-up and ISR expansion.
REJOIN_TIMEOUT_S = 45.0

pytestmark = [
    pytest.mark.cluster_args("--replica-lag-time-max-ms", str(LAG_MAX_MS)),
    pytest.mark.cluster_small_disk(FOLLOWER, DISK_MIB),
    pytest.mark.timeout(180),
]


def _check_full_follower(cluster, topic):
    """Node 3 ran out of space, still runs on its first start, and holds a clean prefix of the
    leader's log."""
    follower = cluster.node(FOLLOWER)
    free = small_disk.free_bytes(follower.disk)
    assert follower.is_running() and follower.starts == 1, follower.log_tail()
    leader_log = replica_batches(cluster.node(1), topic)
    own = replica_batches(follower, topic)
    assert own and own == leader_log[:len(own)], (
        f"node {FOLLOWER}'s log is not a prefix of the leader's: {len(own)} batches, the "
        f"leader {len(leader_log)}")
    # Its appends failed (the space a failed append had preallocated may come back, and with
    # it the follower, so the log alone does not show it).
    assert "No space left on device" in follower.log_path.read_text(errors="replace"), (
        f"node {FOLLOWER} never ran out of space")
    print(f"\nnode {FOLLOWER} full ({free} bytes free) with {len(own)} of the leader's "
          f"{len(leader_log)} batches; partition: {states_seen(cluster, topic)}")


def test_a_follower_with_a_full_disk_leaves_the_isr_and_nothing_acknowledged_is_lost(cluster):
    follower = cluster.node(FOLLOWER)
    in_sync = [cluster.node(1), cluster.node(2)]
    topic = unique_topic("disk-full")
    create_topic(cluster, topic, assignment=[[1, 2, FOLLOWER]],
                 configs={"segment.bytes": str(SEGMENT_BYTES)})
    producer = NumberedProducer(cluster.bootstrap(), topic, value_bytes=VALUE_BYTES).start()
    try:
        producer.wait_acked_from(WARM_UP_RECORDS, "warm-up", ACK_TIMEOUT_S)
        small_disk.fill(follower.disk, LEFT_FREE_BYTES)
        # Asked of nodes 1 and 2 only: node 3's metadata stops where its disk filled up.
        wait_isr(cluster, topic, [1, 2], ISR_TIMEOUT_S, askers=in_sync)
        number, _ = producer.mark()
        producer.wait_acked_from(number + RECORDS_PAST_FULL, "past the follower's free space",
                                 ACK_TIMEOUT_S)
        producer.stop()
    finally:
        producer.abort()
    read, acked = check_history(cluster.bootstrap(in_sync), topic, producer)
    print(f"{producer.sent} records offered, {acked} acknowledged, {read} read back; "
          f"producer errors: {producer.error_summary()}")
    _check_full_follower(cluster, topic)

    small_disk.drain(follower.disk)
    drained_at = time.monotonic()
    wait_isr_whole(cluster, topic, REJOIN_UNAIDED_S)
    rejoined_s = time.monotonic() - drained_at
    assert follower.is_running() and follower.starts == 1, follower.log_tail()
    wait_replicas_identical(cluster, topic, [1, 2, FOLLOWER])
    print(f"node {FOLLOWER} rejoined the ISR {rejoined_s:.2f} s after its disk had space again, "
          f"without a restart")
    follower.kill9()
    follower.start()
    wait_isr_whole(cluster, topic, REJOIN_TIMEOUT_S)
    wait_replicas_identical(cluster, topic, [1, 2, FOLLOWER])
