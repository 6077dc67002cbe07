"""``make bench`` keeps working: a tiny run of the store benchmark writes its JSON.

This checks the benchmark runs and reports, not how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m bench ARGS --output-dir TMP`` from the project's root; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", "bench", *args, "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_store_benchmark_smoke(tmp_path: Path) -> None:
    args = "store --quick --only sqlite --tenants 10 --devices-per-tenant 60 --samples 10"
    _bench(tmp_path, *args.split(), "--warmup", "2")
    report = json.loads((tmp_path / "store.json").read_text())
    metrics = report["backends"]["sqlite"]["metrics"]
    for name in ("list_page1", "list_page2", "create"):
        assert metrics[name]["latency"]["samples"] == 10, name
        assert metrics[name]["latency"]["p95_ms"] > 0
    assert report["budgets_p95_ms"] == {"list": 50.0, "create": 30.0}


def test_load_benchmark_smoke(tmp_path: Path) -> None:
    """A few seconds of the load benchmark: clients run, figures and the loss check are
    written (no latency is judged here: the machine running the tests is shared)."""
    result = _bench(
        tmp_path, "load", "--quick", "--only", "sqlite", "--clients", "4", "--seconds", "2"
    )
    report = json.loads((tmp_path / "load.json").read_text())
    assert report["config"]["clients"] == 4
    assert report["errors"] == {}
    sqlite = report["backends"]["sqlite"]
    assert sqlite["error"] is None
    assert sqlite["errors"] == 0
    created = sqlite["nothing_lost"]["successful_creates"]
    assert created > 0
    assert sqlite["nothing_lost"] == {
        "successful_creates": created,
        "devices_in_store": created,
        "missing": 0,
        "unexpected": 0,
        "address_differs": 0,
        "distinct_ipv4": created,
        "distinct_ipv6": created,
        "distinct_host_index": created,
        "ok": True,
    }
    by_op = sqlite["by_operation"]
    assert by_op["create"]["latency"]["samples"] == created
    assert by_op["list"]["latency"]["samples"] >= created
    for key in ("p50_ms", "p99_ms", "max_ms"):
        assert 0 < sqlite["latency"][key] < 30_000
    assert sqlite["throughput_rps"] > 0
    assert report["budget_p99_ms"] == 250.0
    assert "load benchmark" in result.stdout


def test_billing_benchmark_smoke(tmp_path: Path) -> None:
    """A few tenants through the billing benchmark on a throwaway PostgreSQL: the run makes
    one invoice per tenant (numbers without gaps, totals = lines) and the rerun none."""
    from tests.conftest import need
    from tongdao.testing.postgres import find_bindir

    if find_bindir() is None:
        need("PostgreSQL")
    result = _bench(tmp_path, "billing", "--quick", "--tenants", "5")
    report = json.loads((tmp_path / "billing.json").read_text())
    assert report["errors"] == {}
    pg = report["backends"]["postgresql"]
    assert pg["run"]["created"] == pg["run"]["invoices"] == 5
    assert pg["run"]["lines"] >= 5 * 3  # base fee, seats, traffic at least
    assert pg["rerun"] == {"created": 0, "existing": 5, "wall_s": pg["rerun"]["wall_s"]}
    assert set(pg["cpu"]) == {"run", "rerun"}
    assert report["config"]["tenants"] == 5
    assert "billing benchmark" in result.stdout
