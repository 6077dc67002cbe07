"""``python -m bench domains --quick`` runs on the real tools, reports every layout side by
side, and leaves nothing behind (issue 12, item 2).

This checks the benchmark measures and cleans up, not how fast anything is: the machine
running the tests is shared.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bench import domains

from tests.conftest import need
from tongdao.agent.engine import SOCKET_DIR
from tongdao.testing import netns

pytestmark = [pytest.mark.root, pytest.mark.timeout(400)]


def _host_links() -> set[str]:
    out = subprocess.run(
        ["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def _wireguard_go() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if Path(argv[0].decode(errors="replace")).name == "wireguard-go":
                found.add(int(entry.name))
    return found


def test_the_domains_benchmark_measures_both_layouts_and_cleans_up(tmp_path: Path) -> None:
    for tool in ("iperf3", "ethtool", "ss"):
        if shutil.which(tool) is None:
            need(tool)
    namespaces, links = set(netns.list_namespaces()), _host_links()
    sockets, daemons = set(SOCKET_DIR.glob("*.sock")), _wireguard_go()
    result = subprocess.run(
        [sys.executable, "-m", "bench", "domains", "--quick", "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=360,
        cwd=Path(__file__).parents[2],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "domains benchmark (quick)" in result.stdout
    report = json.loads((tmp_path / "domains.json").read_text())
    cfg = domains.QUICK
    assert report["errors"] == {}
    assert report["layouts"]["today"] == report["layouts"]["netns"] == "measured"
    # VRF: measured where the kernel has it, otherwise said why (this host's has no VRF).
    assert isinstance(report["vrf"]["available"], bool)
    if not report["vrf"]["available"]:
        assert report["layouts"]["vrf"].startswith("not measured: this kernel cannot")
    res = report["results"]

    throughput = res["throughput"]
    assert len(throughput["runs"]) == 2 * cfg.iperf_rounds
    assert all(m > 0 for m in throughput["median_mbit_s"].values())
    assert throughput["ratio_to_today"]["netns"]["median"] > 0
    # The namespace layout for real: the interface is in the tenant's namespace, its
    # tunnel's UDP socket in the underlay, and the engine's offloads survived the move.
    today, per_ns = throughput["paths"]["today"], throughput["paths"]["netns"]
    assert today["pop_interface_namespace"] == "underlay"
    assert per_ns["pop_interface_namespace"] == "tenant"
    assert today["tunnel_udp_socket_in_underlay"] and per_ns["tunnel_udp_socket_in_underlay"]
    assert per_ns["pop_interface_offloads"] == today["pop_interface_offloads"]
    assert per_ns["pop_interface_offloads"]["tcp-segmentation-offload"] == "on"

    tenants = cfg.existing + cfg.add_samples
    for layout in ("today", "netns"):
        phase = res[f"tenants_{layout}"]
        assert phase["tenants"] == tenants
        assert [a["existing"] for a in phase["adds"]] == list(range(tenants))
        assert phase["add_ms"]["near_0"]["samples"] == cfg.add_samples
        assert phase["add_ms"][f"at_{cfg.existing}"]["samples"] == cfg.add_samples
        assert phase["add_ms"]["near_0"]["total_ms"] > 0
        assert phase["wireguard_go_kib"]["daemons"] == tenants
        assert phase["wireguard_go_kib"]["rss_median"] > 0
        assert phase["load"]["other_work_pct"] is not None
        memory = res[f"memory_{layout}"]
        assert memory["tenants"] == cfg.memory_tenants
        assert "kernel" in memory["built"]["kib_per_tenant"]
        row = report["table"][layout]
        assert row["throughput_mbit_s"] > 0 and row["add_ms_at_existing"] > 0
    # Today: an `ip rule` per family per tenant; a namespace per tenant needs none.
    assert res["tenants_today"]["objects_per_tenant"]["ip_rules_configured"] == 2
    assert res["tenants_netns"]["objects_per_tenant"]["ip_rules_configured"] == 0
    assert res["memory_netns"]["namespaces"] == cfg.memory_tenants + 1
    assert res["memory_today"]["namespaces"] == 1

    # The inotify limit raised for the daemons was put back.
    for layout in ("today", "netns"):
        assert report["host_settings"][layout]["inotify_max_user_instances"]["restored"]

    # Nothing left: namespaces, links, daemons, sockets.
    assert report["cleanup"]["namespaces_left"] == []
    assert set(netns.list_namespaces()) <= namespaces
    assert _host_links() <= links
    assert set(SOCKET_DIR.glob("*.sock")) <= sockets
    assert _wireguard_go() <= daemons
