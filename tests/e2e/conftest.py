"""Fixtures for Sluice's end-to-end tests: a real `sluice serve` process per test.

Nothing is built here: scripts/test runs `cargo build --release --workspace` first,
and this file only locates target/release/sluice relative to the repository root.
"""

import atexit
import os
import random
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SLUICE_BIN = Path(os.environ.get("SLUICE_BIN", REPO_ROOT / "target" / "release" / "sluice"))

# How long the broker may take to accept a TCP connection after it is started.
BROKER_START_TIMEOUT_S = 30.0
# How long the broker may take to exit after SIGTERM before the test fails.
BROKER_STOP_TIMEOUT_S = 20.0
# Lines of the broker's log printed when a test fails.
LOG_TAIL_LINES = 150
# Shards the broker runs with in every test: partitions then land on both.
BROKER_SHARDS = 2

# ApiVersions v0 (api key 18), correlation id 1, client id "ready": what readiness waits to see answered.
_READY_PROBE_BODY = struct.pack(">hhih", 18, 0, 1, 5) + b"ready"
READY_PROBE_REQUEST = struct.pack(">i", len(_READY_PROBE_BODY)) + _READY_PROBE_BODY

# Every process started here, so that none outlives the test run, even on an abort.
_live_processes = set()


def _kill_leftovers():
    for proc in list(_live_processes):
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


atexit.register(_kill_leftovers)


class BrokerError(AssertionError):
    pass


def free_port():
    """A free port on 127.0.0.1 below the kernel's ephemeral range.

    Outside that range no client connection can take the broker's port as its own source port
    while the broker is down for a restart (nor connect to itself on it). Each candidate is
    checked by binding it; if none is free, the kernel picks one (port 0).
    """
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            low = int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    candidates = random.Random().sample(range(10000, max(low, 10001)), k=min(50, max(low - 10000, 1)))
    for port in candidates + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            if not listening_on(sock.getsockname()[1]):
                return sock.getsockname()[1]
    raise BrokerError("no free port on 127.0.0.1")


def listening_on(port):
    """True if some IPv4 TCP socket is in LISTEN state on `port` (from /proc/net/tcp)."""
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state == "0A" and int(local.split(":")[1], 16) == port:
                return True
    return False


class Broker:
    """One `sluice serve` process with a fixed port and data directory across restarts."""

    def __init__(self, workdir: Path, port: int, shards: int = BROKER_SHARDS, extra_args=()):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "broker.log"
        self.host = "127.0.0.1"
        self.port = port
        self.bootstrap = f"{self.host}:{port}"
        self.shards = shards
        self.extra_args = [str(arg) for arg in extra_args]
        self.proc = None
        self.starts = 0

    # --- lifecycle -------------------------------------------------------------------------

    def command(self):
        return [
            str(SLUICE_BIN),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            self.bootstrap,
            "--shards",
            str(self.shards),
        ] + self.extra_args

    def start(self, timeout_s: float = BROKER_START_TIMEOUT_S):
        """Start the broker and return once its port accepts a TCP connection."""
        if self.proc is not None and self.proc.poll() is None:
            raise BrokerError("broker is already running")
        if not SLUICE_BIN.exists():
            raise BrokerError(f"{SLUICE_BIN} does not exist: run scripts/test (it builds it)")
        self.starts += 1
        env = dict(os.environ)
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("RUST_LOG", "info")
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                start_new_session=True,
            )
        _live_processes.add(self.proc)
        self.wait_until_accepting(timeout_s)

    def wait_until_accepting(self, timeout_s: float):
        """Wait until the port accepts a TCP connection that answers an ApiVersions v0 request.

        Asking for an answer, not only a connection, keeps a listener that is still being torn
        down from an earlier process from passing for the new broker.
        """
        deadline = time.monotonic() + timeout_s
        last_error = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(
                    f"broker exited with code {self.proc.returncode} before accepting connections\n"
                    + self.log_tail()
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                    sock.settimeout(2.0)
                    # ApiVersions v0, correlation id 1, client id "ready".
                    sock.sendall(READY_PROBE_REQUEST)
                    if len(sock.recv(4)) == 4:
                        return
                    last_error = "connection closed without an ApiVersions answer"
            except OSError as error:
                last_error = error
            # Poll interval of a bounded wait, not synchronisation by sleeping.
            time.sleep(0.05)
        raise BrokerError(
            f"broker did not accept connections on {self.bootstrap} within {timeout_s}s "
            f"(last error: {last_error})\n" + self.log_tail()
        )

    def is_running(self):
        return self.proc is not None and self.proc.poll() is None

    def assert_running(self):
        if not self.is_running():
            code = None if self.proc is None else self.proc.returncode
            raise BrokerError(f"broker is not running (exit code {code})\n" + self.log_tail())

    def stop(self, timeout_s: float = BROKER_STOP_TIMEOUT_S):
        """SIGTERM, wait for the exit, and return the exit code.

        A broker that does not exit in time is killed and the call fails.
        """
        self.assert_running()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise BrokerError(f"broker did not exit within {timeout_s}s of SIGTERM\n" + self.log_tail())
        finally:
            _live_processes.discard(self.proc)
        self.wait_port_released()
        # A clean shutdown exits 0; a broker without a handler dies of the signal. Anything
        # else (a panic is 101) is a failure.
        if code not in (0, -signal.SIGTERM):
            raise BrokerError(f"broker exited with code {code} after SIGTERM\n" + self.log_tail())
        return code

    def restart(self):
        """SIGTERM, wait, and start again on the same port and data directory."""
        self.stop()
        self.start()

    def kill9(self):
        """SIGKILL the broker (no chance to flush anything) and reap it."""
        self.assert_running()
        self.proc.kill()
        self.proc.wait(timeout=10)
        _live_processes.discard(self.proc)
        self.wait_port_released()

    def wait_port_released(self, timeout_s: float = BROKER_STOP_TIMEOUT_S):
        """Wait until no socket listens on the port any more.

        The broker's io_uring executors can keep a listening socket open for a few milliseconds
        after the process has been reaped (the kernel cancels their pending accepts
        asynchronously). A connection that lands there is accepted and then reset, so a restart
        waits for the listener to be gone first.
        """
        deadline = time.monotonic() + timeout_s
        while listening_on(self.port):
            if time.monotonic() >= deadline:
                raise BrokerError(f"a socket still listens on port {self.port} {timeout_s}s after the broker exited")
            time.sleep(0.01)

    def close(self):
        """Stop at teardown; returns an error text if the broker misbehaved, else None."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            _live_processes.discard(self.proc)
            code = self.proc.returncode
            if code == -signal.SIGKILL:
                return None  # the test killed it on purpose and did not restart it
            return f"broker exited on its own during the test with code {code}"
        try:
            self.stop()
        except BrokerError as error:
            return str(error).splitlines()[0]
        return None

    # --- diagnostics -----------------------------------------------------------------------

    def log_tail(self, lines: int = LOG_TAIL_LINES):
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no broker log)"
        tail = text.splitlines()[-lines:]
        return f"----- last {len(tail)} lines of {self.log_path} -----\n" + "\n".join(tail)

    def rss_bytes(self):
        """Resident memory of the broker process, from /proc."""
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise BrokerError("VmRSS not found")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "report_" + report.when, report)


def _test_failed(item):
    return any(
        getattr(item, "report_" + when, None) is not None and getattr(item, "report_" + when).failed
        for when in ("setup", "call")
    )


@pytest.fixture
def broker(request, tmp_path):
    """A fresh broker on a free port with a fresh data directory and two shards.

    `@pytest.mark.broker_args("--internal-segment-bytes", 65536)` adds arguments to `sluice serve`.
    """
    marker = request.node.get_closest_marker("broker_args")
    instance = Broker(tmp_path / "broker", free_port(), extra_args=marker.args if marker else ())
    try:
        instance.start()
    except BrokerError:
        instance.close()
        raise
    yield instance
    failed = _test_failed(request.node)
    if failed:
        # State at the moment of failure, before teardown changes it.
        print(f"\nbroker running: {instance.is_running()}; a socket listens on port {instance.port}: "
              f"{listening_on(instance.port)}")
    problem = instance.close()
    if failed or problem:
        print(f"\n{instance.log_tail()}\n")
    if problem:
        pytest.fail(f"broker teardown: {problem}\n{instance.log_tail(40)}", pytrace=False)
