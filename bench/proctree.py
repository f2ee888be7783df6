"""A server's process tree from /proc: its pids, summed RSS, CPU time, and waiting for it to go quiet.

No psutil: children come from ``/proc/<pid>/task/*/children``, memory from
``VmRSS`` in ``/proc/<pid>/status``, CPU from fields 14-15 of ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tree_pids(root: int) -> list[int]:
    """``root`` and every descendant that is alive now."""
    pids = [root]
    index = 0
    while index < len(pids) and index < 10_000:
        pid = pids[index]
        index += 1
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                pids.extend(int(child) for child in children.read_text().split())
            except OSError:
                continue
    return pids


def rss_kib(pid: int) -> int:
    """Resident set size of one process in KiB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def tree_rss_kib(root: int) -> int:
    """RSS summed over the process tree, in KiB."""
    return sum(rss_kib(pid) for pid in tree_pids(root))


def socket_count(pid: int) -> int:
    """Open sockets of one process (``/proc/<pid>/fd`` links to ``socket:[…]``)."""
    count = 0
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                count += os.readlink(fd).startswith("socket:")
    except OSError:
        return 0
    return count


def busiest_socket_count(root: int) -> int:
    """The most sockets any one process of the tree holds (each must stay under the open-files limit)."""
    return max(socket_count(pid) for pid in tree_pids(root))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime: fields 14 and 15


def tree_cpu_seconds(root: int) -> float:
    return sum(cpu_seconds(pid) for pid in tree_pids(root))


def wait_quiet(
    roots: list[int], *, timeout: float, interval: float = 0.3, threshold: float = 0.05, quiet_for: float = 0.0
) -> float:
    """Wait until the trees together use under ``threshold`` of a core over ``interval``; the seconds waited.

    With ``quiet_for``, every interval must stay under it for that long in a row (work the server does a
    moment after its load stops, such as a garbage collection, resets the count). Bounded by ``timeout``:
    a server that keeps busy (timers, a stuck loop) does not hang the run.
    """
    started = time.monotonic()
    previous = sum(tree_cpu_seconds(root) for root in roots)
    quiet = 0.0
    while time.monotonic() - started < timeout:
        time.sleep(interval)
        current = sum(tree_cpu_seconds(root) for root in roots)
        quiet = quiet + interval if current - previous < threshold * interval else 0.0
        if quiet > 0 and quiet >= quiet_for:
            break
        previous = current
    return time.monotonic() - started
