"""``python -m bench [store] [load] [dataplane] [domains] [kernel] [ledger] [billing] [--quick]
[--only sqlite|postgresql] [--phase NAME[,NAME]]``.

Exit status: 0 when every benchmark ran (whatever the budgets say), 1 when one crashed (its
partial results are still written), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

from bench import billing, dataplane, domains, kernel, ledger, load, store

RESULTS = Path(__file__).resolve().parent / "results"
BENCHMARKS = ("store", "load", "dataplane", "domains", "kernel", "ledger", "billing")


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so that servers, clusters and temp dirs are cleaned up.
    raise SystemExit(128 + signum)


def write(output_dir: Path, name: str, report: dict[str, Any], summary: str) -> bool:
    """Write ``<name>.json``, print the summary and where it went; True if something crashed."""
    output_dir.mkdir(parents=True, exist_ok=True)
    out = output_dir / f"{name}.json"
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(summary)
    print(f"results: {out}")
    return bool(report["errors"])


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "benchmarks", nargs="*", help=f"which to run: {', '.join(BENCHMARKS)} (default: all)"
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (under 2 min)")
    parser.add_argument("--only", choices=store.BACKENDS, help="one store backend only")
    parser.add_argument("--samples", type=int, help="measured requests per metric")
    parser.add_argument("--warmup", type=int, help="unmeasured requests before them")
    parser.add_argument("--tenants", type=int, help="tenants in the store")
    parser.add_argument("--devices-per-tenant", type=int, help="devices per tenant")
    parser.add_argument("--seed", type=int, help="seed for tenants picked and keys made")
    parser.add_argument("--clients", type=int, help="load: concurrent clients (default 20)")
    parser.add_argument(
        "--seconds", type=float, help="load: how long the clients run (default 60, quick 10)"
    )
    parser.add_argument(
        "--request-threads",
        help="load: the server's TONGDAO_REQUEST_THREADS, or several (4,40) to run each "
        "backend once per count, side by side (default: the server's default)",
    )
    parser.add_argument(
        "--phase",
        action="append",
        metavar="NAME[,NAME]",
        help=f"dataplane: run only these phases ({', '.join(dataplane.ALL)}); repeatable or "
        "comma-separated (default: all)",
    )
    parser.add_argument(
        "--against",
        type=Path,
        help="billing: another checkout (e.g. /work/main) billed side by side with this one",
    )
    parser.add_argument("--rounds", type=int, default=2, help="billing --against: rounds")
    parser.add_argument("--output-dir", type=Path, default=RESULTS, help="where JSON goes")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.benchmarks) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    for name in ("samples", "tenants", "devices_per_tenant"):
        value = getattr(args, name)
        if value is not None and not 1 <= value <= 1_000_000:
            parser.error(f"--{name.replace('_', '-')} must be between 1 and 1000000")
    if args.warmup is not None and not 0 <= args.warmup <= 10_000:
        parser.error("--warmup must be between 0 and 10000")
    if args.clients is not None and not 1 <= args.clients <= 200:
        parser.error("--clients must be between 1 and 200")
    if args.seconds is not None and not 0.5 <= args.seconds <= 3600:
        parser.error("--seconds must be between 0.5 and 3600")
    if args.phase is not None:
        named = {p.strip() for value in args.phase for p in value.split(",") if p.strip()}
        wrong = sorted(named - set(dataplane.ALL))
        if wrong or not named:
            parser.error(
                f"--phase: unknown phase(s) {', '.join(wrong) or '(none given)'}; "
                f"choose from {', '.join(dataplane.ALL)}"
            )
        args.phase = [p for p in dataplane.ALL if p in named]  # always in the module's order
    if args.request_threads is not None:
        try:
            args.request_threads = [int(n) for n in args.request_threads.split(",")]
        except ValueError:
            parser.error("--request-threads takes counts separated by commas, e.g. 4,40")
        if not all(1 <= n <= 256 for n in args.request_threads) or len(
            set(args.request_threads)
        ) != len(args.request_threads):
            parser.error("--request-threads: distinct counts between 1 and 256")
    return args


def store_config(args: argparse.Namespace) -> store.StoreConfig:
    cfg = store.QUICK if args.quick else store.FULL
    overrides = {
        key: getattr(args, key)
        for key in ("samples", "warmup", "tenants", "devices_per_tenant", "seed")
        if getattr(args, key) is not None
    }
    return replace(cfg, **overrides)


def load_config(args: argparse.Namespace) -> load.LoadConfig:
    cfg = load.QUICK if args.quick else load.FULL
    if args.clients is not None:
        cfg = replace(cfg, clients=args.clients)
    if args.seconds is not None:
        cfg = replace(cfg, seconds=args.seconds)
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    selected = args.benchmarks or list(BENCHMARKS)
    mode = "quick" if args.quick else "full"
    crashed = False
    began = time.perf_counter()
    if "store" in selected:
        backends = [args.only] if args.only else list(store.BACKENDS)
        report = store.run(store_config(args), backends, mode=mode)
        crashed = write(args.output_dir, "store", report, store.summary(report)) or crashed
    if "load" in selected:
        backends = [args.only] if args.only else list(load.BACKENDS)
        load_report = load.run(load_config(args), backends, mode=mode, threads=args.request_threads)
        crashed = write(args.output_dir, "load", load_report, load.summary(load_report)) or crashed
    if "dataplane" in selected:
        cfg = dataplane.QUICK if args.quick else dataplane.FULL
        if args.seed is not None:
            cfg = replace(cfg, seed=args.seed)
        dp_report = dataplane.run(cfg, mode=mode, only=args.phase or dataplane.ALL)
        crashed = (
            write(args.output_dir, "dataplane", dp_report, dataplane.summary(dp_report)) or crashed
        )
    if "domains" in selected:
        dom_report = domains.run(domains.QUICK if args.quick else domains.FULL, mode=mode)
        crashed = (
            write(args.output_dir, "domains", dom_report, domains.summary(dom_report)) or crashed
        )
    if "kernel" in selected:
        kernel_report = kernel.run(kernel.QUICK if args.quick else kernel.FULL, mode=mode)
        crashed = (
            write(args.output_dir, "kernel", kernel_report, kernel.summary(kernel_report))
            or crashed
        )
    if "ledger" in selected:
        backends = [args.only] if args.only else list(ledger.BACKENDS)
        ledger_cfg = ledger.QUICK if args.quick else ledger.FULL
        ledger_report = ledger.run(ledger_cfg, backends, mode=mode)
        crashed = (
            write(args.output_dir, "ledger", ledger_report, ledger.summary(ledger_report))
            or crashed
        )
    if "billing" in selected:
        billing_cfg = billing.QUICK if args.quick else billing.FULL
        if args.tenants is not None:
            billing_cfg = replace(billing_cfg, tenants=args.tenants)
        billing_report = billing.run(
            billing_cfg, list(billing.BACKENDS), mode=mode, against=args.against, rounds=args.rounds
        )
        crashed = (
            write(args.output_dir, "billing", billing_report, billing.summary(billing_report))
            or crashed
        )
    print(f"bench finished in {time.perf_counter() - began:.1f} s")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
