"""A PoP gateway agent against a real control plane, in namespaces, with real wireguard-go
and nftables; devices are unmodified WireGuard clients loaded from their exported config.

Topology (all in namespaces the test makes; only documentation and test ranges):

    device1 ns  198.51.100.2 ─┐
                              ├─ veth ── PoP ns 198.51.100.1 (wgt<port> per tenant, nft)
    device2 ns  203.0.113.2 ──┘          203.0.113.1

The agent runs in the test process (host namespace, talking to the control plane on
loopback) and manages the PoP namespace through ``--netns``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import need
from tests.support.live import serve
from tests.support.world import World
from tongdao.agent.gateway import GatewayAgent
from tongdao.testing import netns
from tongdao.testing.keys import keypair

pytestmark = pytest.mark.root


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def listen(ns: str, port: int) -> subprocess.Popen[bytes]:
    """A TCP server in ``ns`` that greets and closes (bounded by its own timeout)."""
    code = (
        f"import socket\ns=socket.create_server(('0.0.0.0',{port}))\ns.settimeout(120)\n"
        "while True:\n c,_=s.accept(); c.sendall(b'hi'); c.close()\n"
    )
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, "python3", "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def tcp_ok(ns: str, host: str, port: int) -> bool:
    code = (
        f"import socket\ns=socket.create_connection(({host!r},{port}),timeout=2)\n"
        "assert s.recv(2)==b'hi'\n"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "python3", "-c", code],
        capture_output=True,
        timeout=10,
        check=False,
    )
    return done.returncode == 0


@dataclass
class Lab:
    world: World
    url: str
    topo: netns.Topology
    pop_ns: str
    pop_id: str
    port_min: int
    agent: GatewayAgent
    thread: threading.Thread

    def api(self, method: str, path: str, headers: dict[str, str], **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + "/api/v1" + path, headers=headers, timeout=30, **kw)

    def device(self, ns_ip: str, pop_ip: str, name: str) -> tuple[str, dict[str, Any]]:
        """A namespace wired to the PoP, and a device of tenant A's employee registered for it."""
        ns = self.topo.namespace()
        dev_if, pop_if = self.topo.veth(ns, self.pop_ns)
        netns.add_address(ns, dev_if, f"{ns_ip}/24")
        netns.add_address(self.pop_ns, pop_if, f"{pop_ip}/24")
        private, public = keypair()
        resp = self.api(
            "POST",
            f"/tenants/{self.world.a.id}/devices",
            self.world.a.employee.headers,
            json={"name": name, "public_key": public},
        )
        assert resp.status_code == 201, resp.text
        device = resp.json()
        device["private_key"] = private
        return ns, device

    def connect(self, ns: str, device: dict[str, Any], endpoint_ip: str) -> str:
        """Load the device's exported wireguard.conf into an unmodified client in ``ns``."""
        conf = self.api(
            "GET",
            f"/tenants/{self.world.a.id}/devices/{device['id']}/wireguard.conf",
            self.world.a.employee.headers,
        )
        assert conf.status_code == 200, conf.text
        # The PoP is reached on the wire this namespace has (the exported host is the PoP's
        # public address, which in this lab is the first wire's).
        text = conf.text.replace("Endpoint = 198.51.100.1:", f"Endpoint = {endpoint_ip}:")
        ifname = self.topo.wg_ifname()
        netns.bring_up_client(ns, ifname, text, device["private_key"])
        return ifname

    def gateway_address(self) -> str:
        ifaces = self.api("GET", f"/pops/{self.pop_id}/interfaces", self.world.admin.headers)
        return str(ifaces.json()["data"][0]["ipv4"])

    def wg_peers(self) -> dict[str, list[str]]:
        out = subprocess.run(
            ["ip", "netns", "exec", self.pop_ns, "wg", "show", "all", "dump"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        # `wg show all` lists every wireguard-go socket on the host (clients' too): keep the
        # PoP's own interfaces.
        ours = {f"wgt{self.port_min + n}" for n in range(10)}
        peers: dict[str, list[str]] = {}
        for line in out.splitlines():
            fields = line.split("\t")
            if len(fields) == 9 and fields[0] in ours:  # interface, peer, psk, endpoint, ips…
                peers[fields[1]] = fields[4].split(",")
        return peers


@pytest.fixture
def lab(world: World, app: FastAPI, tmp_path: Path) -> Iterator[Lab]:
    port_min = 30000 + secrets.randbelow(3000) * 10  # socket names are host-wide: stay apart
    with serve(app) as url, netns.Topology() as topo:
        admin = world.admin.headers
        pop = httpx.post(
            url + "/api/v1/pops",
            headers=admin,
            timeout=30,
            json={
                "name": "bj-1",
                "region": "CN-BJ",
                "country": "CN",
                "endpoint_host": "198.51.100.1",
                "port_min": port_min,
                "port_max": port_min + 9,
            },
        ).json()
        for n in range(10):
            topo.track(f"wgt{port_min + n}")
        for state in ("under_review", "approved", "active"):
            httpx.patch(
                f"{url}/api/v1/tenants/{world.a.id}",
                json={"state": state},
                headers=world.operators["compliance_officer"].headers,  # vetting is the officer's
                timeout=30,
            )
        token = httpx.post(
            f"{url}/api/v1/pops/{pop['id']}/enrolments", json={}, headers=admin, timeout=30
        ).json()["token"]
        pop_ns = topo.namespace()
        agent = GatewayAgent(url, tmp_path / "gw", token=token, netns=pop_ns, poll_wait=5)
        thread = threading.Thread(target=agent.run, daemon=True)
        lab = Lab(world, url, topo, pop_ns, pop["id"], port_min, agent, thread)
        try:
            yield lab
        finally:
            agent.stop()
            if thread.is_alive():
                thread.join(20)


def test_device_reaches_the_pop_and_policy_governs_device_to_device(lab: Lab) -> None:
    ns1, dev1 = lab.device("198.51.100.2", "198.51.100.1", "laptop-1")
    ns2, dev2 = lab.device("203.0.113.2", "203.0.113.1", "laptop-2")
    lab.thread.start()

    def conf_ready() -> bool:
        url = f"/tenants/{lab.world.a.id}/devices/{dev1['id']}/wireguard.conf"
        return lab.api("GET", url, lab.world.a.employee.headers).status_code == 200

    wait_until(conf_ready, 30, "the gateway to publish its key")
    wait_until(lambda: dev1["public_key"] in lab.wg_peers(), 30, "device peers on the PoP")
    # Independent view: the PoP's WireGuard peers carry exactly the devices' addresses.
    peers = lab.wg_peers()
    assert sorted(peers[dev1["public_key"]]) == sorted(
        [f"{dev1['ipv4']}/32", f"{dev1['ipv6']}/128"]
    )
    if1 = lab.connect(ns1, dev1, "198.51.100.1")
    if2 = lab.connect(ns2, dev2, "203.0.113.1")
    gateway = lab.gateway_address()
    assert netns.ping(ns1, gateway), "device 1 cannot reach its PoP through the tunnel"
    assert netns.ping(ns2, gateway)
    # Default deny: device 1 cannot reach device 2 through the PoP.
    assert not netns.ping(ns1, dev2["ipv4"], tries=2)
    ruleset = json.loads(
        subprocess.run(
            ["ip", "netns", "exec", lab.pop_ns, "nft", "-j", "list", "ruleset"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    )
    assert any(
        "table" in item and item["table"]["name"] == "tongdao" for item in ruleset["nftables"]
    )
    # A policy allowing ICMP from device 1 to device 2 reaches the PoP and lets it through.
    h = lab.world.a.admin.headers
    resp = lab.api(
        "POST",
        f"/tenants/{lab.world.a.id}/policies",
        h,
        json={
            "name": "laptop-1 pings laptop-2",
            "rules": [
                {
                    "sources": [{"kind": "device", "id": dev1["id"]}],
                    "destinations": [{"kind": "prefix", "cidr": f"{dev2['ipv4']}/32"}],
                    "protocol": "icmp",
                }
            ],
        },
    )
    assert resp.status_code == 201, resp.text
    wait_until(lambda: netns.ping(ns1, dev2["ipv4"], tries=1), 20, "the policy to apply")
    # Only that direction was allowed.
    assert not netns.ping(ns2, dev1["ipv4"], tries=2)
    # A group may reach one TCP port of device 2, and nothing else, in that direction only.
    servers = [listen(ns, port) for ns in (ns1, ns2) for port in (8080, 8081)]
    try:
        group = lab.api(
            "POST",
            f"/tenants/{lab.world.a.id}/groups",
            h,
            json={"name": "eng", "member_ids": [str(lab.world.a.employee.user_id)]},
        ).json()
        resp = lab.api(
            "POST",
            f"/tenants/{lab.world.a.id}/policies",
            h,
            json={
                "name": "eng to laptop-2 web",
                "rules": [
                    {
                        "sources": [{"kind": "group", "id": group["id"]}],
                        "destinations": [{"kind": "prefix", "cidr": f"{dev2['ipv4']}/32"}],
                        "protocol": "tcp",
                        "ports": ["8080"],
                    }
                ],
            },
        )
        assert resp.status_code == 201, resp.text
        wait_until(lambda: tcp_ok(ns1, dev2["ipv4"], 8080), 20, "the TCP rule to apply")
        assert not tcp_ok(ns1, dev2["ipv4"], 8081)
        assert not tcp_ok(ns2, dev1["ipv4"], 8080)
    finally:
        for server in servers:
            server.kill()
            server.wait(10)
    # Revoking device 2 takes it off the PoP.
    lab.api(
        "PATCH",
        f"/tenants/{lab.world.a.id}/devices/{dev2['id']}",
        lab.world.a.employee.headers,
        json={"state": "revoked"},
    )
    wait_until(lambda: dev2["public_key"] not in lab.wg_peers(), 20, "the revoked peer to go")
    assert not netns.ping(ns2, gateway, tries=2)
    # A suspended tenant stops passing traffic; reactivated, it flows again.
    tenant_url = f"/tenants/{lab.world.a.id}"
    lab.api("PATCH", tenant_url, lab.world.admin.headers, json={"state": "suspended"})
    wait_until(lambda: not netns.ping(ns1, gateway, tries=1), 20, "the suspension to apply")
    assert lab.wg_peers() == {}
    lab.api("PATCH", tenant_url, lab.world.admin.headers, json={"state": "active"})
    wait_until(lambda: netns.ping(ns1, gateway, tries=1), 20, "the tenant to come back")
    # Fail-static: with the agent stopped, traffic still flows.
    lab.agent.stop()
    lab.thread.join(20)
    assert not lab.thread.is_alive()
    assert netns.ping(ns1, gateway)
    del if1, if2


# --- the engine's offloads on a Tongdao-managed interface ------------------------------------

ENGINE_MTU = 1420  # wireguard-go's default, which Tongdao keeps (devices' configs set none)


def offloads(ns: str, ifname: str) -> dict[str, str]:
    """``ethtool -k`` of the interface: feature → on/off (``[fixed]`` and ``[requested on]``
    notes dropped: what counts is the state)."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "ethtool", "-k", ifname],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    features: dict[str, str] = {}
    for line in out.splitlines()[1:]:
        name, sep, value = line.strip().partition(":")
        if sep:
            features[name] = value.split()[0]
    return features


def link(ns: str, ifname: str) -> dict[str, Any]:
    out = subprocess.run(
        ["ip", "-n", ns, "-s", "-d", "-j", "link", "show", "dev", ifname],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    data: dict[str, Any] = json.loads(out)[0]
    return data


def bulk(src_ns: str, dst_ns: str, dst_ip: str, port: int, size: int) -> None:
    """``size`` bytes over one TCP connection from ``src_ns`` to ``dst_ip`` in ``dst_ns``."""
    server_code = (
        f"import socket\ns=socket.create_server(('0.0.0.0',{port}))\ns.settimeout(60)\n"
        "c,_=s.accept(); c.settimeout(60); n=0\n"
        "while (b:=c.recv(1<<20)): n+=len(b)\n"
        "print(n)\n"
    )
    client_code = (
        "import socket,time\n"
        f"for _ in range(50):\n try: s=socket.create_connection(({dst_ip!r},{port}),timeout=5)\n"
        " except OSError: time.sleep(0.1)\n else: break\n"
        f"s.settimeout(60); s.sendall(bytes({size})); s.close()\n"
    )
    server = subprocess.Popen(
        ["ip", "netns", "exec", dst_ns, "python3", "-c", server_code],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        subprocess.run(
            ["ip", "netns", "exec", src_ns, "python3", "-c", client_code], timeout=90, check=True
        )
        out, _ = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(10)
    assert int(out) == size


def test_the_engine_offloads_are_on_and_used_on_a_managed_interface(lab: Lab) -> None:
    """wireguard-go 0.0.20231211 opens its TUN device with virtio-net headers and turns on
    TSO (IPv4 and IPv6), checksum offload and UDP segmentation; with them the kernel hands it
    TCP segments larger than the MTU, and it writes coalesced (GRO) ones back. Tongdao's
    applier (addresses, routes, rules, nftables) must leave all of that and the MTU as the
    engine set them. An older engine (0.0.20220316, Debian bookworm's own) leaves TSO and
    checksumming off and fails here."""
    if shutil.which("ethtool") is None:
        need("ethtool")
    ns1, dev1 = lab.device("198.51.100.2", "198.51.100.1", "laptop-1")
    lab.thread.start()

    def conf_ready() -> bool:
        url = f"/tenants/{lab.world.a.id}/devices/{dev1['id']}/wireguard.conf"
        return lab.api("GET", url, lab.world.a.employee.headers).status_code == 200

    wait_until(conf_ready, 30, "the gateway to publish its key")
    lab.connect(ns1, dev1, "198.51.100.1")
    gateway = lab.gateway_address()
    assert netns.ping(ns1, gateway)
    [ifname] = [name for name in lab.agent.state.owned() if name.startswith("wgt")]

    features = offloads(lab.pop_ns, ifname)
    wanted = {
        "tx-checksum-ip-generic": "on",
        "scatter-gather": "on",
        "tcp-segmentation-offload": "on",
        "tx-tcp-segmentation": "on",
        "tx-tcp6-segmentation": "on",
        "generic-segmentation-offload": "on",
        "generic-receive-offload": "on",
    }
    if tuple(int(x) for x in os.uname().release.split(".")[:2]) >= (6, 2):
        wanted["tx-udp-segmentation"] = "on"  # TUN_F_USO4/6, kernels from 6.2
    assert {k: features.get(k) for k in wanted} == wanted, (
        "the engine's TUN offloads are off: wireguard-go older than 0.0.20231211? (make install)"
    )
    before = link(lab.pop_ns, ifname)
    assert before["mtu"] == ENGINE_MTU

    # Used, not only on: TCP through the tunnel both ways crosses the TUN device in packets
    # larger than its MTU (TSO from the PoP's stack, GRO from the engine).
    size = 16 << 20
    bulk(ns1, lab.pop_ns, gateway, 5301, size)  # device → PoP: the engine writes into the TUN
    bulk(lab.pop_ns, ns1, dev1["ipv4"], 5302, size)  # PoP → device: the kernel writes to it
    after = link(lab.pop_ns, ifname)

    def per_packet(direction: str) -> float:
        new, old = after["stats64"][direction], before["stats64"][direction]
        return (new["bytes"] - old["bytes"]) / max(new["packets"] - old["packets"], 1)

    rx, tx = per_packet("rx"), per_packet("tx")
    print(f"{ifname}: {rx:.0f} bytes per packet from the engine, {tx:.0f} to it (MTU 1420)")
    assert rx > 2 * ENGINE_MTU, f"no GRO from the engine: {rx:.0f} bytes per packet"
    assert tx > 2 * ENGINE_MTU, f"no TSO into the engine: {tx:.0f} bytes per packet"
    # and the applier, reconciling, leaves them as they were
    lab.agent.applier.apply(lab.agent.state.applied() or pytest.fail("nothing applied"))
    assert offloads(lab.pop_ns, ifname) == features
    assert link(lab.pop_ns, ifname)["mtu"] == ENGINE_MTU
