"""A small ext4 filesystem in a loop-mounted image file, for a broker whose disk fills up.

`mount` makes and mounts one (root only) and checks that O_DIRECT writes work on it, as the
broker's storage needs; `fill` leaves a chosen number of bytes free with a ballast file, so that
a test fills the disk in seconds; `unmount` undoes the mount (the loop device goes with it).
"""

import mmap
import os
import subprocess
from pathlib import Path

# Bound of each mount, mkfs and umount command.
COMMAND_TIMEOUT_S = 30.0
# The block a direct-I/O probe writes: 4 KiB, aligned by mmap.
DIRECT_IO_PROBE_BYTES = 4096
BALLAST = "ballast"


def _run(command):
    result = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}: "
                           f"{result.stderr.strip()}")


def usable():
    """None if loop-mounted filesystems can be made here, else why not."""
    if os.geteuid() != 0:
        return "not running as root"
    if not Path("/dev/loop-control").exists():
        return "no /dev/loop-control"
    return None


def mount(image, mountpoint, size_mib):
    """Make an ext4 image of `size_mib` MiB at `image` and mount it at `mountpoint`; fail unless
    O_DIRECT writes work on it."""
    image, mountpoint = Path(image), Path(mountpoint)
    mountpoint.mkdir(parents=True, exist_ok=True)
    with open(image, "wb") as file:
        file.truncate(size_mib << 20)
    _run(["mkfs.ext4", "-q", "-F", str(image)])
    _run(["mount", "-o", "loop", str(image), str(mountpoint)])
    probe = mountpoint / "direct-io-probe"
    block = mmap.mmap(-1, DIRECT_IO_PROBE_BYTES)
    block.write(b"p" * DIRECT_IO_PROBE_BYTES)
    try:
        fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_DIRECT, 0o600)
        try:
            written = os.write(fd, block)
        finally:
            os.close(fd)
        if written != DIRECT_IO_PROBE_BYTES:
            raise RuntimeError(f"an O_DIRECT write on {mountpoint} wrote {written} bytes")
    except BaseException:
        unmount(mountpoint)
        raise
    probe.unlink()


def unmount(mountpoint):
    """Unmount `mountpoint` if it is mounted (lazily if busy: a process may still hold it)."""
    if not os.path.ismount(mountpoint):
        return
    result = subprocess.run(["umount", str(mountpoint)], capture_output=True,
                            timeout=COMMAND_TIMEOUT_S)
    if result.returncode != 0:
        _run(["umount", "-l", str(mountpoint)])


def free_bytes(mountpoint):
    stat = os.statvfs(mountpoint)
    return stat.f_bavail * stat.f_frsize


def fill(mountpoint, leave_bytes):
    """Take all but `leave_bytes` of the free space with a ballast file."""
    take = free_bytes(mountpoint) - leave_bytes
    if take <= 0:
        return
    fd = os.open(Path(mountpoint) / BALLAST, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        os.posix_fallocate(fd, 0, take)
    finally:
        os.close(fd)


def drain(mountpoint):
    """Remove the ballast: the space comes back."""
    (Path(mountpoint) / BALLAST).unlink(missing_ok=True)
