"""Quotas on a real PoP: iperf3 through wireguard-go and nftables in namespaces, the agent
applying the control plane's limits and reporting usage every second.

* a user's bandwidth limit holds iperf3 to it, in each direction, and is shared by the user's
  devices on the PoP;
* a user's transfer cap stops the traffic once reached, within the stated overshoot bound
  (:func:`tongdao.quotas.service.overshoot_bound`), and a raised cap lets it through again.

The figures are printed (``-s`` shows them) and written to ``build/quotas-iperf.json``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import need
from tests.dataplane.test_gateway_agent import Lab, lab, wait_until
from tongdao.agent import reporter
from tongdao.quotas.service import overshoot_bound
from tongdao.testing import netns
from tongdao.testing.keys import keypair

__all__ = ["lab"]

pytestmark = pytest.mark.root

RATE_MBPS = 20
TOLERANCE = 0.1  # a policer: TCP saw-tooths around the rate
REPORT_INTERVAL = 1.0
APPLY_SECONDS = 3.0  # report sent, state long-polled and applied (measured: well under)
IPERF_SECONDS = 6
FIGURES = Path("build/quotas-iperf.json")


def iperf_server(ns: str, port: int) -> subprocess.Popen[bytes]:
    """One iperf3 test on ``port`` in ``ns`` (``-1``: exits after it), bounded by a kill."""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, "iperf3", "-s", "-1", "-J", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return proc


def receiver_rate(result: dict[str, Any]) -> float:
    """Mbit/s the receiving side got, from its one-second intervals after the first (slow
    start): the end summary divides what arrived until the end message (itself held back by
    the limit) by the sender's duration, which reads high under a policer."""
    intervals = [i["sum"] for i in result["intervals"]][1:]
    received = sum(i["bytes"] for i in intervals)
    seconds = sum(i["seconds"] for i in intervals)
    return received * 8 / seconds / 1e6


def iperf(
    ns: str, host: str, port: int, *, seconds: int = IPERF_SECONDS, reverse: bool = False
) -> float:
    """Mbit/s the receiver got in a TCP test of ``seconds`` (see :func:`receiver_rate`)."""
    argv = ["ip", "netns", "exec", ns, "iperf3", "-c", host, "-p", str(port), "-J"]
    argv += ["-t", str(seconds), "--connect-timeout", "3000", "--get-server-output"]
    argv += ["-R"] if reverse else []
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    receiver = result if reverse else result["server_output_json"]
    return receiver_rate(receiver)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_bandwidth_limit_and_transfer_cap_hold_on_the_pop(lab: Lab) -> None:
    if shutil.which("iperf3") is None:
        need("iperf3")
    world = lab.world
    tenant = world.a.id
    employee = world.a.employee.user_id
    ns1, dev1 = lab.device("198.51.100.2", "198.51.100.1", "laptop-1")
    ns3, dev3 = lab.device("192.0.2.2", "192.0.2.1", "laptop-2")  # the same user's second
    # The iperf3 server: a device of another user (the tenant admin), not limited.
    ns2 = lab.topo.namespace()
    dev_if, pop_if = lab.topo.veth(ns2, lab.pop_ns)
    netns.add_address(ns2, dev_if, "203.0.113.2/24")
    netns.add_address(lab.pop_ns, pop_if, "203.0.113.1/24")
    private, public = keypair()
    resp = lab.api(
        "POST",
        f"/tenants/{tenant}/devices",
        world.a.admin.headers,
        json={"name": "server", "public_key": public, "user_id": str(world.a.admin.user_id)},
    )
    assert resp.status_code == 201, resp.text
    dev2 = resp.json() | {"private_key": private}
    resp = lab.api(
        "POST",
        f"/tenants/{tenant}/policies",
        world.a.admin.headers,
        json={
            "name": "employee to server",
            "rules": [
                {
                    "sources": [{"kind": "user", "id": str(employee)}],
                    "destinations": [{"kind": "prefix", "cidr": f"{dev2['ipv4']}/32"}],
                    "protocol": "any",
                }
            ],
        },
    )
    assert resp.status_code == 201, resp.text
    telemetry = reporter.start(lab.agent, interval=REPORT_INTERVAL)
    lab.thread.start()
    figures: dict[str, Any] = {"rate_mbps": RATE_MBPS, "report_interval_s": REPORT_INTERVAL}
    try:
        conf = f"/tenants/{tenant}/devices/{dev1['id']}/wireguard.conf"
        wait_until(
            lambda: lab.api("GET", conf, world.a.employee.headers).status_code == 200,
            30,
            "the gateway to publish its key",
        )
        wait_until(lambda: dev2["public_key"] in lab.wg_peers(), 30, "the devices on the PoP")
        lab.connect(ns1, dev1, "198.51.100.1")
        lab.connect(ns3, dev3, "192.0.2.1")
        conf2 = lab.api(
            "GET",
            f"/tenants/{tenant}/devices/{dev2['id']}/wireguard.conf",
            world.a.admin.headers,
        ).text.replace("Endpoint = 198.51.100.1:", "Endpoint = 203.0.113.1:")
        netns.bring_up_client(ns2, lab.topo.wg_ifname(), conf2, dev2["private_key"])
        server = dev2["ipv4"]
        wait_until(lambda: netns.ping(ns1, server, tries=1), 20, "device 1 to reach the server")

        # --- unlimited, for comparison
        srv = iperf_server(ns2, 5201)
        try:
            figures["unlimited_mbps"] = iperf(ns1, server, 5201, seconds=3)
        finally:
            stop(srv)
        assert figures["unlimited_mbps"] > 3 * RATE_MBPS, figures

        # --- the employee's bandwidth limit, set by the tenant admin
        limits = f"/tenants/{tenant}/users/{employee}/limits"
        resp = lab.api("PUT", limits, world.a.admin.headers, json={"rate_mbps": RATE_MBPS})
        assert resp.status_code == 200, resp.text
        wait_until(lambda: _has_quota_chain(lab), 20, "the limit on the PoP")
        for name, reverse in (("upload_mbps", False), ("download_mbps", True)):
            srv = iperf_server(ns2, 5201)
            try:
                figures[name] = iperf(ns1, server, 5201, reverse=reverse)
            finally:
                stop(srv)
        # Both devices of the user at once share the one limit.
        servers = [iperf_server(ns2, port) for port in (5202, 5203)]
        try:
            with subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns3,
                    "iperf3",
                    "-c",
                    server,
                    "-p",
                    "5203",
                    "-J",
                    "-t",
                    str(IPERF_SECONDS),
                    "--get-server-output",
                ],
                stdout=subprocess.PIPE,
                text=True,
            ) as second:
                one = iperf(ns1, server, 5202)
                out, _ = second.communicate(timeout=IPERF_SECONDS + 30)
            two = receiver_rate(json.loads(out)["server_output_json"])
        finally:
            for proc in servers:
                stop(proc)
        figures["two_devices_mbps"] = [round(one, 2), round(two, 2)]
        low, high = RATE_MBPS * (1 - TOLERANCE), RATE_MBPS * (1 + TOLERANCE)
        assert low <= figures["upload_mbps"] <= high, figures
        assert low <= figures["download_mbps"] <= high, figures
        assert low <= one + two <= high, figures

        # --- the employee's transfer cap: traffic stops at it, within the bound
        cap_mb = 20
        used_before = _used(lab, limits)
        cap_mb = used_before // 1_000_000 + cap_mb  # 20 MB more than already used
        resp = lab.api(
            "PUT", limits, world.a.admin.headers, json={"rate_mbps": RATE_MBPS, "cap_mb": cap_mb}
        )
        assert resp.status_code == 200, resp.text
        srv = iperf_server(ns2, 5204)
        started = time.monotonic()
        client = subprocess.Popen(
            ["ip", "netns", "exec", ns1, "iperf3", "-c", server, "-p", "5204", "-t", "40"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: _enforced(lab, limits), 60, "the cap to be reached")
            figures["cap_reached_after_s"] = round(time.monotonic() - started, 1)
            reached = time.monotonic()
            wait_until(lambda: not netns.ping(ns1, server, tries=1), 10, "the block on the PoP")
            figures["blocked_after_event_s"] = round(time.monotonic() - reached, 1)
            assert not netns.ping(ns3, server, tries=2)  # the user's other device too
            # Nothing more gets through: the count settles once the last report lands. What
            # the PoP still receives from the device (TCP retrying with backoff, handshakes)
            # is counted, as the engine counts it, and dropped.
            time.sleep(3 * REPORT_INTERVAL + 1)
            settled = _used(lab, limits)
            time.sleep(4 * REPORT_INTERVAL)
            figures["counted_while_blocked_4s"] = _used(lab, limits) - settled
            assert figures["counted_while_blocked_4s"] < 100_000, figures
        finally:
            stop(client)
            stop(srv)
        cap = cap_mb * 1_000_000
        bound = overshoot_bound(REPORT_INTERVAL, RATE_MBPS, 1, APPLY_SECONDS)
        figures |= {"cap_bytes": cap, "used_bytes": settled, "overshoot_bytes": settled - cap}
        figures["bound_bytes"] = bound
        assert cap <= settled <= cap + bound, figures
        events = lab.api("GET", f"/tenants/{tenant}/quota-events", world.a.admin.headers).json()
        assert sorted(e["level"] for e in events["data"]) == [80, 100]

        # --- a raised cap (the operator's staff or the admin) lets it through again
        resp = lab.api(
            "PUT",
            limits,
            world.a.admin.headers,
            json={"rate_mbps": RATE_MBPS, "cap_mb": cap_mb * 10},
        )
        assert resp.status_code == 200, resp.text
        wait_until(lambda: netns.ping(ns1, server, tries=1), 20, "the block to be lifted")
    finally:
        lab.agent.stop()
        lab.thread.join(20)
        telemetry.stop()
        FIGURES.parent.mkdir(exist_ok=True)
        FIGURES.write_text(json.dumps(figures, indent=2) + "\n")
        print("quota figures:", json.dumps(figures))


def _used(lab: Lab, path: str) -> int:
    resp = lab.api("GET", path, lab.world.a.admin.headers)
    assert resp.status_code == 200, resp.text
    return int(resp.json()["used_bytes"])


def _enforced(lab: Lab, path: str) -> bool:
    return bool(lab.api("GET", path, lab.world.a.admin.headers).json()["enforced"])


def _has_quota_chain(lab: Lab) -> bool:
    out = subprocess.run(
        ["ip", "netns", "exec", lab.pop_ns, "nft", "-j", "list", "table", "inet", "tongdao"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    ).stdout
    items = json.loads(out).get("nftables", []) if out.strip() else []
    chains = {i["chain"]["name"] for i in items if "chain" in i}
    return "quota" in chains and any("limit" in i for i in items)
