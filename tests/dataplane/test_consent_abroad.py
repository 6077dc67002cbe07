"""Rule pi.notice_and_consent for real: a user who has not consented to transfer abroad is
not carried to the company's HQ abroad, while a consenting colleague on the same PoP is; the
consent turns the path on and its revocation off again.

    device 1 (consents)  ─ 198.51.100/24 ─┐
                                          BJ PoP ─ 203.0.113/24 ─ FRA PoP ─ connector ─ HQ
    device 2 (does not)  ─ 192.0.2.64/30 ─┘                               198.18.7.10

Independent checks: ``ping`` from the stock WireGuard clients, ``wg show`` on FRA (device 2's
address is not among the allowed IPs of its peer BJ) and on BJ (the bytes BJ sends to FRA do
not grow while device 2 pings the HQ: its packets are dropped in China, before the border).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.dataplane.test_cross_border import Api, signed_in, wait_until
from tests.support.live import serve
from tests.support.privacy import NOTICE_VERSION, identity_body, notice_body
from tests.support.world import World
from tongdao.agent.gateway import GatewayAgent
from tongdao.gateway.desired import connector_interface_name, interface_name
from tongdao.testing import crossborder, netns
from tongdao.testing.keys import keypair

pytestmark = pytest.mark.root

SITE_V4, HQ_V4 = "198.18.7.0/24", "198.18.7.10"


def _tx_to(ns: str, ifname: str, peer_key: str) -> int:
    _iface, peers = netns.wg_dump(ns, ifname)
    return int(peers[peer_key][5])  # psk, endpoint, allowed-ips, handshake, rx, tx, keepalive


def test_traffic_of_a_user_without_consent_stays_in_china(
    world: World, app: FastAPI, tmp_path: Path, agents: list[tuple[GatewayAgent, threading.Thread]]
) -> None:
    base = 36000 + secrets.randbelow(1000) * 10
    tid = str(world.a.id)
    with serve(app) as url, netns.Topology() as topo:
        admin = Api(url, world.admin)
        officer = Api(url, world.operators["compliance_officer"])
        it, emp = Api(url, world.a.admin), Api(url, world.a.employee)
        bj_ns, fra_ns = topo.namespace(), topo.namespace()
        bj_wire, fra_wire = topo.veth(bj_ns, fra_ns)
        netns.add_address(bj_ns, bj_wire, "203.0.113.1/24")
        netns.add_address(fra_ns, fra_wire, "203.0.113.2/24")
        netns.add_route(fra_ns, "198.51.100.0/24", via="203.0.113.1")
        dev_ns = [topo.namespace(), topo.namespace()]
        for n, ns in enumerate(dev_ns):
            dev_if, bj_if = topo.veth(ns, bj_ns)
            if n == 0:
                netns.add_address(ns, dev_if, "198.51.100.10/24")
                netns.add_address(bj_ns, bj_if, "198.51.100.1/24")
            else:
                netns.add_address(ns, dev_if, "192.0.2.66/30")
                netns.add_address(bj_ns, bj_if, "192.0.2.65/30")
                netns.add_route(ns, "198.51.100.0/24", via="192.0.2.65")
        conn_ns, hq_ns = topo.namespace(), topo.namespace()
        fra_if, conn_if = topo.veth(fra_ns, conn_ns)
        netns.add_address(fra_ns, fra_if, "192.0.2.1/30")
        netns.add_address(conn_ns, conn_if, "192.0.2.2/30")
        netns.add_route(conn_ns, "203.0.113.0/24", via="192.0.2.1")
        lan_conn, lan_hq = topo.veth(conn_ns, hq_ns)
        netns.add_address(conn_ns, lan_conn, "198.18.7.1/24")
        netns.add_address(hq_ns, lan_hq, "198.18.7.10/24")
        netns.add_route(hq_ns, "0.0.0.0/0", via="198.18.7.1")
        try:
            bj, fra = crossborder.create_pops(admin, base)
            for n in range(10):
                topo.track(interface_name(base + n))
            for state in ("under_review", "approved", "active"):  # the officer vets
                officer("PATCH", f"/tenants/{tid}", json={"state": state})

            # Two verified users in one group; only the employee consents to transfer abroad.
            other = it(
                "POST",
                f"/tenants/{tid}/users",
                json={"email": "wang@a.example", "display_name": "Wang", **identity_body()},
            )
            officer("POST", f"/tenants/{tid}/users/{other['id']}/identity-verification")
            admin("POST", "/privacy-notices", json=notice_body())
            mine = f"/tenants/{tid}/users/{world.a.employee.user_id}/consents"
            own = signed_in(url, world.a.employee)  # one's own consent: in one's own session
            for kind in ("notice", "transfer_abroad"):
                own("POST", mine, json={"kind": kind, "notice_version": NOTICE_VERSION})
            group = it(
                "POST",
                f"/tenants/{tid}/groups",
                json={"name": "staff", "member_ids": [str(world.a.employee.user_id), other["id"]]},
            )
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
            it(
                "POST",
                f"/tenants/{tid}/policies",
                json={
                    "name": "staff to HQ",
                    "rules": [
                        {
                            "sources": [{"kind": "group", "id": group["id"]}],
                            "destinations": [{"kind": "site", "id": site["id"]}],
                        }
                    ],
                },
            )
            keys = [keypair(), keypair()]
            devices = [
                emp(
                    "POST", f"/tenants/{tid}/devices", json={"name": "d1", "public_key": keys[0][1]}
                ),
                it(
                    "POST",
                    f"/tenants/{tid}/devices",
                    json={"name": "d2", "public_key": keys[1][1], "user_id": other["id"]},
                ),
            ]
            link = crossborder.link_pops(admin, bj, fra, "CU-IPLC-0002", "工信部国际〔2026〕13号")
            # The tenant's own authorisation on the link (rule crossborder.tenant_authorised).
            crossborder.authorise(
                it, crossborder.http_uploader(it.url, it.headers), officer, tid, [site["id"]],
                link["id"],
            )  # fmt: skip

            def start(token: str, ns: str, name: str) -> None:
                agent = GatewayAgent(url, tmp_path / name, token=token, netns=ns, poll_wait=5)
                thread = threading.Thread(target=agent.run, daemon=True)
                agents.append((agent, thread))
                thread.start()

            start(it("POST", f"/tenants/{tid}/sites/{site['id']}/enrolments", json={})["token"],
                  conn_ns, "connector")  # fmt: skip
            for pop, ns in ((bj, bj_ns), (fra, fra_ns)):
                start(admin("POST", f"/pops/{pop['id']}/enrolments", json={})["token"], ns,
                      pop["name"])  # fmt: skip

            headers = world.a.admin.headers
            for dev, (private, _public), ns in zip(devices, keys, dev_ns, strict=True):
                conf_url = f"{url}/api/v1/tenants/{tid}/devices/{dev['id']}/wireguard.conf"
                wait_until(
                    lambda u=conf_url: httpx.get(u, headers=headers, timeout=10).status_code == 200,
                    30,
                    "BJ's key",
                )
                conf = httpx.get(conf_url, headers=headers, timeout=10).text
                assert "de-fra-1" not in conf
                netns.bring_up_client(ns, topo.wg_ifname(), conf, private)

            # The consenting employee reaches the HQ abroad.
            wait_until(lambda: netns.ping(dev_ns[0], HQ_V4, tries=1), 60, "device 1 to HQ")

            def interfaces(pop: dict[str, Any]) -> dict[str, Any]:
                data = admin("GET", f"/pops/{pop['id']}/interfaces")["data"]
                return next(i for i in data if i["tenant_id"] == tid)

            bj_if, fra_if = interfaces(bj), interfaces(fra)
            bj_ifname, fra_ifname = f"wgt{bj_if['listen_port']}", f"wgt{fra_if['listen_port']}"
            addr2 = f"{devices[1]['ipv4']}/32"
            _i, fra_peers = netns.wg_dump(fra_ns, fra_ifname)
            assert addr2 not in fra_peers[bj_if["public_key"]][2].split(",")
            assert f"{devices[0]['ipv4']}/32" in fra_peers[bj_if["public_key"]][2].split(",")

            # The colleague without consent: nothing of theirs crosses the border.
            assert netns.ping(dev_ns[1], devices[1]["ipv4"], tries=1)  # their own tunnel is up
            before = _tx_to(bj_ns, bj_ifname, fra_if["public_key"])
            assert not netns.ping(dev_ns[1], HQ_V4, count=5, wait=1, tries=1)
            after = _tx_to(bj_ns, bj_ifname, fra_if["public_key"])
            assert after - before < 200, f"{after - before} bytes went abroad"  # keepalives

            # Their consent (recorded by the admin from a signed form) opens the path ...
            theirs = f"/tenants/{tid}/users/{other['id']}/consents"
            for kind in ("notice", "transfer_abroad"):
                it(
                    "POST",
                    theirs,
                    json={"kind": kind, "notice_version": NOTICE_VERSION, "evidence": "form 7"},
                )
            wait_until(lambda: netns.ping(dev_ns[1], HQ_V4, tries=1), 60, "device 2 to HQ")
            # ... and revoking it closes the path again.
            it("DELETE", theirs + "/transfer-abroad")
            wait_until(lambda: not netns.ping(dev_ns[1], HQ_V4, tries=1), 60, "the path to close")
            time.sleep(1)
            assert netns.ping(dev_ns[0], HQ_V4, tries=3)  # the employee is unaffected
        finally:
            for agent, thread in agents:
                agent.stop()
                thread.join(20)
