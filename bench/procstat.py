"""CPU time of the contenders' processes, read from ``/proc`` (Linux).

Throughput alone hides what a contender costs: two of them can both keep up with the
input while one burns twice the CPU. CPU seconds per event is the figure that says how
many events one core can take.
"""

from __future__ import annotations

import os
import subprocess

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    """User + system CPU seconds used so far by ``procs`` (0 for one that has exited)."""
    total = 0
    for proc in procs:
        try:
            with open(f"/proc/{proc.pid}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICKS
