"""`sluice cluster describe` against one broker: the broker with its address and rack, the
controller (the broker itself, the only voter of its metadata quorum) and the metadata log's
position, which grows with each metadata change and survives a restart."""

import re

from confluent_kafka.admin import AdminClient

from e2e_util import confluent_base_config, run_sluice, unique_topic

import pytest


def describe(bootstrap):
    out = run_sluice(["cluster", "describe", "-b", bootstrap]).stdout
    cluster = re.search(r"(?m)^ClusterId: (\S+)\tController: (-?\d+)$", out)
    brokers = re.findall(r"(?m)^Broker: (\d+)\tAddress: (\S+)\tRack: (\S+)\tState: (\w+)$", out)
    log = re.search(r"(?m)^MetadataLog: Leader: (-?\d+)\tEpoch: (\d+)\tHighWatermark: (\d+)$", out)
    voters = re.findall(r"(?m)^Voter: (\d+)\tLogEndOffset: (\S+)\tLastContact: (.*)$", out)
    assert cluster and log, out
    return out, cluster.groups(), brokers, log.groups(), voters


@pytest.mark.broker_args("--rack", "rack-a")
def test_cli_cluster_describe_one_node(broker):
    bs = broker.bootstrap
    out, (cluster_id, controller), brokers, (leader, epoch, high_watermark), voters = describe(bs)
    metadata = AdminClient(confluent_base_config(bs)).list_topics(timeout=10)
    assert cluster_id == metadata.cluster_id, out
    assert controller == "0" and metadata.controller_id == 0, out
    assert brokers == [("0", bs, "rack-a", "live")], out
    assert leader == "0" and int(epoch) >= 1, out
    assert int(high_watermark) >= 1, out
    assert len(voters) == 1 and voters[0][0] == "0", out
    assert int(voters[0][1]) >= int(high_watermark), out
    # The broker reports itself as heard when it answers.
    contact = re.fullmatch(r"(\d+) ms ago", voters[0][2])
    assert contact and int(contact.group(1)) < 5000, out

    # A metadata change is one more committed entry of the log.
    run_sluice(["topic", "create", unique_topic("cli-cluster"), "-b", bs])
    out, _, _, (_, _, after_create), _ = describe(bs)
    assert int(after_create) > int(high_watermark), out

    # The log persists: a restart only adds to it (a new term, a new registration).
    broker.restart()
    out, (cluster_again, controller_again), brokers, (_, epoch_again, after_restart), _ = describe(bs)
    assert (cluster_again, controller_again) == (cluster_id, "0"), out
    assert brokers == [("0", bs, "rack-a", "live")], out
    assert int(epoch_again) > int(epoch), out
    assert int(after_restart) > int(after_create), out
