"""``make bench`` keeps working: a tiny run of the store benchmark writes its JSON.

This checks the benchmark runs and reports, not how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_store_benchmark_smoke(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "store",
            "--quick",
            "--only",
            "sqlite",
            "--tenants",
            "10",
            "--devices-per-tenant",
            "60",
            "--samples",
            "10",
            "--warmup",
            "2",
            "--output-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "store.json").read_text())
    metrics = report["backends"]["sqlite"]["metrics"]
    for name in ("list_page1", "list_page2", "create"):
        assert metrics[name]["latency"]["samples"] == 10, name
        assert metrics[name]["latency"]["p95_ms"] > 0
    assert report["budgets_p95_ms"] == {"list": 50.0, "create": 30.0}
