"""What the numbers were measured on."""

from __future__ import annotations

import os
import platform
import sqlite3
import time
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("sqlalchemy", "fastapi", "starlette", "pydantic", "uvicorn", "httpx", "psycopg")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "packages": {name: _version(name) for name in PACKAGES},
        "sqlite": sqlite3.sqlite_version,
    }


def _system_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / tick, sum(fields[:8]) / tick


def _process_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime + stime in seconds) of a process, or None when it is gone."""
    try:
        parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(parts[1]), (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(root: int) -> dict[int, float]:
    """CPU seconds of ``root`` and of every process descended from it, by pid."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _process_stat(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
    children: dict[int, list[int]] = {}
    for pid, (ppid, _cpu) in stats.items():
        children.setdefault(ppid, []).append(pid)
    out: dict[int, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in stats and pid not in out:
            out[pid] = stats[pid][1]
            todo.extend(children.get(pid, []))
    return out


# Other work above this share of the machine's CPU during sampling marks the run contended.
CONTENDED_SHARE = 0.10


class CpuWatch:
    """How busy the machine was during a phase, split into the benchmark's own process tree
    (client, app server, database server) and other work sharing the cores."""

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.load_before = os.getloadavg()[0]
        self.wall = time.monotonic()
        self.system = _system_cpu_s()
        self.tree = _tree_cpu_s(os.getpid())

    def result(self) -> dict[str, Any]:
        wall = time.monotonic() - self.wall
        busy = _system_cpu_s()[0] - self.system[0]
        tree = _tree_cpu_s(os.getpid())
        delta = {pid: cpu - self.tree.get(pid, 0.0) for pid, cpu in tree.items()}
        client = delta.get(os.getpid(), 0.0)
        server = delta.get(self.server_pid, 0.0) if self.server_pid else 0.0
        own = sum(delta.values())
        other = max(0.0, busy - own)
        capacity = wall * len(os.sched_getaffinity(0))
        return {
            "wall_s": round(wall, 2),
            "loadavg1_before": round(self.load_before, 2),
            "loadavg1_after": round(os.getloadavg()[0], 2),
            "cpu_s_busy_all": round(busy, 2),
            "cpu_s_client": round(client, 2),
            "cpu_s_app_server": round(server, 2),
            "cpu_s_database_server": round(own - client - server, 2),
            "cpu_s_other_work": round(other, 2),
            "machine_busy_pct": round(100 * busy / capacity, 1) if capacity else None,
            "other_work_pct": round(100 * other / capacity, 1) if capacity else None,
            "contended": bool(capacity) and other / capacity > CONTENDED_SHARE,
        }
