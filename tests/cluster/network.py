"""Where the brokers of a test cluster live on the network, and the faults the harness can make.

Two kinds, chosen once per run:
- `Namespaces` (root and `ip netns` working): each broker in its own network namespace
  `slc<run>-n<id>` with a veth `eth0` to a bridge in the hub namespace `slc<run>-hub`, address
  10.213.<subnet>.<id>; the test process reaches them through a veth from the root namespace to the
  same bridge (10.213.<subnet>.254). `iptables` inside a broker's namespace cuts its links.
- `Loopback` (otherwise): each broker on its own address 127.77.<subnet>.<id>, with no faults
  but processes ones (kill -9, SIGSTOP).

Every name starts with `slc<run>c<k>` (run: the harness's pid; k: the cluster's number within the
run), so `sweep_leftovers` can remove what a killed run left behind without touching a run that is
still going.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

# Prefix of every namespace, link and state directory the harness creates.
PREFIX = "slc"
# First two octets of the namespace subnets (10.213.x.0/24, one x per run).
NETNS_NET = "10.213"
# First three-quarters of loopback addresses are 127.77.x (one x per run).
LOOPBACK_NET = "127.77"
# State of each run (pids of the brokers it started), for the sweep after a killed run.
STATE_ROOT = Path(os.environ.get("TMPDIR", "/tmp")) / "sluice-cluster-runs"
# Bound of every `ip`/`iptables` command.
COMMAND_TIMEOUT_S = 10.0

_NAME = re.compile(rf"^{PREFIX}(\d+)")


def run(command, check=True):
    """Run a network command (bounded); on failure raise with its output."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def _run_alive(run_id):
    """Whether the harness run `run_id` (its pid) still runs: a live python process."""
    try:
        with open(f"/proc/{run_id}/cmdline", "rb") as cmdline:
            return b"python" in cmdline.read()
    except OSError:
        return False


def _owner(name):
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def _kill_pid_if_sluice(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if b"sluice" not in cmdline.read():
                return
        os.kill(pid, 9)
    except (OSError, ValueError):
        pass


def sweep_leftovers():
    """Remove the brokers, namespaces, links and state of runs that died without cleaning up.

    Returns what it removed, for the log.
    """
    removed = []
    if STATE_ROOT.is_dir():
        for state in STATE_ROOT.iterdir():
            owner = _owner(state.name)
            if owner is None or _run_alive(owner):
                continue
            pids = state / "pids"
            if pids.exists():
                for line in pids.read_text().split():
                    _kill_pid_if_sluice(int(line))
            mounts = state / "mounts"  # small data filesystems (small_disk.py)
            if mounts.exists():
                for line in mounts.read_text().splitlines():
                    run(["umount", "-l", line], check=False)
            shutil.rmtree(state, ignore_errors=True)
            removed.append(str(state))
    if shutil.which("ip") is None or os.geteuid() != 0:
        return removed
    namespaces = run(["ip", "netns", "list"], check=False).stdout.split("\n")
    for line in namespaces:
        name = line.split(" ")[0]
        owner = _owner(name)
        if owner is None or _run_alive(owner):
            continue
        for pid in run(["ip", "netns", "pids", name], check=False).stdout.split():
            _kill_pid_if_sluice(int(pid))
        run(["ip", "netns", "del", name], check=False)
        removed.append(f"netns {name}")
    for line in run(["ip", "-o", "link", "show"], check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        owner = _owner(name)
        if owner is not None and not _run_alive(owner):
            run(["ip", "link", "del", name], check=False)
            removed.append(f"link {name}")
    return removed


def netns_usable():
    """(True, None) if this process can build namespaces with iptables in them, else (False, why)."""
    if os.geteuid() != 0:
        return False, "not running as root"
    if os.environ.get("SLUICE_CLUSTER_NETNS", "1") == "0":
        return False, "SLUICE_CLUSTER_NETNS=0"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return False, f"{tool} is not installed"
    probe = f"{PREFIX}{os.getpid()}-probe"
    try:
        run(["ip", "netns", "add", probe])
        try:
            run(["ip", "netns", "exec", probe, "iptables", "-w", "5", "-A", "INPUT", "-j", "ACCEPT"])
            run(["ip", "-n", probe, "link", "add", "probe0", "type", "bridge"])
        finally:
            run(["ip", "netns", "del", probe], check=False)
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as error:
        return False, f"ip netns or iptables does not work here: {error}"
    return True, None


def _used_third_octets(net):
    """Third octets of `net`.x.y addresses already configured in the root namespace."""
    used = set()
    text = run(["ip", "-4", "-o", "addr", "show"], check=False).stdout if shutil.which("ip") else ""
    for match in re.finditer(rf"inet {re.escape(net)}\.(\d+)\.", text):
        used.add(int(match.group(1)))
    return used


class Loopback:
    """Each broker on its own loopback address; no link faults."""

    kind = "loopback"
    faults = False
    faults_missing = "link faults need root and ip netns (brokers run on loopback addresses)"

    def __init__(self, run_id, cluster_index, node_ids):
        self.subnet = 1 + (run_id + cluster_index) % 250
        self.node_ids = list(node_ids)

    def setup(self):
        pass

    def ip(self, node_id):
        return f"{LOOPBACK_NET}.{self.subnet}.{node_id}"

    def exec_prefix(self, node_id):
        return []

    def teardown(self):
        pass


class Namespaces:
    """One network namespace per broker, bridged in a hub namespace; iptables cuts links."""

    kind = "netns"
    faults = True
    faults_missing = None

    def __init__(self, run_id, cluster_index, node_ids):
        self.node_ids = list(node_ids)
        used = _used_third_octets(NETNS_NET)
        self.subnet = next(
            (1 + (run_id + i) % 250 for i in range(250) if 1 + (run_id + i) % 250 not in used), None
        )
        if self.subnet is None:
            raise RuntimeError(f"every {NETNS_NET}.x.0/24 subnet is in use")
        self.base = f"{PREFIX}{run_id}c{cluster_index}"
        self.hub = f"{self.base}-hub"
        self.host_link = f"{self.base}h"
        self.created = []

    def ns(self, node_id):
        return f"{self.base}-n{node_id}"

    def ip(self, node_id):
        return f"{NETNS_NET}.{self.subnet}.{node_id}"

    def host_ip(self):
        return f"{NETNS_NET}.{self.subnet}.254"

    def exec_prefix(self, node_id):
        return ["ip", "netns", "exec", self.ns(node_id)]

    def setup(self):
        """Hub namespace with a bridge, a namespace and veth per broker, a veth from here."""
        run(["ip", "netns", "add", self.hub])
        self.created.append(self.hub)
        run(["ip", "-n", self.hub, "link", "set", "lo", "up"])
        run(["ip", "-n", self.hub, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", self.hub, "link", "set", "br0", "up"])
        for node_id in self.node_ids:
            ns, port = self.ns(node_id), f"{self.base}v{node_id}"
            run(["ip", "netns", "add", ns])
            self.created.append(ns)
            run(["ip", "link", "add", port, "netns", self.hub, "type", "veth", "peer", "name", "eth0",
                 "netns", ns])
            run(["ip", "-n", self.hub, "link", "set", port, "master", "br0", "up"])
            run(["ip", "-n", ns, "addr", "add", f"{self.ip(node_id)}/24", "dev", "eth0"])
            run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "link", "add", self.host_link, "type", "veth", "peer", "name", f"{self.base}p",
             "netns", self.hub])
        run(["ip", "-n", self.hub, "link", "set", f"{self.base}p", "master", "br0", "up"])
        run(["ip", "addr", "add", f"{self.host_ip()}/24", "dev", self.host_link])
        run(["ip", "link", "set", self.host_link, "up"])

    def _iptables(self, node_id, *rule):
        run(self.exec_prefix(node_id) + ["iptables", "-w", "5"] + list(rule))

    def cut(self, a, b):
        """Drop every packet between brokers a and b (both ways, in both namespaces)."""
        for here, there in ((a, b), (b, a)):
            self._iptables(here, "-A", "INPUT", "-s", self.ip(there), "-j", "DROP")
            self._iptables(here, "-A", "OUTPUT", "-d", self.ip(there), "-j", "DROP")

    def isolate(self, node_id):
        """Drop every packet of the broker's eth0: no other broker and no client reaches it."""
        self._iptables(node_id, "-A", "INPUT", "-i", "eth0", "-j", "DROP")
        self._iptables(node_id, "-A", "OUTPUT", "-o", "eth0", "-j", "DROP")

    def heal(self):
        """Remove every cut and isolation."""
        for node_id in self.node_ids:
            self._iptables(node_id, "-F", "INPUT")
            self._iptables(node_id, "-F", "OUTPUT")

    def teardown(self):
        """Delete the namespaces (their veths go with them) and the link from here. Processes
        must be gone first: a namespace with a process in it outlives its name."""
        run(["ip", "link", "del", self.host_link], check=False)
        for ns in reversed(self.created):
            run(["ip", "netns", "del", ns], check=False)
        self.created = []


def choose(run_id, cluster_index, node_ids, kind=None):
    """Namespaces when they work here (and `kind` is not "loopback"), else loopback addresses;
    and why not namespaces."""
    usable, why = (False, "loopback asked for") if kind == "loopback" else netns_usable()
    if usable:
        return Namespaces(run_id, cluster_index, node_ids), None
    return Loopback(run_id, cluster_index, node_ids), why
