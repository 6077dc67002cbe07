"""One benchmark over several store backends, and the report fields every benchmark shares."""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from bench.machine import machine_info

R = TypeVar("R")


@dataclass
class BackendRuns(Generic[R]):
    results: dict[str, R]
    # benchmark, mode, started_at, duration_s: the first fields of every report.
    head: dict[str, Any]
    machine: dict[str, Any]


def run_backends(
    benchmark: str,
    mode: str,
    backends: list[str],
    *,
    announce: Callable[[str], str],
    tmp_prefix: str,
    run_backend: Callable[[str, Path], R],
) -> BackendRuns[R]:
    """Run `run_backend` for each backend in its own temporary directory, in order."""
    load_at_start = os.getloadavg()
    started = time.time()
    began = time.perf_counter()
    results: dict[str, R] = {}
    for backend in backends:
        print(announce(backend), flush=True)
        safe = re.sub(r"[^A-Za-z0-9]+", "-", backend)
        with tempfile.TemporaryDirectory(prefix=f"{tmp_prefix}-{safe}-") as tmp:
            results[backend] = run_backend(backend, Path(tmp))
    return BackendRuns(
        results=results,
        head={
            "benchmark": benchmark,
            "mode": mode,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "duration_s": round(time.perf_counter() - began, 1),
        },
        machine={**machine_info(), "loadavg_at_start": [round(x, 2) for x in load_at_start]},
    )
