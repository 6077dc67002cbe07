"""Cross-border path for real: devices at the Beijing PoP reach their company's HQ host behind
a site connector at an overseas PoP, only while a registered link joins the PoPs; two tenants
whose HQ sites use the same prefix both work and never see each other.

    device A ─ 198.51.100/24 ─┐                               ┌─ connector A ── HQ A 198.18.7.10
                              BJ PoP ─ 203.0.113/24 ─ FRA PoP ┤  (192.0.2.x/30 wires)
    device B ─ 192.0.2.64/30 ─┘                               └─ connector B ── HQ B 198.18.7.10

Four agents (two gateways, two connectors) run in this process, each managing its own
namespace; devices are unmodified WireGuard clients loaded from their exported configs.
"""

from __future__ import annotations

import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support.live import serve
from tests.support.privacy import NOTICE_VERSION, notice_body
from tests.support.world import PASSWORD, Actor, World
from tongdao.agent.gateway import GatewayAgent
from tongdao.gateway.desired import connector_interface_name, interface_name
from tongdao.testing import crossborder, netns
from tongdao.testing.keys import keypair

pytestmark = pytest.mark.root

SITE_V4, SITE_V6 = "198.18.7.0/24", "fd00:77::/64"  # the same in both tenants
HQ_V4, HQ_V6 = "198.18.7.10", "fd00:77::10"
UNAPPROVED_V4 = "198.18.8.0/24"  # declared too, and rejected by the compliance officer


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def tcp_answer(ns: str, host: str, port: int) -> str | None:
    code = (
        "import socket,sys\n"
        f"s=socket.create_connection(({host!r},{port}),timeout=3)\n"
        "sys.stdout.write(s.recv(32).decode())\n"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "python3", "-c", code],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    return done.stdout if done.returncode == 0 else None


class Api:
    def __init__(self, url: str, actor: Actor) -> None:
        self.url, self.headers = url + "/api/v1", actor.headers

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        resp = httpx.request(method, self.url + path, headers=self.headers, timeout=30, **kw)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json() if resp.content else None


def signed_in(url: str, actor: Actor) -> Api:
    """The actor in a session of their own (``POST /auth/login``): a consent of one's own is
    given only in one's own signed-in session, never with an API token."""
    me = httpx.get(url + "/api/v1/auth/me", headers=actor.headers, timeout=30).json()
    resp = httpx.post(
        url + "/api/v1/auth/login", json={"email": me["email"], "password": PASSWORD}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    return Api(url, replace(actor, token=resp.json()["token"]))


def route_anyway(
    ns: str, ifname: str, conf: str, client: netns.WgQuickConfig, prefixes: list[str]
) -> None:
    """Make a client route ``prefixes`` into its tunnel though its config does not list them
    (as one edited by hand would): whether they pass is then the gateways' decision."""
    key = next(
        line.split("=", 1)[1].strip() for line in conf.splitlines() if line.startswith("PublicKey")
    )
    allowed = ",".join([*client.allowed_ips, *prefixes])
    netns.run(["ip", "netns", "exec", ns, "wg", "set", ifname, "peer", key, "allowed-ips", allowed])
    for prefix in prefixes:
        family = "-6" if ":" in prefix else "-4"
        netns.run(["ip", "-n", ns, family, "route", "add", prefix, "dev", ifname])


@dataclass
class Company:
    label: str
    tenant_id: str
    admin: Api
    employee: Api
    dev_ns: str = ""
    device: dict[str, Any] | None = None
    private_key: str = ""
    site: dict[str, Any] | None = None


def test_devices_reach_their_own_hq_only_over_a_registered_link(
    world: World, app: FastAPI, tmp_path: Path, agents: list[tuple[GatewayAgent, threading.Thread]]
) -> None:
    base = 31000 + secrets.randbelow(1500) * 10
    servers: list[subprocess.Popen[bytes]] = []
    with serve(app) as url, netns.Topology() as topo:
        admin = Api(url, world.admin)
        officer = Api(url, world.operators["compliance_officer"])
        bj_ns, fra_ns = topo.namespace(), topo.namespace()
        bj_wire, fra_wire = topo.veth(bj_ns, fra_ns)
        netns.add_address(bj_ns, bj_wire, "203.0.113.1/24")
        netns.add_address(fra_ns, fra_wire, "203.0.113.2/24")
        netns.add_route(fra_ns, "198.51.100.0/24", via="203.0.113.1")  # BJ's public side
        companies = [
            Company("A", str(world.a.id), Api(url, world.a.admin), Api(url, world.a.employee)),
            Company("B", str(world.b.id), Api(url, world.b.admin), Api(url, world.b.employee)),
        ]
        # Both employees consent to transfer abroad (rule pi.notice_and_consent; without it
        # their traffic stays in China: tests/dataplane/test_consent_abroad.py).
        admin("POST", "/privacy-notices", json=notice_body())
        for co, person in zip(companies, (world.a.employee, world.b.employee), strict=True):
            consents = f"/tenants/{co.tenant_id}/users/{person.user_id}/consents"
            own = signed_in(url, person)
            for kind in ("notice", "transfer_abroad"):
                own("POST", consents, json={"kind": kind, "notice_version": NOTICE_VERSION})
        for n, co in enumerate(companies):
            # The device's wire to BJ, and the company's connector + HQ LAN behind FRA.
            co.dev_ns = topo.namespace()
            dev_if, bj_if = topo.veth(co.dev_ns, bj_ns)
            if n == 0:  # on the PoP's public network
                netns.add_address(co.dev_ns, dev_if, "198.51.100.10/24")
                netns.add_address(bj_ns, bj_if, "198.51.100.1/24")
            else:  # somewhere else on the way to it
                netns.add_address(co.dev_ns, dev_if, "192.0.2.66/30")
                netns.add_address(bj_ns, bj_if, "192.0.2.65/30")
                netns.add_route(co.dev_ns, "198.51.100.0/24", via="192.0.2.65")
            conn_ns, hq_ns = topo.namespace(), topo.namespace()
            fra_if, conn_if = topo.veth(fra_ns, conn_ns)
            netns.add_address(fra_ns, fra_if, f"192.0.2.{1 + 4 * n}/30")
            netns.add_address(conn_ns, conn_if, f"192.0.2.{2 + 4 * n}/30")
            netns.add_route(conn_ns, "203.0.113.0/24", via=f"192.0.2.{1 + 4 * n}")
            lan_conn, lan_hq = topo.veth(conn_ns, hq_ns)
            for ns, ifname, v4, v6 in (
                (conn_ns, lan_conn, "198.18.7.1/24", "fd00:77::1/64"),
                (hq_ns, lan_hq, "198.18.7.10/24", "fd00:77::10/64"),
            ):
                netns.add_address(ns, ifname, v4)
                netns.add_address(ns, ifname, v6)
            netns.add_route(hq_ns, "0.0.0.0/0", via="198.18.7.1")
            subprocess.run(
                ["ip", "-n", hq_ns, "-6", "route", "add", "default", "via", "fd00:77::1"],
                check=True,
                timeout=10,
            )
            servers.append(
                subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        hq_ns,
                        "python3",
                        "-c",
                        "import socket\ns=socket.create_server(('::',8080),family=socket.AF_INET6,"
                        "dualstack_ipv6=True)\ns.settimeout(120)\nwhile True:\n"
                        f" c,_=s.accept(); c.sendall(b'hello from HQ {co.label}'); c.close()\n",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            co.site = {"conn_ns": conn_ns}
        try:
            bj, fra = crossborder.create_pops(admin, base)
            for n in range(10):
                topo.track(interface_name(base + n))

            def start(token: str, ns: str, name: str) -> None:
                agent = GatewayAgent(url, tmp_path / name, token=token, netns=ns, poll_wait=5)
                thread = threading.Thread(target=agent.run, daemon=True)
                agents.append((agent, thread))
                thread.start()

            for co in companies:
                assert co.site is not None
                conn_ns = co.site["conn_ns"]
                for state in ("under_review", "approved", "active"):  # the officer vets
                    officer("PATCH", f"/tenants/{co.tenant_id}", json={"state": state})
                site = co.admin(
                    "POST",
                    f"/tenants/{co.tenant_id}/sites",
                    json={
                        "name": "hq",
                        "country": "DE",
                        "purpose": "hq",
                        "pop_id": fra["id"],
                        "prefixes": [SITE_V4, SITE_V6, UNAPPROVED_V4],
                    },
                )
                # A compliance officer approves the HQ LAN and rejects the other network: only
                # approved prefixes are ever routed (rule network.declared_only).
                for decl in site["declarations"]:
                    verb = "reject" if decl["cidr"] == UNAPPROVED_V4 else "approve"
                    officer("POST", f"/declarations/{decl['id']}/{verb}", json={"reason": "HQ"})
                admin(
                    "PATCH", f"/tenants/{co.tenant_id}/sites/{site['id']}", json={"state": "active"}
                )
                topo.track(connector_interface_name(uuid.UUID(site["id"])))
                co.private_key, public = keypair()
                co.device = co.employee(
                    "POST",
                    f"/tenants/{co.tenant_id}/devices",
                    json={"name": "laptop", "public_key": public},
                )
                co.admin(
                    "POST",
                    f"/tenants/{co.tenant_id}/policies",
                    json={
                        "name": "staff to HQ",
                        "rules": [
                            {
                                "sources": [{"kind": "device", "id": co.device["id"]}],
                                "destinations": [{"kind": "site", "id": site["id"]}],
                            }
                        ],
                    },
                )
                token = co.admin(
                    "POST", f"/tenants/{co.tenant_id}/sites/{site['id']}/enrolments", json={}
                )["token"]
                start(token, conn_ns, f"connector-{co.label}")
                co.site = site
            for pop, ns in ((bj, bj_ns), (fra, fra_ns)):
                start(
                    admin("POST", f"/pops/{pop['id']}/enrolments", json={})["token"],
                    ns,
                    pop["name"],
                )

            for co in companies:
                assert co.device is not None and co.site is not None
                conf_url = (
                    f"{url}/api/v1/tenants/{co.tenant_id}/devices/{co.device['id']}/wireguard.conf"
                )
                wait_until(
                    lambda u=conf_url, h=co.employee.headers: (
                        httpx.get(u, headers=h, timeout=10).status_code == 200
                    ),
                    30,
                    f"BJ's key for {co.label}",
                )
                conf = httpx.get(conf_url, headers=co.employee.headers, timeout=10).text
                assert "cn-bj-1" in conf
                assert "de-fra-1" not in conf  # a device in China never dials the overseas PoP
                # No cross-border authorisation yet: the HQ is not in the config (rule
                # crossborder.tenant_authorised); the client routes it into the tunnel by hand.
                assert SITE_V4 not in conf
                assert UNAPPROVED_V4 not in conf  # declared, rejected: never routed
                ifname = topo.wg_ifname()
                client = netns.bring_up_client(co.dev_ns, ifname, conf, co.private_key)
                route_anyway(co.dev_ns, ifname, conf, client, [SITE_V4, SITE_V6])
                site_url = f"/tenants/{co.tenant_id}/sites/{co.site['id']}"
                wait_until(
                    lambda a=co.admin, u=site_url: a("GET", u)["connector_public_key"] is not None,
                    30,
                    f"connector {co.label}'s key",
                )

            a, b = companies
            assert a.device is not None and b.device is not None
            # No registered link yet: the route across the border is not built.
            time.sleep(2)
            assert not netns.ping(a.dev_ns, HQ_V4, tries=2)

            link = crossborder.link_pops(admin, bj, fra, "CU-IPLC-0001", "工信部国际〔2026〕12号")
            # Each company's own authorisation on the link (rule crossborder.tenant_authorised;
            # without it: tests/dataplane/test_crossborder_authorisation.py).
            granted = []
            for co in companies:
                assert co.site is not None
                granted.append(crossborder.authorise(
                    co.admin, crossborder.http_uploader(co.admin.url, co.admin.headers), officer,
                    co.tenant_id, [co.site["id"]], link["id"],
                ))  # fmt: skip
            for co in companies:
                assert co.device is not None
                conf_url = (
                    f"{url}/api/v1/tenants/{co.tenant_id}/devices/{co.device['id']}/wireguard.conf"
                )
                conf = httpx.get(conf_url, headers=co.employee.headers, timeout=10).text
                assert SITE_V4 in conf and UNAPPROVED_V4 not in conf
                wait_until(
                    lambda ns=co.dev_ns: netns.ping(ns, HQ_V4, tries=1),
                    40,
                    f"{co.label}'s HQ over the link (v4)",
                )
                assert netns.ping(co.dev_ns, HQ_V6), f"{co.label}'s HQ over the link (v6)"
                # Same address, different company: each reaches its own HQ.
                assert tcp_answer(co.dev_ns, HQ_V4, 8080) == f"hello from HQ {co.label}"
                assert tcp_answer(co.dev_ns, HQ_V6, 8080) == f"hello from HQ {co.label}"
            # B cannot reach A's device, and A cannot reach B's.
            assert not netns.ping(b.dev_ns, a.device["ipv4"], tries=2)
            assert not netns.ping(a.dev_ns, b.device["ipv4"], tries=2)

            # Removing the link takes the cross-border route down again: the officer revokes
            # the authorisations on it first (a link with live ones is not deleted).
            for app in granted:
                officer(
                    "POST",
                    f"/crossborder/applications/{app['id']}/revoke",
                    json={"reason": "the carrier withdraws the link"},
                )
            link = admin("GET", "/links")["data"][0]
            admin("DELETE", f"/links/{link['id']}")
            wait_until(lambda: not netns.ping(a.dev_ns, HQ_V4, tries=1), 40, "the route to go")
        finally:
            for agent, thread in agents:  # before the control plane goes
                agent.stop()
                thread.join(20)
            for server in servers:
                server.kill()
                server.wait(10)
