"""Disk full on one follower (issue 14): node 3's data directory is on a 64 MiB filesystem
(small_disk.py) that a ballast file fills but for a few MiB; an idempotent acks=all producer on
an RF 3 / min.insync.replicas 2 topic with the replicas [1, 2, 3] writes past what is left.

Node 3's appends then fail with ENOSPC: it must keep running (no crash, no crash loop), leave
its log a clean prefix of the leader's (no torn or foreign batch), and drop out of the ISR, while
the producer goes on with the ISR {1, 2} (2 >= min.insync.replicas) and every acknowledged record
is read back once and in order (replication_check). Once the ballast is removed, node 3 resumes
fetching on its own, catches up and rejoins the ISR, and every replica holds the same log."""

import pytest

from clients import unique_topic
from replication_check import (
    NumberedProducer, check_history, create_topic, replica_batches, states_seen, wait_isr,
    wait_isr_whole, wait_replicas_identical)
import small_disk

FOLLOWER = 3
DISK_MIB = 64
# What the ballast leaves free: a few segments' worth, filled within seconds.
LEFT_FREE_BYTES = 4 << 20
VALUE_BYTES = 16 << 10
SEGMENT_BYTES = 1 << 20
LAG_MAX_MS = 2000
WARM_UP_RECORDS = 100
# Records acknowledged with node 3 out of the ISR: more than the space it had left.
RECORDS_PAST_FULL = 2 * LEFT_FREE_BYTES // VALUE_BYTES
# The ISR shrink: a lag time after the follower stops appending, plus the metadata commit.
ISR_TIMEOUT_S = 20.0
ACK_TIMEOUT_S = 30.0
# The follower's retry, catch-up and ISR expansion once there is space again.
REJOIN_TIMEOUT_S = 30.0

pytestmark = [
    pytest.mark.cluster_args("--replica-lag-time-max-ms", str(LAG_MAX_MS)),
    pytest.mark.cluster_small_disk(FOLLOWER, DISK_MIB),
    pytest.mark.timeout(180),
]


def test_a_follower_with_a_full_disk_leaves_the_isr_and_nothing_acknowledged_is_lost(cluster):
    follower = cluster.node(FOLLOWER)
    topic = unique_topic("disk-full")
    create_topic(cluster, topic, assignment=[[1, 2, FOLLOWER]],
                 configs={"segment.bytes": str(SEGMENT_BYTES)})
    producer = NumberedProducer(cluster.bootstrap(), topic, value_bytes=VALUE_BYTES).start()
    try:
        producer.wait_acked_from(WARM_UP_RECORDS, "warm-up", ACK_TIMEOUT_S)
        small_disk.fill(follower.disk, LEFT_FREE_BYTES)
        wait_isr(cluster, topic, [1, 2], ISR_TIMEOUT_S)
        number, _ = producer.mark()
        producer.wait_acked_from(number + RECORDS_PAST_FULL, "past the follower's free space",
                                 ACK_TIMEOUT_S)
        free = small_disk.free_bytes(follower.disk)
        assert free < VALUE_BYTES * 4, f"the follower's disk is not full: {free} bytes free"
        assert follower.is_running(), follower.log_tail()
        assert follower.starts == 1
        leader_log = replica_batches(cluster.node(1), topic)
        own = replica_batches(follower, topic)
        assert own and own == leader_log[:len(own)], (
            f"node {FOLLOWER}'s log is not a prefix of the leader's: {len(own)} batches, "
            f"the leader {len(leader_log)}")
        print(f"\nnode {FOLLOWER} full ({free} bytes free) with {len(own)} of the leader's "
              f"{len(leader_log)} batches; partition: {states_seen(cluster, topic)}")

        small_disk.drain(follower.disk)
        wait_isr_whole(cluster, topic, REJOIN_TIMEOUT_S)
        producer.stop()
        read, acked = check_history(cluster.bootstrap(), topic, producer)
        wait_replicas_identical(cluster, topic, [1, 2, FOLLOWER])
        print(f"{producer.sent} records offered, {acked} acknowledged, {read} read back; "
              f"producer errors: {producer.error_summary()}")
    finally:
        producer.abort()
