"""A tenant's path abroad follows its cross-border authorisation, for real (issue 14).

    device ─ 198.51.100/24 ─ BJ PoP ─ 203.0.113/24 ─ FRA PoP ─ 192.0.2.0/30 ─ connector ─ HQ

The registered link bj-fra exists throughout. Without an approved authorisation the BJ gateway
has no peering abroad for the tenant: even a client that routes the HQ prefix into its tunnel
by hand gets nothing through. Once the compliance officer approves, the device's config lists
the HQ network and traffic passes, on the link at the approved rate; when the authorisation
expires (the expiry job), the path closes again while the device still reaches its PoP.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.support.live import serve
from tests.support.privacy import NOTICE_VERSION, notice_body
from tests.support.world import World
from tongdao.agent.gateway import GatewayAgent
from tongdao.billing.money import shanghai_today
from tongdao.crossborder import expiry
from tongdao.gateway.desired import connector_interface_name, interface_name
from tongdao.testing import crossborder, netns
from tongdao.testing.keys import keypair

from .test_cross_border import Api, route_anyway, signed_in

pytestmark = pytest.mark.root

SITE_V4 = "198.18.7.0/24"
HQ_V4 = "198.18.7.10"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def iperf_mbps(client_ns: str, server_ns: str, *, reverse: bool, seconds: int = 4) -> float:
    """TCP throughput from ``client_ns`` to the HQ (``reverse``: from it), by iperf3."""
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", HQ_V4],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        argv = [
            "ip",
            "netns",
            "exec",
            client_ns,
            "iperf3",
            "-c",
            HQ_V4,
            "-t",
            str(seconds),
            "-O",
            "1",
            "-J",
        ]
        done = subprocess.run(
            [*argv, *(["-R"] if reverse else [])],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        )
        result = json.loads(done.stdout)
        return float(result["end"]["sum_received"]["bits_per_second"]) / 1e6
    finally:
        server.kill()
        server.wait(10)


def test_the_path_abroad_opens_on_approval_and_closes_at_expiry(
    world: World, app: FastAPI, tmp_path: Path, agents: list[tuple[GatewayAgent, threading.Thread]]
) -> None:
    base = 33000 + secrets.randbelow(1500) * 10
    with serve(app) as url, netns.Topology() as topo:
        admin = Api(url, world.admin)
        officer = Api(url, world.operators["compliance_officer"])
        it, emp = Api(url, world.a.admin), Api(url, world.a.employee)
        tid = str(world.a.id)
        bj_ns, fra_ns, dev_ns = topo.namespace(), topo.namespace(), topo.namespace()
        conn_ns, hq_ns = topo.namespace(), topo.namespace()
        bj_wire, fra_wire = topo.veth(bj_ns, fra_ns)
        netns.add_address(bj_ns, bj_wire, "203.0.113.1/24")
        netns.add_address(fra_ns, fra_wire, "203.0.113.2/24")
        netns.add_route(fra_ns, "198.51.100.0/24", via="203.0.113.1")
        dev_if, bj_if = topo.veth(dev_ns, bj_ns)
        netns.add_address(dev_ns, dev_if, "198.51.100.10/24")
        netns.add_address(bj_ns, bj_if, "198.51.100.1/24")
        fra_if, conn_if = topo.veth(fra_ns, conn_ns)
        netns.add_address(fra_ns, fra_if, "192.0.2.1/30")
        netns.add_address(conn_ns, conn_if, "192.0.2.2/30")
        netns.add_route(conn_ns, "203.0.113.0/24", via="192.0.2.1")
        lan_conn, lan_hq = topo.veth(conn_ns, hq_ns)
        netns.add_address(conn_ns, lan_conn, "198.18.7.1/24")
        netns.add_address(hq_ns, lan_hq, "198.18.7.10/24")
        netns.add_route(hq_ns, "0.0.0.0/0", via="198.18.7.1")

        def start(token: str, ns: str, name: str) -> None:
            agent = GatewayAgent(url, tmp_path / name, token=token, netns=ns, poll_wait=5)
            thread = threading.Thread(target=agent.run, daemon=True)
            agents.append((agent, thread))
            thread.start()

        try:
            bj, fra = crossborder.create_pops(admin, base)
            for n in range(10):
                topo.track(interface_name(base + n))
            for state in ("under_review", "approved", "active"):
                officer("PATCH", f"/tenants/{tid}", json={"state": state})  # the officer vets
            # The employee consents to transfer abroad (rule pi.notice_and_consent).
            admin("POST", "/privacy-notices", json=notice_body())
            own = signed_in(url, world.a.employee)
            consents = f"/tenants/{tid}/users/{world.a.employee.user_id}/consents"
            for kind in ("notice", "transfer_abroad"):
                own("POST", consents, json={"kind": kind, "notice_version": NOTICE_VERSION})
            site = it(
                "POST",
                f"/tenants/{tid}/sites",
                json={
                    "name": "hq",
                    "country": "DE",
                    "purpose": "hq",
                    "pop_id": fra["id"],
                    "prefixes": [SITE_V4],
                },
            )
            for decl in site["declarations"]:
                officer("POST", f"/declarations/{decl['id']}/approve", json={"reason": "HQ"})
            admin("PATCH", f"/tenants/{tid}/sites/{site['id']}", json={"state": "active"})
            topo.track(connector_interface_name(uuid.UUID(site["id"])))
            private, public = keypair()
            device = emp(
                "POST", f"/tenants/{tid}/devices", json={"name": "d", "public_key": public}
            )
            it(
                "POST",
                f"/tenants/{tid}/policies",
                json={
                    "name": "staff to HQ",
                    "rules": [
                        {
                            "sources": [{"kind": "device", "id": device["id"]}],
                            "destinations": [{"kind": "site", "id": site["id"]}],
                        }
                    ],
                },
            )
            link = crossborder.link_pops(admin, bj, fra, "CU-IPLC-0003", "工信部国际〔2026〕14号")
            start(it("POST", f"/tenants/{tid}/sites/{site['id']}/enrolments", json={})["token"],
                  conn_ns, "connector")  # fmt: skip
            for pop, ns in ((bj, bj_ns), (fra, fra_ns)):
                start(admin("POST", f"/pops/{pop['id']}/enrolments", json={})["token"], ns,
                      pop["name"])  # fmt: skip
            conf_url = f"{url}/api/v1/tenants/{tid}/devices/{device['id']}/wireguard.conf"
            wait_until(
                lambda: httpx.get(conf_url, headers=emp.headers, timeout=10).status_code == 200,
                30,
                "BJ's key",
            )
            conf = httpx.get(conf_url, headers=emp.headers, timeout=10).text
            assert SITE_V4 not in conf  # no authorisation: the HQ is not routed
            ifname = topo.wg_ifname()
            client = netns.bring_up_client(dev_ns, ifname, conf, private)
            route_anyway(dev_ns, ifname, conf, client, [SITE_V4])  # routes it anyway
            site_url = f"/tenants/{tid}/sites/{site['id']}"
            wait_until(lambda: it("GET", site_url)["connector_public_key"] is not None, 30,
                       "the connector's key")  # fmt: skip
            time.sleep(3)
            assert not netns.ping(dev_ns, HQ_V4, tries=3), "the HQ answered without approval"
            (path,) = it("GET", f"{site_url}/paths")
            assert (path["up"], path["crossborder_step"]) == (False, "none")

            # The tenant applies; the compliance officer approves, valid until today.
            application = crossborder.apply(
                it, crossborder.http_uploader(it.url, it.headers), tid, [site["id"]], 20
            )
            today = shanghai_today(world.runtime.clock())
            first_day = (
                today - timedelta(days=1)
            ).isoformat()  # the earliest an approval may start
            crossborder.approve(
                officer, application["id"], link["id"], 20, first_day, today.isoformat()
            )
            wait_until(lambda: netns.ping(dev_ns, HQ_V4, tries=1), 40, "the HQ over the link")
            conf = httpx.get(conf_url, headers=emp.headers, timeout=10).text
            assert SITE_V4 in conf
            (path,) = it("GET", f"{site_url}/paths")
            assert path["up"] is True
            # The approved 20 Mbit/s holds on the link, both ways (BJ's nftables).
            for reverse in (False, True):
                mbps = iperf_mbps(dev_ns, hq_ns, reverse=reverse)
                print(f"cross-border TCP at 20 Mbit/s approved ({'from' if reverse else 'to'} HQ):"
                      f" {mbps:.1f} Mbit/s")  # fmt: skip
                assert 5 < mbps <= 20 * 1.15, mbps

            # The day after its last day the job expires it: the path closes.
            outcome = expiry.run(world.runtime, world.runtime.clock() + timedelta(days=1))
            assert outcome.expired == [uuid.UUID(application["id"])]
            wait_until(lambda: not netns.ping(dev_ns, HQ_V4, tries=1), 40, "the path to close")
            # Domestic service goes on: the device still reaches its PoP's tenant address.
            bj_iface = next(
                i for i in admin("GET", f"/pops/{bj['id']}/interfaces")["data"]
                if i["tenant_id"] == tid
            )  # fmt: skip
            assert netns.ping(dev_ns, bj_iface["ipv4"], tries=5)
            (path,) = it("GET", f"{site_url}/paths")
            assert (path["up"], path["crossborder_step"]) == (False, "expired")
        finally:
            for agent, thread in agents:
                agent.stop()
                thread.join(20)
