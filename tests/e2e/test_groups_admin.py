"""Consumer group administration with confluent_kafka's AdminClient (ListGroups, DescribeGroups,
OffsetFetch, OffsetCommit of an inactive group, DeleteGroups) and static membership
(group.instance.id): a static member that dies without LeaveGroup and comes back with the same
instance id within the session timeout gets its partitions back without a rebalance of the others,
and is evicted once it stays away longer than the session timeout."""

import time

from confluent_kafka import (ConsumerGroupState, ConsumerGroupTopicPartitions, ConsumerGroupType, KafkaError, KafkaException,
                             TopicPartition)
from confluent_kafka.admin import AdminClient

from e2e_util import CLIENT_TIMEOUT_S, confluent_base_config, create_topic, produce_records, unique_topic, wait_until
from test_groups_confluent import (
    ALL_PARTITIONS,
    CONSUME_TIMEOUT_S,
    JOIN_TIMEOUT_S,
    PARTITIONS,
    ChildMember,
    Member,
    assert_shared,
    poll_all,
)

ADMIN_TIMEOUT_S = 15


def admin_client(bootstrap):
    return AdminClient(confluent_base_config(bootstrap))


def list_groups(admin, **kwargs):
    result = admin.list_consumer_groups(request_timeout=ADMIN_TIMEOUT_S, **kwargs).result(timeout=CLIENT_TIMEOUT_S)
    assert not result.errors, result.errors
    return {listing.group_id: listing for listing in result.valid}


def describe_group(admin, group):
    return admin.describe_consumer_groups([group], request_timeout=ADMIN_TIMEOUT_S)[group].result(timeout=CLIENT_TIMEOUT_S)


def group_offsets(admin, group, topic, partitions=PARTITIONS):
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    result = admin.list_consumer_group_offsets([request], request_timeout=ADMIN_TIMEOUT_S)[group].result(
        timeout=CLIENT_TIMEOUT_S)
    assert result.group_id == group
    for tp in result.topic_partitions:
        assert tp.error is None, f"partition {tp.partition}: {tp.error}"
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def delete_group_error(admin, group):
    """None if DeleteGroups succeeded, else the KafkaError code."""
    try:
        admin.delete_consumer_groups([group], request_timeout=ADMIN_TIMEOUT_S)[group].result(timeout=CLIENT_TIMEOUT_S)
        return None
    except KafkaException as error:
        return error.args[0].code()


def assert_group_gone(admin, group):
    """DescribeGroups of a group that does not exist: state Dead (v0-v5) or GROUP_ID_NOT_FOUND."""
    try:
        description = describe_group(admin, group)
    except KafkaException as error:
        assert error.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND, error
        return
    assert description.state == ConsumerGroupState.DEAD and description.members == [], (description.state,
                                                                                         description.members)


def member_partitions(member_description):
    return sorted(tp.partition for tp in member_description.assignment.topic_partitions)


def test_admin_list_describe_offsets_delete(broker):
    topic = unique_topic("adm")
    group = unique_topic("adm-g")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    admin = admin_client(broker.bootstrap)
    expected = produce_records(broker.bootstrap, topic, 40, PARTITIONS, "adm")
    members = [Member(broker.bootstrap, group, topic, f"adm-client-{i}") for i in range(2)]
    try:
        assert_shared(members)
        wait_until(lambda: sum(len(m.records) for m in members) >= len(expected), CONSUME_TIMEOUT_S,
                   lambda: "; ".join(m.describe() for m in members), step=poll_all(members))
        assert sorted(members[0].records + members[1].records) == expected
        for member in members:
            member.consumer.commit(asynchronous=False)

        listed = list_groups(admin)
        assert group in listed, f"{group} not in {sorted(listed)}"
        assert listed[group].state == ConsumerGroupState.STABLE, listed[group]
        assert not listed[group].is_simple_consumer_group
        stable_only = list_groups(admin, states={ConsumerGroupState.STABLE})
        assert group in stable_only and all(g.state == ConsumerGroupState.STABLE for g in stable_only.values())
        assert group not in list_groups(admin, states={ConsumerGroupState.EMPTY})
        # ListGroups v5 (KIP-848): every group is classic, and a type filter selects by it.
        assert listed[group].type == ConsumerGroupType.CLASSIC, listed[group].type
        assert group in list_groups(admin, types={ConsumerGroupType.CLASSIC})
        assert group not in list_groups(admin, types={ConsumerGroupType.CONSUMER})

        description = describe_group(admin, group)
        assert description.group_id == group
        assert description.state == ConsumerGroupState.STABLE, description.state
        assert not description.is_simple_consumer_group
        assert description.partition_assignor == "range", description.partition_assignor
        described = {m.member_id: m for m in description.members}
        assert sorted(described) == sorted(m.consumer.memberid() for m in members), description.members
        for member in members:
            d = described[member.consumer.memberid()]
            assert d.client_id == member.name, d.client_id
            assert "127.0.0.1" in d.host, d.host
            assert d.group_instance_id is None, d.group_instance_id
            assert member_partitions(d) == sorted(member.assignment()), (d.assignment.topic_partitions, member.describe())
            assert all(tp.topic == topic for tp in d.assignment.topic_partitions)

        assert group_offsets(admin, group, topic) == {p: 10 for p in range(PARTITIONS)}
        # A group with members cannot be deleted.
        assert delete_group_error(admin, group) == KafkaError.NON_EMPTY_GROUP
    finally:
        for member in members:
            member.close()  # LeaveGroup

    # Both left: the group is Empty, keeps its offsets, and can be deleted.
    description = describe_group(admin, group)
    assert description.state == ConsumerGroupState.EMPTY and description.members == [], (description.state,
                                                                                          description.members)
    listed = list_groups(admin, states={ConsumerGroupState.EMPTY})
    assert group in listed and listed[group].state == ConsumerGroupState.EMPTY, listed.get(group)
    assert group_offsets(admin, group, topic) == {p: 10 for p in range(PARTITIONS)}

    assert delete_group_error(admin, group) is None
    assert group not in list_groups(admin)
    assert group_offsets(admin, group, topic) == {p: -1001 for p in range(PARTITIONS)}, "offsets outlived the group"
    assert_group_gone(admin, group)
    # Deleting it again: the group does not exist any more.
    assert delete_group_error(admin, group) == KafkaError.GROUP_ID_NOT_FOUND

    # The deletion is persistent: after a restart the group and its offsets stay gone.
    broker.restart()
    admin = admin_client(broker.bootstrap)
    assert group not in list_groups(admin)
    assert group_offsets(admin, group, topic) == {p: -1001 for p in range(PARTITIONS)}
    assert_group_gone(admin, group)


def test_offset_delete_keeps_only_subscribed_topics_of_an_active_group(broker):
    """OffsetDelete on a group with a member: partitions of the topic it subscribes to answer
    GROUP_SUBSCRIBED_TO_TOPIC and keep their offsets, the request itself succeeds, and the
    offsets of another topic are deleted (librdkafka 0081)."""
    from kafka import TopicPartition as KafkaTopicPartition
    from kafka.admin import KafkaAdminClient
    from kafka.errors import GroupSubscribedToTopicError, NoError

    consumed, other = unique_topic("odel"), unique_topic("odel-other")
    group = unique_topic("odel-g")
    create_topic(broker.bootstrap, consumed, PARTITIONS)
    create_topic(broker.bootstrap, other, PARTITIONS)
    admin = admin_client(broker.bootstrap)
    member = Member(broker.bootstrap, group, consumed, "odel-client")
    deleter = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=ADMIN_TIMEOUT_S * 1000)
    try:
        assert_shared([member])
        offsets = [TopicPartition(t, 0, 7) for t in (consumed, other)]
        member.consumer.commit(offsets=offsets, asynchronous=False)
        outcome = deleter.delete_group_offsets(group, [KafkaTopicPartition(t, 0) for t in (consumed, other)])
        assert outcome == {
            KafkaTopicPartition(consumed, 0): GroupSubscribedToTopicError,
            KafkaTopicPartition(other, 0): NoError,
        }, outcome
        assert group_offsets(admin, group, consumed, 1) == {0: 7}
        assert group_offsets(admin, group, other, 1) == {0: -1001}
    finally:
        deleter.close()
        member.close()


def test_admin_alter_offsets_of_inactive_group(broker):
    topic = unique_topic("adm-alter")
    group = unique_topic("adm-alter-g")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    admin = admin_client(broker.bootstrap)
    expected = produce_records(broker.bootstrap, topic, 40, PARTITIONS, "adm-alter")
    # The group has no members (it does not even exist yet): OffsetCommit with generation -1.
    wanted = {p: 2 + 2 * p for p in range(PARTITIONS)}
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in wanted.items()])
    result = admin.alter_consumer_group_offsets([request], request_timeout=ADMIN_TIMEOUT_S)[group].result(
        timeout=CLIENT_TIMEOUT_S)
    assert {tp.partition: (tp.offset, tp.error) for tp in result.topic_partitions} == {
        p: (o, None) for p, o in wanted.items()
    }
    assert group_offsets(admin, group, topic) == wanted
    assert describe_group(admin, group).state == ConsumerGroupState.EMPTY
    assert group in list_groups(admin, states={ConsumerGroupState.EMPTY})

    # Altered again (the group is still inactive), then a member starts exactly there.
    wanted = {p: 1 + 3 * p for p in range(PARTITIONS)}
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in wanted.items()])
    admin.alter_consumer_group_offsets([request], request_timeout=ADMIN_TIMEOUT_S)[group].result(timeout=CLIENT_TIMEOUT_S)
    assert group_offsets(admin, group, topic) == wanted
    tail = [r for r in expected if r[1] >= wanted[r[0]]]
    member = Member(broker.bootstrap, group, topic, "adm-alter-member")
    try:
        wait_until(lambda: len(member.records) >= len(tail), JOIN_TIMEOUT_S + CONSUME_TIMEOUT_S, member.describe,
                   step=poll_all([member]))
        assert sorted(member.records) == tail
        # While the member is active, a commit without its generation is refused.
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 0)])
        future = admin.alter_consumer_group_offsets([request], request_timeout=ADMIN_TIMEOUT_S)[group]
        try:
            result = future.result(timeout=CLIENT_TIMEOUT_S)
            errors = [tp.error for tp in result.topic_partitions]
        except KafkaException as error:
            errors = [error.args[0]]
        assert errors and all(e is not None and e.code() in (KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION)
                              for e in errors), errors
        assert group_offsets(admin, group, topic) == wanted
    finally:
        member.close()


STATIC_SESSION_TIMEOUT_MS = 8000


def test_static_member_rejoins_without_rebalance_and_is_evicted_later(broker):
    topic = unique_topic("adm-static")
    group = unique_topic("adm-static-g")
    create_topic(broker.bootstrap, topic, PARTITIONS)
    admin = admin_client(broker.bootstrap)
    static = {"group.instance.id": "static-a", "session.timeout.ms": STATIC_SESSION_TIMEOUT_MS}
    # The dynamic member joins first and so leads the group; the static one is a follower.
    dynamic = Member(broker.bootstrap, group, topic, "adm-dynamic")
    children = []
    try:
        wait_until(lambda: dynamic.assignment() == ALL_PARTITIONS, JOIN_TIMEOUT_S, dynamic.describe,
                   step=poll_all([dynamic]))
        first = ChildMember(broker.bootstrap, group, topic, "adm-static-1", **static)
        children.append(first)

        def step():
            dynamic.poll(0.05)
            for child in children:
                child.update()

        assert_shared([first, dynamic], step=step)
        static_partitions = first.assignment()
        dynamic_partitions = dynamic.assignment()
        description = describe_group(admin, group)
        by_instance = {m.group_instance_id: m for m in description.members}
        assert description.state == ConsumerGroupState.STABLE
        assert set(by_instance) == {"static-a", None}, description.members
        assert by_instance["static-a"].member_id == first.member_id
        assert member_partitions(by_instance["static-a"]) == sorted(static_partitions)
        dynamic_events = list(dynamic.events)

        # SIGKILL: no LeaveGroup. The same instance id comes back before the session timeout. The
        # new incarnation's process is started first, so the bound below does not include a
        # Python start on a loaded machine, only making the consumer and joining.
        second = ChildMember(broker.bootstrap, group, topic, "adm-static-2", gated=True, **static)
        children.append(second)
        second.wait_ready()
        first.kill9()
        killed_at = time.monotonic()
        second.go()
        wait_until(lambda: second.assignment(), STATIC_SESSION_TIMEOUT_MS / 1000, second.describe, step=step)
        rejoined = second.assigned_at - killed_at
        assert second.assignment() == static_partitions, second.describe()
        print(f"static member rejoined {rejoined:.2f}s after the kill")

        description = describe_group(admin, group)
        by_instance = {m.group_instance_id: m for m in description.members}
        assert description.state == ConsumerGroupState.STABLE, description.state
        assert set(by_instance) == {"static-a", None}, description.members
        assert by_instance["static-a"].member_id == second.member_id
        assert by_instance[None].member_id == dynamic.consumer.memberid()
        assert member_partitions(by_instance["static-a"]) == sorted(static_partitions)
        assert member_partitions(by_instance[None]) == sorted(dynamic_partitions)

        # No rebalance of the dynamic member, not even once the old incarnation's session would
        # have expired: polled until then, its callbacks stay silent and it keeps its partitions.
        wait_until(lambda: time.monotonic() > killed_at + STATIC_SESSION_TIMEOUT_MS / 1000 + 2 * 1.0,
                   STATIC_SESSION_TIMEOUT_MS / 1000 + 5.0, dynamic.describe, step=step)
        assert dynamic.events == dynamic_events, dynamic.describe()
        assert dynamic.assignment() == dynamic_partitions
        assert second.assignment() == static_partitions and second.proc.poll() is None, second.describe()

        # The records of both go to their owners.
        expected = produce_records(broker.bootstrap, topic, 40, PARTITIONS, "adm-static")
        wait_until(lambda: len(dynamic.records) + len(second.records) >= len(expected), CONSUME_TIMEOUT_S,
                   lambda: f"{dynamic.describe()}; {second.describe()}", step=step)
        assert sorted(dynamic.records + second.records) == expected

        # Gone for longer than the session timeout: the static member is evicted and the dynamic
        # member is given every partition.
        second.kill9()
        killed_at = time.monotonic()
        took = wait_until(lambda: dynamic.assignment() == ALL_PARTITIONS, STATIC_SESSION_TIMEOUT_MS / 1000 + 6.0,
                          dynamic.describe, step=step)
        assert took >= STATIC_SESSION_TIMEOUT_MS / 1000 - 1.0, f"static member evicted after only {took:.2f}s"
        description = describe_group(admin, group)
        assert [m.member_id for m in description.members] == [dynamic.consumer.memberid()], description.members
    finally:
        for child in children:
            child.stop()
        dynamic.close()
