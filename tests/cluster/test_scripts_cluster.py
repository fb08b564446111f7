"""scripts/cluster, the development cluster: up starts N voters that form one cluster, status
reports them and the controller, down stops every process, down --purge removes the directory."""

import os
import shutil
import subprocess

from harness import REPO_ROOT, SLUICE_BIN, wait_until
from network import LOOPBACK_NET, PREFIX, STATE_ROOT

SCRIPT = REPO_ROOT / "scripts" / "cluster"
# Bound of one scripts/cluster command (up waits at most 30 s per node).
SCRIPT_TIMEOUT_S = 120


def _run(args, net):
    env = dict(os.environ, SLUICE_BIN=str(SLUICE_BIN), SLUICE_CLUSTER_NET=net)
    result = subprocess.run([str(SCRIPT)] + args, capture_output=True, text=True, env=env,
                            timeout=SCRIPT_TIMEOUT_S)
    assert result.returncode == 0, f"scripts/cluster {args}: {result.stdout}\n{result.stderr}"
    return result.stdout


def _status(net, workdir):
    return _run(["status", "--dir", str(workdir)], net)


def _formed(net, workdir):
    """The status text once it names a controller and three live brokers, else None."""
    text = _status(net, workdir)
    return text if "Controller: -1" not in text and text.count("State: live") == 3 else None


def test_up_status_down(tmp_path):
    # Addresses of their own (127.77.251.x; the harness's clusters use 127.77.1-250.x), so a
    # developer's cluster on 127.0.1.x is left alone.
    net = f"{LOOPBACK_NET}.251"
    workdir = tmp_path / "dev-cluster"
    pids = []
    state = STATE_ROOT / f"{PREFIX}{os.getpid()}script"
    try:
        up = _run(["up", "3", "--dir", str(workdir), "--", "--session-timeout-ms", "3000"], net)
        assert f"bootstrap servers: {net}.1:9092,{net}.2:9092,{net}.3:9092" in up, up
        pids = [int((workdir / f"node-{i}" / "pid").read_text()) for i in (1, 2, 3)]
        # Where the next run's sweep finds them if this one is killed before `down`.
        state.mkdir(parents=True, exist_ok=True)
        (state / "pids").write_text("".join(f"{pid}\n" for pid in pids))
        status = wait_until("status naming a controller and three live brokers",
                            lambda: _formed(net, workdir), timeout_s=30)
        for i in (1, 2, 3):
            assert f"node {i}: {net}.{i}:9092 running" in status, status
        assert _run(["up", "--dir", str(workdir)], net).count("already runs") == 3
    finally:
        down = _run(["down", "--dir", str(workdir)], net)
        shutil.rmtree(state, ignore_errors=True)
    assert down.count("stopped") == 3, down
    assert all(not os.path.exists(f"/proc/{pid}") or _zombie(pid) for pid in pids)
    assert "stopped" in _status(net, workdir)
    _run(["down", "--purge", "--dir", str(workdir)], net)
    assert not workdir.exists()


def _zombie(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
