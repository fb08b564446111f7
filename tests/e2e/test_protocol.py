"""Protocol versions that real clients use, checked request by request over raw sockets.

Clients pin different versions: Debian's librdkafka 2.0.2 sends ListOffsets v2, KafkaJS v3,
a current librdkafka a flexible one. Every non-flexible version the broker advertises must
encode correctly, since a broker that fails to encode a response can only close the connection.
"""

import kafka_wire as wire
from e2e_util import create_topic, produce_sync, unique_topic


def test_list_offsets_every_advertised_non_flexible_version(broker):
    apis = wire.api_versions(broker)
    assert wire.API_LIST_OFFSETS in apis, apis
    low, high = apis[wire.API_LIST_OFFSETS]
    # librdkafka 2.0.2 needs v2 and KafkaJS v3 (Kafka itself supports v0 up to v8 and more).
    assert low <= 2 and high >= 3, f"ListOffsets versions {low}..{high}"

    topic = unique_topic("list-offsets")
    create_topic(broker.bootstrap, topic, 2)
    for i in range(3):
        produce_sync(broker.bootstrap, topic, f"v{i}".encode(), partition=1)

    failures = []
    for version in range(max(low, 1), min(high, 5) + 1):
        with wire.connect(broker) as sock:
            request = wire.list_offsets_request(
                100 + version, version, topic, [(0, wire.LATEST_TIMESTAMP), (1, wire.EARLIEST_TIMESTAMP)]
            )
            sock.sendall(request)
            outcome, payload = wire.answered_or_closed(sock)
            if outcome == "closed":
                failures.append(f"v{version}: connection closed instead of a response")
                continue
            correlation_id, answers = wire.parse_list_offsets_response(payload, version)
            assert correlation_id == 100 + version
            got = {key: (error, offset) for key, (error, _, offset) in answers.items()}
            if got != {(topic, 0): (0, 0), (topic, 1): (0, 0)}:
                failures.append(f"v{version}: {answers}")
                continue
            sock.sendall(wire.list_offsets_request(200 + version, version, topic, [(1, wire.LATEST_TIMESTAMP)]))
            _, answers = wire.parse_list_offsets_response(wire.read_response(sock), version)
            if {k: (e, o) for k, (e, _, o) in answers.items()} != {(topic, 1): (0, 3)}:
                failures.append(f"v{version} latest: {answers}")
    assert not failures, "ListOffsets failed at " + "; ".join(failures)
