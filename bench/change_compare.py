"""Before/after of the dataplane's change-to-traffic phase, side by side in one run.

``python -m bench.change_compare --against /work/main [--rounds 2] [--quick]`` (root; run it
under ``flock /tmp/tongdao-netns.lock``). Each round runs the phase once with the other
checkout's code (its own ``.venv``: server, agent and bench as they are there) and once with
this one, in alternating order (ABBA), each in a child process of its own, so both see the
same machine state as nearly as a shared machine allows. Writes
``bench/results/change_compare.json``: every run's latency, p50 breakdown and CPU seconds,
and per round the ratios this/other of p50 and p99. About 1 minute a run at 5,000 devices.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent
RESULTS = HERE / "bench" / "results"

CHILD = """
import json, sys
from bench import dataplane
cfg = dataplane.QUICK if sys.argv[2] == "quick" else dataplane.FULL
report = dataplane.run(cfg, sys.argv[2], only=("change_to_traffic",))
with open(sys.argv[1], "w") as out:
    json.dump(report, out)
"""


def run_once(tree: Path, mode: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        began = time.perf_counter()
        done = subprocess.run(
            [str(tree / ".venv" / "bin" / "python"), "-c", CHILD, out.name, mode],
            cwd=tree,
            env={**os.environ, "PYTHONPATH": str(tree / "src")},  # that tree's code, whatever
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{tree}: exit {done.returncode}: {done.stderr[-2000:]}")
        report: dict[str, Any] = json.loads(Path(out.name).read_text())
    phase = report["results"].get("change_to_traffic", {})
    return {
        "tree": str(tree),
        "wall_s": round(time.perf_counter() - began, 1),
        "error": report["errors"].get("change_to_traffic"),
        "skipped": report.get("skipped"),
        "latency": phase.get("latency"),
        "breakdown_p50_ms": phase.get("breakdown_p50_ms"),
        "cpu": phase.get("cpu"),
        "failures": phase.get("failures"),
        "samples": phase.get("samples"),  # each change's breakdown (the p99's, too)
        "background_busy_pct_before": phase.get("background_busy_pct_before"),
    }


def commit(tree: Path) -> str:
    done = subprocess.run(
        ["git", "-C", str(tree), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip()


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.change_compare", description=__doc__)
    parser.add_argument("--against", type=Path, required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=2, choices=range(1, 11))
    parser.add_argument("--quick", action="store_true", help="1,000 devices, 10 samples")
    parser.add_argument("--output-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    other = args.against.resolve()
    if not (other / ".venv" / "bin" / "python").exists() or not (other / "bench").is_dir():
        parser.error(f"{other}: not a Tongdao checkout with its .venv")
    mode = "quick" if args.quick else "full"
    runs: list[dict[str, Any]] = []
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        order = [("before", other), ("after", HERE)]
        if r % 2:
            order.reverse()
        got: dict[str, dict[str, Any]] = {}
        for label, tree in order:
            result = {"round": r, "label": label, **run_once(tree, mode)}
            runs.append(result)
            got[label] = result
            lat = result["latency"] or {}
            print(
                f"round {r} {label}: p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms "
                f"({result['wall_s']} s)",
                flush=True,
            )
        before, after = got["before"]["latency"] or {}, got["after"]["latency"] or {}
        rounds.append(
            {
                "round": r,
                "p50_after_to_before": ratio(after.get("p50_ms"), before.get("p50_ms")),
                "p99_after_to_before": ratio(after.get("p99_ms"), before.get("p99_ms")),
            }
        )

    def med(label: str, key: str) -> float | None:
        values = [x["latency"][key] for x in runs if x["label"] == label and x.get("latency")]
        return round(statistics.median(values), 3) if values else None

    report = {
        "benchmark": "change_compare",
        "commits": {"before": commit(other), "after": commit(HERE)},
        "mode": mode,
        "before": str(other),
        "after": str(HERE),
        "runs": runs,
        "rounds": rounds,
        "median_p50_ms": {"before": med("before", "p50_ms"), "after": med("after", "p50_ms")},
        "median_p99_ms": {"before": med("before", "p99_ms"), "after": med("after", "p99_ms")},
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    out = args.output_dir / "change_compare.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("rounds", "median_p50_ms", "median_p99_ms")}))
    print(f"results: {out}")
    return 1 if any(x["error"] or x["skipped"] for x in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
