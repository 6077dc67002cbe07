"""Report ingestion, two versions of the code side by side on one store (issue 13, speed).

``python -m bench.ingest_ab [--base REV] [--backend postgresql|sqlite] [--rounds 3]
[--reports 10]``: the ``ledger`` benchmark's ingestion (:mod:`bench.ledger`: 4,000 devices,
2 gateways posting reports of 2,000 peers at once over HTTP), with the server started in turn
from ``REV`` (default ``main``, exported with ``git archive``) and from this working tree,
round after round on the same store and data: the seqs and periods simply go on. Each round
posts one warm-up report per gateway (the server's copies are read then), then ``--reports``
more per gateway, measured: rows a second and the CPU of the app server, the database
server and the clients per row (:class:`bench.machine.CpuWatch`), and the other work on the
machine. On a shared host compare the CPU per row and the ratios of the same run, not the
rates of different runs.

Results: ``bench/results/ingest_ab_<backend>.json``. About 2 minutes on two cores with the
defaults.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx

from bench.ledger import LedgerConfig, LedgerResult, populate, report_body
from bench.machine import CpuWatch, machine_info
from bench.server import ServerProcess
from bench.store import store_url

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def export(rev: str, into: Path) -> Path:
    """The tree of ``rev`` (its ``src``), written under ``into``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, "src"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _post(http: httpx.Client, body: bytes, credential: str, rows: int) -> None:
    response = http.post(
        "/api/v1/gateway/reports",
        content=body,
        headers={"Authorization": f"Bearer {credential}", "Content-Type": "application/json"},
    )
    if response.status_code != 200 or response.json().get("stored") != rows:
        raise RuntimeError(f"{response.status_code}: {response.text[:300]}")


def run(base: str, backend: str, rounds: int, reports: int) -> dict[str, Any]:
    began = time.perf_counter()
    cfg = LedgerConfig(devices=4_000, peers=2_000, gateways=2)
    per_round = reports + 1  # the warm-up report, then the measured ones
    total = rounds * 2 * per_round
    out: dict[str, list[dict[str, Any]]] = {"base": [], "new": []}
    with tempfile.TemporaryDirectory(prefix="tongdao-ingest-ab-") as tmp:
        work = Path(tmp)
        trees = {"base": export(base, work / "base"), "new": ROOT / "src"}
        with store_url(backend, work) as url:
            setup = populate(url, work, cfg, LedgerResult(backend))
            peers = setup.devices[: cfg.peers]
            first_end = datetime.now(UTC) - timedelta(seconds=30 * (total + 2))
            bodies = [
                json.dumps(
                    report_body(s, first_end + timedelta(seconds=30 * s), setup.tenant_id, peers)
                ).encode()
                for s in range(1, total + 1)
            ]
            next_body = 0
            for r in range(rounds):
                for name, src in trees.items():
                    batch = bodies[next_body : next_body + per_round]
                    next_body += per_round
                    env = {"PYTHONPATH": str(src)}
                    with ServerProcess(url, work / f"server-{name}-{r}", env=env) as server:
                        out[name].append(_round(server, setup.gateways, batch, cfg.peers))
                    print(f"[ingest_ab] round {r} {name}: {out[name][-1]}", flush=True)
    summary = {
        name: {
            key: statistics.median(x[key] for x in runs)
            for key in ("rows_per_s", "server_us_per_row", "database_us_per_row")
        }
        for name, runs in out.items()
    }
    return {
        "benchmark": "ingest_ab",
        "base": base,
        "backend": backend,
        "rounds": rounds,
        "reports_per_gateway_per_round": reports,
        "machine": machine_info(),
        "median": summary,
        "runs": out,
        "duration_s": round(time.perf_counter() - began, 1),
    }


def _round(
    server: ServerProcess, gateways: list[tuple[Any, Any, str]], batch: list[bytes], rows: int
) -> dict[str, Any]:
    clients = [httpx.Client(base_url=server.base_url, timeout=120) for _ in gateways]
    try:
        for http, (_g, _p, credential) in zip(clients, gateways, strict=True):
            _post(http, batch[0], credential, rows)  # warm-up: the server's copies are read
        errors: list[str] = []

        def client(http: httpx.Client, credential: str) -> None:
            try:
                for body in batch[1:]:
                    _post(http, body, credential, rows)
            except Exception as exc:  # reported below
                errors.append(f"{type(exc).__name__}: {exc}")

        watch = CpuWatch(server.pid)
        began = time.perf_counter()
        threads = [
            threading.Thread(target=client, args=(http, credential))
            for http, (_g, _p, credential) in zip(clients, gateways, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - began
        cpu = watch.result()
        if errors:
            raise RuntimeError("; ".join(errors))
        stored = (len(batch) - 1) * rows * len(gateways)
        return {
            "rows_per_s": round(stored / wall),
            "server_us_per_row": round(cpu["cpu_s_app_server"] / stored * 1e6, 1),
            "database_us_per_row": round(cpu["cpu_s_database_server"] / stored * 1e6, 1),
            "client_us_per_row": round(cpu["cpu_s_client"] / stored * 1e6, 1),
            "other_work_pct": cpu["other_work_pct"],
            "wall_s": round(wall, 2),
        }
    finally:
        for http in clients:
            http.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_ab")
    parser.add_argument("--base", default="main", help="git revision to compare with")
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--reports", type=int, default=10, help="per gateway and round")
    args = parser.parse_args(argv)
    report = run(args.base, args.backend, args.rounds, args.reports)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"ingest_ab_{args.backend}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    for name, figures in report["median"].items():
        print(f"[ingest_ab] {name} ({args.base if name == 'base' else 'this tree'}): {figures}")
    print(f"[ingest_ab] {report['duration_s']} s; {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
