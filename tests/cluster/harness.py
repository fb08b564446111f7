"""A cluster of real `sluice serve` processes for the multi-process tests.

`Cluster` starts N brokers (node ids 1..N, every one a controller voter), each on its own address
(see network.py) with Kafka port 9092 and controller port 9093, its own data directory and log.
Operations: kill -9 and restart a node (same data directory), SIGSTOP/SIGCONT, cut a link or
isolate a node (network namespaces only), heal. Every wait is bounded, and `close` undoes
everything: the fixtures call it on every exit path, an atexit hook after an abort, and the next
run's `network.sweep_leftovers` after a kill.
"""

import atexit
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import network
import small_disk

REPO_ROOT = Path(__file__).resolve().parents[2]
SLUICE_BIN = Path(os.environ.get("SLUICE_BIN", REPO_ROOT / "target" / "release" / "sluice"))

KAFKA_PORT = 9092
CONTROLLER_PORT = 9093
# Shards per broker: partitions and the controller shard then differ within each broker too.
BROKER_SHARDS = 2
# How long a broker may take to answer its first request after it is started.
BROKER_START_TIMEOUT_S = 30.0
# How long a broker may take to exit after SIGTERM at teardown before it is killed.
BROKER_STOP_TIMEOUT_S = 10.0
# `--controlled-shutdown-timeout-ms` of the tests' brokers: how long a broker stopping on SIGTERM
# waits for its leaderships to move; below BROKER_STOP_TIMEOUT_S, so that a broker whose cluster
# cannot move them (the others dead) still exits by itself at teardown.
CONTROLLED_SHUTDOWN_TIMEOUT_MS = 5000
# Session timeout the tests give brokers (`--session-timeout-ms`): fencing within a few seconds.
SESSION_TIMEOUT_MS = 3000
# Lines of each broker's log printed when a test fails.
LOG_TAIL_LINES = 60

# ApiVersions v0, correlation id 1, client id "ready": what readiness waits to see answered.
_READY_BODY = struct.pack(">hhih", 18, 0, 1, 5) + b"ready"
READY_REQUEST = struct.pack(">i", len(_READY_BODY)) + _READY_BODY


class ClusterError(AssertionError):
    pass


def wait_until(what, probe, timeout_s, interval_s=0.1):
    """Call `probe` until it returns something truthy and return that; fail after `timeout_s`
    with `what` and the last value (or exception) it saw."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except Exception as error:  # noqa: BLE001 - reported below if it never succeeds
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() >= deadline:
            raise ClusterError(f"{what}: not within {timeout_s}s; last: {last}")
        # Poll interval of a bounded wait, not synchronisation by sleeping.
        time.sleep(interval_s)


def serve_flags():
    """The options `sluice serve --help` lists, so the harness runs against what is built."""
    result = subprocess.run([str(SLUICE_BIN), "serve", "--help"], capture_output=True, text=True,
                            timeout=30)
    return {word.rstrip(",") for word in result.stdout.split() if word.startswith("--")}


# Clusters made by this process: each gets its own names and subnet.
_clusters_made = 0

# Every broker process of this run, so that none outlives it even after an abort.
_live_processes = set()


def _kill_live_processes():
    for proc in list(_live_processes):
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


# Clusters not closed yet: an abort that skips the fixtures' finalizers still removes them.
_open_clusters = set()


def _close_open_clusters():
    _kill_live_processes()
    for cluster in list(_open_clusters):
        cluster.close()


atexit.register(_close_open_clusters)


class Node:
    """One broker of the cluster: fixed node id, address and data directory across restarts."""

    def __init__(self, cluster, node_id):
        self.cluster = cluster
        self.id = node_id
        self.host = cluster.network.ip(node_id)
        self.port = KAFKA_PORT
        self.bootstrap = f"{self.host}:{KAFKA_PORT}"
        self.workdir = cluster.workdir / f"node-{node_id}"
        self.data_dir = self.workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "broker.log"
        self.proc = None
        # The process `terminate` stopped: its exit is not a crash.
        self.terminated_proc = None
        self.paused = False
        self.starts = 0
        self.disk = None

    def use_small_disk(self, size_mib):
        """Put the data directory on a new filesystem of `size_mib` MiB (before any start); the
        mount point is listed in the cluster's state for the sweep after a killed run."""
        mountpoint = self.workdir / "disk"
        with open(self.cluster.state_dir / "mounts", "a") as mounts:
            mounts.write(f"{mountpoint}\n")
        small_disk.mount(self.workdir / "disk.img", mountpoint, size_mib)
        self.disk = mountpoint
        self.data_dir = mountpoint / "data"
        self.data_dir.mkdir()

    def release_small_disk(self):
        if self.disk is not None:
            small_disk.unmount(self.disk)
            (self.workdir / "disk.img").unlink(missing_ok=True)
            self.disk = None

    def command(self):
        cluster = self.cluster
        args = [
            str(SLUICE_BIN), "serve",
            "--node-id", str(self.id),
            "--listen", self.bootstrap,
            "--data-dir", str(self.data_dir),
            "--shards", str(BROKER_SHARDS),
        ]
        if "--controller-voters" in cluster.flags:
            args += [
                "--controller-listen", f"{self.host}:{CONTROLLER_PORT}",
                "--controller-voters", cluster.voters(),
            ]
        if "--session-timeout-ms" in cluster.flags:
            args += ["--session-timeout-ms", str(cluster.session_timeout_ms)]
        if "--controlled-shutdown-timeout-ms" in cluster.flags:
            args += ["--controlled-shutdown-timeout-ms", str(CONTROLLED_SHUTDOWN_TIMEOUT_MS)]
        args += [str(a) for a in cluster.extra_args]
        return cluster.network.exec_prefix(self.id) + args + [
            str(a) for a in cluster.node_args.get(self.id, ())]

    def start(self, wait=True):
        """Start the broker; with `wait`, return once it answers an ApiVersions request."""
        if self.is_running():
            raise ClusterError(f"node {self.id} is already running")
        self.starts += 1
        env = dict(os.environ, RUST_BACKTRACE="1")
        env.setdefault("RUST_LOG", "info")
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, env=env, start_new_session=True)
        _live_processes.add(self.proc)
        self.cluster.record_pid(self.proc.pid)
        self.paused = False
        if wait:
            self.wait_answering()

    def answers(self, timeout_s=2.0):
        """Whether the broker answers an ApiVersions v0 request within `timeout_s`."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout_s) as sock:
                sock.settimeout(timeout_s)
                sock.sendall(READY_REQUEST)
                return len(sock.recv(4)) == 4
        except OSError:
            return False

    def wait_answering(self, timeout_s=BROKER_START_TIMEOUT_S):
        def probe():
            if not self.is_running():
                raise ClusterError(f"node {self.id} exited with code {self.proc.returncode}\n"
                                   + self.log_tail())
            return self.answers()
        wait_until(f"node {self.id} answering on {self.bootstrap}", probe, timeout_s)

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill9(self):
        """SIGKILL the broker and reap it; its data directory stays for a restart."""
        self._require_running()
        self.proc.kill()
        self.proc.wait(timeout=10)
        _live_processes.discard(self.proc)
        self.paused = False

    def terminate(self, timeout_s):
        """SIGTERM the broker and wait until it exits by itself (a controlled shutdown), at most
        `timeout_s`; returns its exit code. Fails (and kills it) if it is still running then."""
        self._require_running()
        self.terminated_proc = self.proc
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise ClusterError(f"node {self.id} still ran {timeout_s}s after SIGTERM\n"
                               + self.log_tail()) from None
        finally:
            _live_processes.discard(self.proc)
        return code

    def pause(self):
        """SIGSTOP, and wait until every thread has stopped (a signal stops each thread on its
        way back to user space, so a request could still be served right after the kill): the
        process keeps its sockets but answers nothing."""
        self._require_running()
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True
        wait_until(f"every thread of node {self.id} stopped",
                   lambda: all(state == "T" for state in self._thread_states()), timeout_s=5,
                   interval_s=0.01)

    def resume(self):
        self._require_running()
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False
        wait_until(f"every thread of node {self.id} running again",
                   lambda: "T" not in self._thread_states(), timeout_s=5, interval_s=0.01)

    def _thread_states(self):
        """The state letter of each of the process's threads (/proc/PID/task/TID/stat)."""
        states = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                states.append(task.joinpath("stat").read_text().rsplit(")", 1)[1].split()[0])
            except (OSError, IndexError):
                pass  # the thread ended meanwhile
        return states

    def stop(self):
        """At teardown: SIGCONT if paused, SIGTERM, and SIGKILL after BROKER_STOP_TIMEOUT_S.
        Returns a problem to report (the broker died on its own), else None."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            _live_processes.discard(self.proc)
            code = self.proc.returncode
            if code == -signal.SIGKILL or self.proc is self.terminated_proc:
                return None
            return f"node {self.id} exited on its own with code {code}"
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=BROKER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        _live_processes.discard(self.proc)
        return None

    def _require_running(self):
        if not self.is_running():
            code = None if self.proc is None else self.proc.returncode
            raise ClusterError(f"node {self.id} is not running (exit code {code})\n" + self.log_tail())

    def log_tail(self, lines=LOG_TAIL_LINES):
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log for node {self.id})"
        tail = text.splitlines()[-lines:]
        return f"----- last {len(tail)} lines of {self.log_path} -----\n" + "\n".join(tail)


class Cluster:
    """N brokers, node ids 1..N, all of them controller voters.

    `extra_args` go to every `sluice serve`, `node_args` ({node id: [args]}) to that node's
    only (its rack, say). The network is chosen by `network.choose`: link
    faults (`cut`, `isolate`, `heal`) exist only with namespaces, and `require_faults` skips a
    test without them. `small_disks` ({node id: MiB}) gives those nodes a data directory on a
    loop-mounted filesystem of that size (`small_disk.py`; `Node.disk` is its mount point).
    """

    def __init__(self, workdir, size=3, extra_args=(), session_timeout_ms=SESSION_TIMEOUT_MS,
                 network_kind=None, small_disks=None, node_args=None):
        if not SLUICE_BIN.exists():
            raise ClusterError(f"{SLUICE_BIN} does not exist: build it (cargo build --release)")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.run_id = os.getpid()
        global _clusters_made
        _clusters_made += 1
        self.index = _clusters_made
        self.state_dir = network.STATE_ROOT / f"{network.PREFIX}{self.run_id}c{self.index}"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)
        self.node_args = dict(node_args or {})
        self.session_timeout_ms = session_timeout_ms
        self.flags = serve_flags()
        node_ids = list(range(1, size + 1))
        self.network, self.netns_missing = network.choose(self.run_id, self.index, node_ids,
                                                          network_kind)
        _open_clusters.add(self)
        self.nodes = {}
        try:
            self.network.setup()
        except BaseException:
            self.close()
            raise
        self.nodes = {node_id: Node(self, node_id) for node_id in node_ids}
        for node_id, size_mib in (small_disks or {}).items():
            self.nodes[node_id].use_small_disk(size_mib)

    # --- lifecycle -------------------------------------------------------------------------

    def voters(self):
        return ",".join(f"{n}@{self.network.ip(n)}:{CONTROLLER_PORT}" for n in sorted(self.nodes))

    def record_pid(self, pid):
        with open(self.state_dir / "pids", "a") as pids:
            pids.write(f"{pid}\n")

    def start(self):
        """Start every node at once (a voter waits for the others), then wait for each."""
        for node in self.nodes.values():
            node.start(wait=False)
        for node in self.nodes.values():
            node.wait_answering()

    def close(self):
        """Stop every broker, heal the network and remove it. Returns problems to report."""
        problems = [p for p in (node.stop() for node in self.nodes.values()) if p]
        for node in self.nodes.values():
            node.release_small_disk()
        self.network.teardown()
        shutil.rmtree(self.state_dir, ignore_errors=True)
        _open_clusters.discard(self)
        return problems

    # --- access ----------------------------------------------------------------------------

    def node(self, node_id):
        return self.nodes[node_id]

    def running(self):
        return [node for node in self.nodes.values() if node.is_running() and not node.paused]

    def bootstrap(self, nodes=None):
        return ",".join(node.bootstrap for node in (nodes or self.running()))

    # --- faults ----------------------------------------------------------------------------

    def require_faults(self):
        """Skip the calling test unless link faults can be made here."""
        import pytest

        if not self.network.faults:
            pytest.skip(f"{self.network.faults_missing} ({self.netns_missing})")

    def cut(self, a, b):
        self.require_faults()
        self.network.cut(a, b)

    def isolate(self, node_id):
        self.require_faults()
        self.network.isolate(node_id)

    def heal(self):
        if self.network.faults:
            self.network.heal()

    def in_namespace(self, node_id, command, timeout_s=10.0):
        """Run `command` in a broker's network namespace (as it sees the network)."""
        self.require_faults()
        return subprocess.run(self.network.exec_prefix(node_id) + command, capture_output=True,
                              text=True, timeout=timeout_s)

    # --- diagnostics -----------------------------------------------------------------------

    def describe(self):
        states = []
        for node in self.nodes.values():
            state = "paused" if node.paused else ("running" if node.is_running() else "down")
            states.append(f"node {node.id} at {node.bootstrap}: {state}")
        return f"network: {self.network.kind}; " + "; ".join(states)

    def log_tails(self):
        return "\n".join(node.log_tail() for node in self.nodes.values())
