"""``kernel``: a full sync of 10,000 peers through the kernel engine against ``wg setconf`` of
the same peers, inside the VM of the kernel engine's test (``tongdao.testing.vm``: Debian's
kernel under qemu tcg; these hosts have no ``wireguard`` module).

Each round, in a fresh namespace of the guest: *floor*, a fresh kernel ``wg`` link given its
private key, port and the M peers by ``wg setconf`` (wireguard-tools, the module's own
client); *engine*, another fresh link given the same by ``KernelEngine.configure`` and
``set_peers`` (the peers as a full sync writes them to a new interface). The figure is the
median of the rounds' engine/floor ratios, each engine run next to its floor. Both run in
the same emulated machine, so the ratio holds; the absolute times are tcg's, several times
a real machine's.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.machine import machine_info

ROOT = Path(__file__).resolve().parent.parent
MARK = "bench-kernel-result:"


@dataclass(frozen=True)
class KernelConfig:
    peers: int
    rounds: int
    timeout: float  # seconds the whole VM may take


FULL = KernelConfig(peers=10_000, rounds=3, timeout=600)
QUICK = KernelConfig(peers=2_000, rounds=1, timeout=300)


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else None


def _peer_count(ns: str, ifname: str) -> int:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "wg", "show", ifname, "peers"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return len(done.stdout.split())


def guest(peers: int, rounds: int) -> dict[str, Any]:
    """The measurement, run inside the VM."""
    from tongdao.agent.engine import PeerConfig, generate_private_key
    from tongdao.agent.kernel import KernelEngine, kernel_build
    from tongdao.testing import netns

    out: dict[str, Any] = {"engine": kernel_build().describe(), "rounds": []}
    for round_no in range(rounds):
        keys = [base64.b64encode(os.urandom(32)).decode() for _ in range(peers)]
        ips = [f"100.64.{i // 256}.{i % 256}/32" for i in range(peers)]
        private = generate_private_key()
        row: dict[str, Any] = {"round": round_no}
        with netns.Topology() as topo:
            ns = topo.namespace()
            # floor: wg setconf of a file holding the key, the port and the peers
            netns.run(["ip", "link", "add", "wgfloor", "type", "wireguard"], netns=ns)
            with tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False) as handle:
                handle.write(f"[Interface]\nPrivateKey = {private}\nListenPort = 51820\n")
                for key, cidr in zip(keys, ips, strict=True):
                    handle.write(f"[Peer]\nPublicKey = {key}\nAllowedIPs = {cidr}\n")
            try:
                started = time.perf_counter()
                netns.run(["wg", "setconf", "wgfloor", handle.name], netns=ns, timeout=600)
                row["floor_ms"] = round((time.perf_counter() - started) * 1000, 1)
            finally:
                Path(handle.name).unlink()
            row["floor_peers"] = _peer_count(ns, "wgfloor")
            # engine: the same through KernelEngine, on a fresh link next to it
            engine = KernelEngine(ns, timeout=600)
            engine.ensure_interface("wgengine", ns)
            started = time.perf_counter()
            configs = [PeerConfig(k, (c,), new=True) for k, c in zip(keys, ips, strict=True)]
            engine.configure("wgengine", private_key=private, listen_port=51821)
            engine.set_peers("wgengine", configs)
            row["engine_ms"] = round((time.perf_counter() - started) * 1000, 1)
            row["engine_peers"] = _peer_count(ns, "wgengine")
            started = time.perf_counter()
            state = engine.get("wgengine")
            row["engine_get_ms"] = round((time.perf_counter() - started) * 1000, 1)
            row["engine_get_peers"] = len(state.peers)
            engine.close()
        row["ratio"] = round(row["engine_ms"] / row["floor_ms"], 3)
        out["rounds"].append(row)
    out["engine_ms"] = _median([r["engine_ms"] for r in out["rounds"]])
    out["floor_ms"] = _median([r["floor_ms"] for r in out["rounds"]])
    out["ratio"] = _median([r["ratio"] for r in out["rounds"]])
    return out


def run(cfg: KernelConfig, *, mode: str) -> dict[str, Any]:
    """Boot the VM, measure inside it, and report."""
    from tongdao.testing.vm import VmError, run_in_vm

    report: dict[str, Any] = {
        "benchmark": "kernel",
        "mode": mode,
        "machine": machine_info(),
        "config": asdict(cfg),
        "errors": [],
    }
    argv = [sys.executable, "-m", "bench.kernel", "--peers", str(cfg.peers)]
    argv += ["--rounds", str(cfg.rounds)]
    try:
        result = run_in_vm(argv, cwd=ROOT, timeout=cfg.timeout)
    except VmError as exc:
        report["errors"].append(str(exc))
        return report
    report["vm"] = {
        "boot_s": round(result.boot_seconds, 1),
        "wall_s": round(result.seconds, 1),
        "returncode": result.returncode,
    }
    lines = [ln for ln in result.output.splitlines() if ln.startswith(MARK)]
    if result.returncode != 0 or not lines:
        report["errors"].append(f"the guest exited {result.returncode}: {result.output[-2000:]}")
        return report
    report["full_sync"] = json.loads(lines[-1][len(MARK) :])
    return report


def summary(report: dict[str, Any]) -> str:
    sync = report.get("full_sync")
    if not sync:
        return f"kernel: no figures ({'; '.join(report['errors'])[:500]})"
    peers = report["config"]["peers"]
    return (
        f"kernel (in the VM, {sync['engine']}): full sync of {peers} peers "
        f"KernelEngine {sync['engine_ms']:.0f} ms vs wg setconf {sync['floor_ms']:.0f} ms "
        f"= {sync['ratio']:.2f}x (median of {len(sync['rounds'])}); "
        f"VM boot {report['vm']['boot_s']} s, wall {report['vm']['wall_s']} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kernel", description="the guest side")
    parser.add_argument("--peers", type=int, default=FULL.peers)
    parser.add_argument("--rounds", type=int, default=FULL.rounds)
    args = parser.parse_args(argv)
    if not 1 <= args.peers <= 100_000 or not 1 <= args.rounds <= 10:
        parser.error("--peers 1..100000, --rounds 1..10")
    print(MARK + json.dumps(guest(args.peers, args.rounds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
