"""What a contender's processes cost, read from /proc: CPU seconds and peak RSS.

Read from outside the process so the numbers hold for any tree under test (``--source``),
including the original one, and for a supervisor's worker children. Linux only, like the
benchmark's local stack.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """``pid`` and all its descendants that are alive now (workers of a supervisor)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its live descendants (0 for a vanished one)."""
    total = 0.0
    for member in family(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime
    return total


def peak_rss_mb(pid: int) -> list[float]:
    """Peak resident set (VmHWM) of ``pid`` and of each live descendant, in MB."""
    peaks = []
    for member in family(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds by thread name (librdkafka's ``rdk:*`` threads, Python's main thread…)
    over ``pid`` and its live descendants: whose CPU it is, Python's or the client's."""
    by_name: dict[str, float] = {}
    for member in family(pid):
        for task in Path(f"/proc/{member}/task").glob("*"):
            try:
                name = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            key = name.split("/")[0] if name.startswith("rdk:") else name
            by_name[key] = by_name.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / _TICKS
    return by_name
