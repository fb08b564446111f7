"""Fixtures for the multi-process cluster tests: N real `sluice serve` processes (harness.py).

Nothing is built here: scripts/test builds target/release/sluice first. At the start of a run the
leftovers of a run that was killed (its brokers, namespaces and links) are swept away; every
cluster is closed by its fixture's finalizer, by an atexit hook after an abort, and SIGTERM (a
timeout of scripts/test) becomes an interrupt so that both run.
"""

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.append(str(Path(__file__).resolve().parents[1] / "e2e"))  # kafka_wire

import harness  # noqa: E402
import network  # noqa: E402
import small_disk  # noqa: E402

# Arguments every test cluster runs with: a short group delay keeps consumer-group tests quick.
CLUSTER_ARGS = ("--group-initial-rebalance-delay-ms", "200")


def _interrupt_on_sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionstart(session):
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    removed = network.sweep_leftovers()
    if removed:
        print(f"\nremoved the leftovers of an earlier run: {', '.join(removed)}")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "report_" + report.when, report)


def _failed(item):
    return any(getattr(getattr(item, "report_" + when, None), "failed", False) for when in ("setup", "call"))


def _make(workdir, marker_args=(), **options):
    cluster = harness.Cluster(workdir, extra_args=CLUSTER_ARGS + tuple(marker_args), **options)
    try:
        cluster.start()
    except BaseException:
        print(f"\n{cluster.describe()}\n{cluster.log_tails()}")
        cluster.close()
        raise
    return cluster


def _finish(cluster, failed):
    if failed:
        print(f"\n{cluster.describe()}\n{cluster.log_tails()}\n")
    cluster.heal()
    problems = cluster.close()
    if problems:
        pytest.fail("cluster teardown: " + "; ".join(problems), pytrace=False)


def _flags_if_listed(pairs):
    """The (flag, value) pairs whose flag `sluice serve --help` lists, flattened."""
    listed = harness.serve_flags()
    return [str(word) for flag, value in pairs if flag in listed for word in (flag, value)]


@pytest.fixture
def cluster(request, tmp_path):
    """A fresh cluster of 3 brokers for a test that breaks it (kills, pauses, cuts links).

    `@pytest.mark.cluster_args("--flag", value)` adds arguments to every `sluice serve`;
    `@pytest.mark.cluster_args_if_listed(("--flag", value), ...)` adds those the binary lists
    (options that shorten a test but whose absence does not change what it checks);
    `@pytest.mark.cluster_size(n)` makes n brokers;
    `@pytest.mark.cluster_node_args({node_id: [args]})` adds arguments to one node's
    `sluice serve` only;
    `@pytest.mark.cluster_session_timeout_ms(ms)` replaces the harness's session timeout;
    `@pytest.mark.cluster_small_disk(node_id, mib)` puts that node's data on a filesystem of
    `mib` MiB (skipped where loop mounts cannot be made).
    """
    marker = request.node.get_closest_marker("cluster_args")
    args = list(marker.args if marker else ())
    marker = request.node.get_closest_marker("cluster_args_if_listed")
    args += _flags_if_listed(marker.args) if marker else []
    marker = request.node.get_closest_marker("cluster_size")
    size = marker.args[0] if marker else 3
    marker = request.node.get_closest_marker("cluster_session_timeout_ms")
    options = {"session_timeout_ms": marker.args[0]} if marker else {}
    marker = request.node.get_closest_marker("cluster_node_args")
    if marker:
        options["node_args"] = marker.args[0]
    marker = request.node.get_closest_marker("cluster_small_disk")
    if marker:
        why_not = small_disk.usable()
        if why_not:
            pytest.skip(f"a small data filesystem cannot be made here: {why_not}")
        options["small_disks"] = {marker.args[0]: marker.args[1]}
    instance = _make(tmp_path / "cluster", args, size=size, **options)
    yield instance
    _finish(instance, _failed(request.node))


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory):
    """One cluster of 3 brokers for the tests that leave it as they found it (they may add
    topics and groups, never stop, pause or cut anything)."""
    instance = _make(tmp_path_factory.mktemp("shared-cluster"))
    yield instance
    _finish(instance, False)


@pytest.fixture(autouse=True)
def _shared_cluster_logs_on_failure(request):
    yield
    if "shared_cluster" in request.fixturenames and _failed(request.node):
        instance = request.getfixturevalue("shared_cluster")
        print(f"\n{instance.describe()}\n{instance.log_tails()}\n")
