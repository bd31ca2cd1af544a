"""CPU seconds (user + system) spent by groups of processes over a window: the stack's worker
processes, PostgreSQL (the postmaster and its backends), Redis. A process that starts inside the
window counts from zero; one that exits inside it loses what it spent (the services keep their
database connections open, so that is rare)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import psutil

PidSource = Callable[[], list[int]]


def _cpu(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0
    return float(times.user + times.system)


def with_children(pid: int) -> list[int]:
    try:
        process = psutil.Process(pid)
        return [pid, *(child.pid for child in process.children(recursive=True))]
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return []


def pid_from_file(path: Path) -> int | None:
    """The first line of a pid file (postmaster.pid, redis.pid), or None."""
    try:
        return int(path.read_text().split("\n", 1)[0].strip())
    except (OSError, ValueError):
        return None


class CpuMeter:
    def __init__(self, groups: dict[str, PidSource]) -> None:
        self.groups = groups

    def snapshot(self) -> dict[str, dict[int, float]]:
        return {name: {pid: _cpu(pid) for pid in source()} for name, source in self.groups.items()}

    @staticmethod
    def delta(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
        spent: dict[str, float] = {}
        for name, pids in after.items():
            earlier = before.get(name, {})
            spent[name] = sum(max(0.0, seconds - earlier.get(pid, 0.0)) for pid, seconds in pids.items())
        return spent


def machine() -> dict[str, object]:
    load = os.getloadavg()
    return {
        "cpu_count": os.cpu_count(),
        "load_average": [round(value, 2) for value in load],
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
    }
