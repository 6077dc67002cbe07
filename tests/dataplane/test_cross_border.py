"""Cross-border path for real: a device at the Beijing PoP reaches its company's HQ host
behind a site connector at an overseas PoP, only while a registered link joins the PoPs.

    device ns ──wire 198.51.100/24── BJ PoP ns ──wire 203.0.113/24── FRA PoP ns
                                                                        │ wire 192.0.2/24
                                      HQ host ns ──LAN 198.18.7/24── connector ns

Three agents (two gateways, one connector) run in this process, each managing its own
namespace; the device is an unmodified WireGuard client loaded from its exported config.
"""

from __future__ import annotations

import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support.live import serve
from tests.support.world import World
from tongdao.agent.gateway import GatewayAgent
from tongdao.testing import netns
from tongdao.testing.keys import keypair

pytestmark = pytest.mark.root

SITE_V4, SITE_V6 = "198.18.7.0/24", "fd00:77::/64"
HQ_V4, HQ_V6 = "198.18.7.10", "fd00:77::10"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def tcp_reaches(ns: str, host: str, port: int) -> bool:
    code = (
        "import socket,sys\n"
        f"s=socket.create_connection(({host!r},{port}),timeout=3)\n"
        "sys.stdout.write(s.recv(16).decode())\n"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "python3", "-c", code],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    return done.returncode == 0 and done.stdout == "hello from HQ"


class Api:
    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url, self.headers = url + "/api/v1", headers

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        resp = httpx.request(method, self.url + path, headers=self.headers, timeout=30, **kw)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json() if resp.content else None


@pytest.fixture
def agents() -> Iterator[list[tuple[GatewayAgent, threading.Thread]]]:
    running: list[tuple[GatewayAgent, threading.Thread]] = []
    try:
        yield running
    finally:
        for agent, _ in running:
            agent.stop()
        for _, thread in running:
            thread.join(20)


def test_device_reaches_hq_only_over_a_registered_link(
    world: World, app: FastAPI, tmp_path: Path, agents: list[tuple[GatewayAgent, threading.Thread]]
) -> None:
    base = 31000 + secrets.randbelow(1500) * 10
    with serve(app) as url, netns.Topology() as topo:
        admin = Api(url, world.admin.headers)
        tenant_admin = Api(url, world.a.admin.headers)
        employee = Api(url, world.a.employee.headers)
        dev_ns, bj_ns, fra_ns, conn_ns, hq_ns = (topo.namespace() for _ in range(5))
        for a, b, a_ip, b_ip in (
            (dev_ns, bj_ns, "198.51.100.2/24", "198.51.100.1/24"),
            (bj_ns, fra_ns, "203.0.113.1/24", "203.0.113.2/24"),
            (fra_ns, conn_ns, "192.0.2.1/24", "192.0.2.2/24"),
            (conn_ns, hq_ns, "198.18.7.1/24", "198.18.7.10/24"),
        ):
            if_a, if_b = topo.veth(a, b)
            netns.add_address(a, if_a, a_ip)
            netns.add_address(b, if_b, b_ip)
            if a == conn_ns:
                netns.add_address(a, if_a, "fd00:77::1/64")
                netns.add_address(b, if_b, "fd00:77::10/64")
        netns.add_route(fra_ns, "198.51.100.0/24", via="203.0.113.1")  # BJ's public side
        netns.add_route(conn_ns, "203.0.113.0/24", via="192.0.2.1")  # FRA's public side
        netns.add_route(hq_ns, "0.0.0.0/0", via="198.18.7.1")
        subprocess.run(
            ["ip", "-n", hq_ns, "-6", "route", "add", "default", "via", "fd00:77::1"],
            check=True,
            timeout=10,
        )
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                hq_ns,
                "python3",
                "-c",
                "import socket\ns=socket.create_server(('::',8080),family=socket.AF_INET6,"
                "dualstack_ipv6=True)\ns.settimeout(120)\n"
                "while True:\n c,_=s.accept(); c.sendall(b'hello from HQ'); c.close()\n",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            bj = admin(
                "POST",
                "/pops",
                json={
                    "name": "cn-bj-1",
                    "region": "CN-BJ",
                    "country": "CN",
                    "endpoint_host": "198.51.100.1",
                    "port_min": base,
                    "port_max": base + 4,
                },
            )
            fra = admin(
                "POST",
                "/pops",
                json={
                    "name": "de-fra-1",
                    "region": "DE-FRA",
                    "country": "DE",
                    "endpoint_host": "203.0.113.2",
                    "port_min": base + 5,
                    "port_max": base + 9,
                },
            )
            for n in range(10):
                topo.track(f"wgt{base + n}")
            for state in ("under_review", "approved", "active"):
                admin("PATCH", f"/tenants/{world.a.id}", json={"state": state})
            site = tenant_admin(
                "POST",
                f"/tenants/{world.a.id}/sites",
                json={
                    "name": "hq-frankfurt",
                    "country": "DE",
                    "purpose": "hq",
                    "pop_id": fra["id"],
                    "prefixes": [SITE_V4, SITE_V6],
                },
            )
            admin("PATCH", f"/tenants/{world.a.id}/sites/{site['id']}", json={"state": "active"})
            topo.track(f"wgs{site['id'].replace('-', '')[-10:]}")
            private, public = keypair()
            dev = employee(
                "POST",
                f"/tenants/{world.a.id}/devices",
                json={"name": "laptop", "public_key": public},
            )
            tenant_admin(
                "POST",
                f"/tenants/{world.a.id}/policies",
                json={
                    "name": "staff to HQ",
                    "rules": [
                        {
                            "sources": [{"kind": "device", "id": dev["id"]}],
                            "destinations": [{"kind": "site", "id": site["id"]}],
                        }
                    ],
                },
            )

            def start(token: str, ns: str, name: str) -> None:
                agent = GatewayAgent(url, tmp_path / name, token=token, netns=ns, poll_wait=5)
                thread = threading.Thread(target=agent.run, daemon=True)
                agents.append((agent, thread))
                thread.start()

            for pop, ns in ((bj, bj_ns), (fra, fra_ns)):
                token = admin("POST", f"/pops/{pop['id']}/enrolments", json={})["token"]
                start(token, ns, pop["name"])
            token = tenant_admin(
                "POST", f"/tenants/{world.a.id}/sites/{site['id']}/enrolments", json={}
            )["token"]
            start(token, conn_ns, "connector")

            conf_url = f"{url}/api/v1/tenants/{world.a.id}/devices/{dev['id']}/wireguard.conf"
            wait_until(
                lambda: (
                    httpx.get(conf_url, headers=world.a.employee.headers, timeout=10).status_code
                    == 200
                ),
                30,
                "the BJ key",
            )
            conf = httpx.get(conf_url, headers=world.a.employee.headers, timeout=10).text
            assert "cn-bj-1" in conf
            assert "de-fra-1" not in conf  # a device in China never dials the overseas PoP
            assert SITE_V4 in conf
            client_if = topo.wg_ifname()
            netns.bring_up_client(dev_ns, client_if, conf, private)
            # The connector has enrolled and its key reached the FRA PoP.
            wait_until(
                lambda: (
                    admin("GET", f"/tenants/{world.a.id}/sites/{site['id']}")[
                        "connector_public_key"
                    ]
                    is not None
                ),
                30,
                "the connector's key",
            )

            # No registered link yet: the route across the border is not built.
            time.sleep(2)
            assert not netns.ping(dev_ns, HQ_V4, tries=2)

            admin(
                "POST",
                "/links",
                json={
                    "name": "bj-fra",
                    "pop_a_id": bj["id"],
                    "pop_b_id": fra["id"],
                    "circuit_ref": "CU-IPLC-0001",
                    "approval_ref": "工信部国际〔2026〕12号",
                    "capacity_mbps": 100,
                },
            )
            wait_until(lambda: netns.ping(dev_ns, HQ_V4, tries=1), 40, "HQ over the link (v4)")
            assert netns.ping(dev_ns, HQ_V6), "HQ over the link (v6)"
            assert tcp_reaches(dev_ns, HQ_V4, 8080)
            assert tcp_reaches(dev_ns, HQ_V6, 8080)

            # Removing the link takes the cross-border route down again.
            link = admin("GET", "/links")["data"][0]
            admin("DELETE", f"/links/{link['id']}")
            wait_until(lambda: not netns.ping(dev_ns, HQ_V4, tries=1), 40, "the route to go")
        finally:
            for agent, thread in agents:  # before the control plane goes
                agent.stop()
                thread.join(20)
            server.kill()
            server.wait(10)
