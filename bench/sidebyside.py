"""The load benchmark side by side: servers from different source trees, in interleaved rounds.

``python -m bench.sidebyside base=/tmp/base/src,new=src [--rounds 4] [--seconds 15]
[--backend sqlite|postgresql]``

Each variant is ``name=SRC`` or ``name=SRC@THREADS``: the server child runs with ``SRC``
first on its ``PYTHONPATH`` (a ``src`` directory, e.g. ``git archive main src | tar -x -C
/tmp/base``; several, ``:``-separated, e.g. one holding a ``sitecustomize.py`` to try an
interpreter setting) and ``THREADS`` as ``TONGDAO_REQUEST_THREADS`` (default: the backend's
default). The clients, the data set-up and the checks are this tree's (:mod:`bench.load`).
Rounds alternate the order of the variants (A B, B A, ...), so that a change in the
machine's other work during the run falls on both. Per run it prints requests/s, p50 and p99
(all, create, list), the app server's CPU per request, its context switches per request
(voluntary, summed over its threads: thread hand-offs), its resident memory at the end and
the machine's other work; then the median of each per variant. On a shared machine compare
the medians and the CPU per request, not single runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import load
from bench.machine import CpuWatch
from bench.server import ServerProcess, bench_settings
from bench.store import store_url

RESULTS = Path(__file__).resolve().parent / "results"


def context_switches(pid: int) -> tuple[int, int]:
    """(voluntary, involuntary) context switches of all of a process's threads so far."""
    voluntary = involuntary = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as status:
                for line in status:
                    if line.startswith("voluntary_ctxt_switches"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches"):
                        involuntary += int(line.split()[1])
        except OSError:  # the thread ended meanwhile
            continue
    return voluntary, involuntary


def resident_mb(pid: int) -> float:
    """A process's resident memory now (VmRSS), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def one_run(backend: str, src: str, threads: int, cfg: load.LoadConfig) -> dict[str, Any]:
    from tongdao.runtime import Runtime
    from tongdao.store import migrate

    with tempfile.TemporaryDirectory(prefix="tongdao-sidebyside-") as tmp:
        workdir = Path(tmp)
        with store_url(backend, workdir) as url:
            migrate.upgrade(url)
            runtime = Runtime.from_settings(bench_settings(url, workdir))
            try:
                tenant = load.create_tenant(runtime, cfg)
                env = {"TONGDAO_REQUEST_THREADS": str(threads), "PYTHONPATH": src}
                with ServerProcess(url, workdir / "server", env=env) as server:
                    assert server.pid is not None
                    watch = CpuWatch(server.pid)
                    before = context_switches(server.pid)
                    logs = load.run_clients(server.base_url, tenant, cfg)
                    after = context_switches(server.pid)
                    rss_mb = resident_mb(server.pid)
                    cpu = watch.result()
                figures = load.figures(logs, cfg.seconds)
                check = load.check_nothing_lost(runtime, tenant, logs)
            finally:
                runtime.db.dispose()
    done = max(1, figures["successful_requests"])
    by_op = figures["by_operation"]
    return {
        "rps": figures["throughput_rps"],
        "p50_ms": figures["latency"]["p50_ms"],
        "p99_ms": figures["latency"]["p99_ms"],
        "create_p50_ms": by_op["create"]["latency"]["p50_ms"],
        "create_p99_ms": by_op["create"]["latency"]["p99_ms"],
        "list_p50_ms": by_op["list"]["latency"]["p50_ms"],
        "list_p99_ms": by_op["list"]["latency"]["p99_ms"],
        "errors": figures["errors"],
        "nothing_lost": bool(check["ok"]),
        "server_cpu_ms_per_request": round(1000 * cpu["cpu_s_app_server"] / done, 2),
        "voluntary_switches_per_request": round((after[0] - before[0]) / done, 2),
        "involuntary_switches_per_request": round((after[1] - before[1]) / done, 2),
        "server_rss_mb": rss_mb,
        "other_work_pct": cpu["other_work_pct"],
    }


MEDIANS = ("rps", "p50_ms", "p99_ms", "server_cpu_ms_per_request", "voluntary_switches_per_request")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sidebyside", description=__doc__)
    parser.add_argument("variants", help="name=SRC[@THREADS],name=SRC[@THREADS],...")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=load.FULL.clients)
    parser.add_argument("--backend", choices=load.BACKENDS, default="sqlite")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    variants: list[tuple[str, str, int]] = []
    for item in args.variants.split(","):
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            parser.error(f"a variant is name=SRC[@THREADS], not {item!r}")
        src, _, threads = spec.partition("@")
        paths = src.split(os.pathsep)
        for path in paths:
            if not Path(path).is_dir():
                parser.error(f"{path}: no such directory")
        count = int(threads) if threads else load.default_request_threads(args.backend)
        variants.append((name, os.pathsep.join(str(Path(p).resolve()) for p in paths), count))
    cfg = load.LoadConfig(clients=args.clients, seconds=args.seconds)
    began = time.monotonic()
    runs: list[dict[str, Any]] = []
    for n in range(args.rounds):
        for name, src, threads in variants if n % 2 == 0 else variants[::-1]:
            row = {"round": n, "variant": name, "request_threads": threads}
            row |= one_run(args.backend, src, threads, cfg)
            runs.append(row)
            print(json.dumps(row), flush=True)
    medians = {
        name: {
            key: statistics.median(r[key] for r in runs if r["variant"] == name) for key in MEDIANS
        }
        for name, _src, _threads in variants
    }
    for name, values in medians.items():
        print(f"median {name}: " + ", ".join(f"{k} {v:g}" for k, v in values.items()))
    report = {
        "benchmark": "load side by side",
        "backend": args.backend,
        "config": {"clients": cfg.clients, "seconds": cfg.seconds, "rounds": args.rounds},
        "variants": {name: {"src": src, "request_threads": t} for name, src, t in variants},
        "runs": runs,
        "medians": medians,
        "duration_s": round(time.monotonic() - began, 1),
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    out = args.output_dir / f"load-sidebyside-{args.backend}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results: {out}")
    lost = [r for r in runs if r["errors"] or not r["nothing_lost"]]
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
