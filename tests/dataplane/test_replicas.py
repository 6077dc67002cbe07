"""Two control-plane replicas on one PostgreSQL: a change made through one reaches a gateway
long-polling the other within moments, woken by LISTEN/NOTIFY.

* Replica 1 runs in this process (uvicorn thread, lifespan on); changes are made through it.
* Replica 2 is a separate process (``tongdao server --no-migrate`` on the same database), so
  the in-process change feed cannot carry the news: only PostgreSQL NOTIFY can. Its fallback
  store re-read (``DB_RECHECK``, 1 s) is raised to an hour, so a change landing faster than
  the gateway's 20 s long poll proves the NOTIFY path, not polling. A negative control shows
  the fallback really is off: a version bump made WITHOUT a NOTIFY is not seen until the
  long poll runs out.
* The gateway agent (subprocess, ``--poll-wait 20``) talks only to replica 2 and manages a PoP
  namespace; a device (an unmodified WireGuard client) pings through it.

    device ns 198.51.100.2 ── veth ── PoP ns 198.51.100.1 (wgt<port>, nft)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from tests.conftest import TEST_DATA_KEY
from tests.support.dataplane import (
    AgentProcess,
    PopView,
    assert_pop_matches,
    drain_group,
    free_port,
    gateway_desired_state,
    wait_until,
)
from tests.support.live import serve
from tests.support.world import World
from tongdao.gateway.changes import CHANNEL, current_version
from tongdao.runtime import Runtime
from tongdao.testing import netns
from tongdao.testing.keys import keypair

pytestmark = [
    pytest.mark.root,
    pytest.mark.postgres,
    pytest.mark.timeout(120),
    pytest.mark.parametrize("store_url", ["postgresql"], indirect=True),
]

POLL_WAIT = 20.0
LANDS_WITHIN = 10.0

# ``tongdao server`` with the long poll's fallback store re-read slowed to an hour.
REPLICA = """
import sys
import tongdao.gateway.routes as routes
routes.DB_RECHECK = 3600.0
sys.argv[0] = "tongdao"
from tongdao.cli import main
main()
"""


@contextlib.contextmanager
def replica_process(database_url: str, data_dir: Path) -> Iterator[tuple[str, Path]]:
    """A second control plane, as its own process, on the same database; yields its URL."""
    port = free_port()
    log_path = data_dir / "replica2.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.update(
        TONGDAO_ENV="development",
        TONGDAO_DATA_DIR=str(data_dir),
        TONGDAO_DATA_KEY=TEST_DATA_KEY,
    )
    argv = [
        sys.executable,
        "-c",
        REPLICA,
        "server",
        "--database-url",
        database_url,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-migrate",
        "--log-level",
        "warning",
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, log_path.read_text()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(url + "/readyz", timeout=2).status_code == 200
            return False

        wait_until(ready, 30, "replica 2 to be ready")
        yield url, log_path
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        drain_group(proc.pid, 5.0)


@dataclass
class Replicas:
    world: World
    url1: str  # in-process replica: where changes are made
    url2: str  # separate process: what the gateway polls
    log2: Path
    topo: netns.Topology
    pop_ns: str
    pop_id: str
    agent: AgentProcess
    state_dir: Path

    def api(self, method: str, path: str, headers: dict[str, str], **kw: Any) -> httpx.Response:
        return httpx.request(
            method, self.url1 + "/api/v1" + path, headers=headers, timeout=30, **kw
        )

    def version(self) -> int:
        with self.world.runtime.db.session(write=False) as session:
            return current_version(session)

    def peers(self) -> dict[str, frozenset[str]]:
        return {k: v for i in PopView(self.pop_ns).wg().values() for k, v in i.peers.items()}

    def acknowledged(self) -> bool:
        rows = self.api("GET", f"/pops/{self.pop_id}/gateways", self.world.admin.headers).json()
        return bool(rows["data"]) and rows["data"][0]["applied_version"] == self.version()

    def device(self, name: str) -> dict[str, Any]:
        private, public = keypair()
        resp = self.api(
            "POST",
            f"/tenants/{self.world.a.id}/devices",
            self.world.a.employee.headers,
            json={"name": name, "public_key": public},
        )
        assert resp.status_code == 201, resp.text
        device: dict[str, Any] = resp.json()
        device["private_key"] = private
        return device

    def client(self, device: dict[str, Any], ns_ip: str, pop_ip: str) -> str:
        """A namespace wired to the PoP running the device's exported config, unmodified."""
        ns = self.topo.namespace()
        dev_if, pop_if = self.topo.veth(ns, self.pop_ns)
        netns.add_address(ns, dev_if, f"{ns_ip}/24")
        netns.add_address(self.pop_ns, pop_if, f"{pop_ip}/24")
        conf = self.api(
            "GET",
            f"/tenants/{self.world.a.id}/devices/{device['id']}/wireguard.conf",
            self.world.a.employee.headers,
        )
        assert conf.status_code == 200, conf.text
        conf_text = conf.text.replace("Endpoint = 198.51.100.1:", f"Endpoint = {pop_ip}:")
        netns.bring_up_client(ns, self.topo.wg_ifname(), conf_text, device["private_key"])
        return ns

    def check(self) -> None:
        wait_until(self.acknowledged, 30, "the gateway to acknowledge the latest version")
        desired = gateway_desired_state(self.url2, self.state_dir)
        assert desired.version == self.version()
        assert_pop_matches(self.pop_ns, desired)


@pytest.fixture
def r(
    world: World, app: FastAPI, runtime: Runtime, store_url: str, tmp_path: Path
) -> Iterator[Replicas]:
    port_min = 30000 + secrets.randbelow(3000) * 10  # wireguard-go sockets are host-wide
    with (
        serve(app, lifespan="on") as url1,
        replica_process(store_url, tmp_path / "replica2") as (url2, log2),
        netns.Topology() as topo,
    ):
        for n in range(10):
            topo.track(f"wgt{port_min + n}")
        admin = world.admin.headers
        pop = httpx.post(
            url1 + "/api/v1/pops",
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
        for state in ("under_review", "approved", "active"):
            resp = httpx.patch(
                f"{url1}/api/v1/tenants/{world.a.id}",
                json={"state": state},
                headers=world.operators["compliance_officer"].headers,  # vetting is the officer's
                timeout=30,
            )
            assert resp.status_code == 200, resp.text
        token = httpx.post(
            f"{url1}/api/v1/pops/{pop['id']}/enrolments", json={}, headers=admin, timeout=30
        ).json()["token"]
        pop_ns = topo.namespace()
        state_dir = tmp_path / "gw"
        agent = AgentProcess(url2, state_dir, token, pop_ns, tmp_path / "logs", poll_wait=POLL_WAIT)
        try:
            yield Replicas(world, url1, url2, log2, topo, pop_ns, pop["id"], agent, state_dir)
        finally:
            agent.cleanup()


def raw_poll(r: Replicas, after: int, wait: float) -> tuple[int, float]:
    """One long poll against replica 2 with the gateway's credential: (version, the
    monotonic time it answered)."""
    credential = json.loads((r.state_dir / "credential.json").read_text())["credential"]
    resp = httpx.get(
        r.url2 + "/api/v1/gateway/desired-state",
        params={"after": after, "wait": wait},
        headers={"Authorization": f"Bearer {credential}"},
        timeout=wait + 15,
    )
    assert resp.status_code == 200, resp.text
    return int(resp.json()["version"]), time.monotonic()


def test_change_through_one_replica_reaches_a_gateway_polling_another(r: Replicas) -> None:
    dev1 = r.device("laptop-1")
    r.agent.start()
    r.check()
    ns1 = r.client(dev1, "198.51.100.2", "198.51.100.1")
    ifaces = r.api("GET", f"/pops/{r.pop_id}/interfaces", r.world.admin.headers).json()
    gateway_ip = str(ifaces["data"][0]["ipv4"])
    assert netns.ping(ns1, gateway_ip), "device 1 cannot reach the PoP"
    # Let the agent settle into a long poll on replica 2 (it acks, then polls for 20 s).
    time.sleep(1.0)

    # 1. A new device, registered through replica 1, appears on the PoP quickly.
    t0 = time.monotonic()
    dev2 = r.device("laptop-2")
    wait_until(lambda: dev2["public_key"] in r.peers(), LANDS_WITHIN, "the new device on the PoP")
    took_add = time.monotonic() - t0
    assert r.peers()[dev2["public_key"]] == frozenset({f"{dev2['ipv4']}/32", f"{dev2['ipv6']}/128"})
    r.check()
    ns2 = r.client(dev2, "203.0.113.2", "203.0.113.1")
    assert netns.ping(ns2, gateway_ip), "the new device cannot reach the PoP"
    assert not netns.ping(ns1, dev2["ipv4"], tries=2), "default deny did not hold"
    time.sleep(1.0)

    # 2. A policy made through replica 1 lets device 1 ping device 2, quickly.
    t0 = time.monotonic()
    resp = r.api(
        "POST",
        f"/tenants/{r.world.a.id}/policies",
        r.world.a.admin.headers,
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
    wait_until(
        lambda: netns.ping(ns1, dev2["ipv4"], tries=1, wait=0.5),
        LANDS_WITHIN,
        "the policy to let device 1 ping device 2",
    )
    took_policy = time.monotonic() - t0
    r.check()
    time.sleep(1.0)

    # 3. Revoking device 2 through replica 1 takes it off the PoP, quickly.
    t0 = time.monotonic()
    resp = r.api(
        "PATCH",
        f"/tenants/{r.world.a.id}/devices/{dev2['id']}",
        r.world.a.employee.headers,
        json={"state": "revoked"},
    )
    assert resp.status_code == 200, resp.text
    wait_until(
        lambda: dev2["public_key"] not in r.peers(), LANDS_WITHIN, "the revoked device to go"
    )
    took_revoke = time.monotonic() - t0
    r.check()
    assert not netns.ping(ns2, gateway_ip, tries=2)
    assert netns.ping(ns1, gateway_ip)
    print(
        f"replica 1 → PostgreSQL NOTIFY → replica 2 → gateway: add {took_add:.2f} s, "
        f"policy {took_policy:.2f} s, revoke {took_revoke:.2f} s (long poll {POLL_WAIT:.0f} s)"
    )

    # Negative control: a version bump committed WITHOUT a NOTIFY is not seen by replica 2
    # until its long poll runs out (so the fallback re-read is off, and the quick landings
    # above came through LISTEN/NOTIFY); the same bump WITH a NOTIFY wakes it at once.
    r.agent.terminate()
    version = r.version()

    def bump(notify: bool) -> None:
        with r.world.runtime.db.engine.begin() as conn:
            conn.execute(text("UPDATE config_version SET version = version + 1 WHERE id = 1"))
            if notify:
                conn.execute(text(f"NOTIFY {CHANNEL}"))

    for notify, expect_fast in ((False, False), (True, True)):
        result: list[tuple[int, float]] = []

        def poll(after: int, out: list[tuple[int, float]] = result) -> None:
            out.append(raw_poll(r, after, 4.0))

        poller = threading.Thread(target=poll, args=(version,))
        poller.start()
        time.sleep(1.0)  # the poll is waiting
        bumped = time.monotonic()
        bump(notify)
        version += 1
        poller.join(30)
        got, answered = result[0]
        seconds = answered - bumped
        assert got == version
        if expect_fast:
            assert seconds < 1.0, f"a NOTIFY did not wake replica 2 ({seconds:.2f} s)"
        else:  # the poll (4 s) started 1 s before the bump: it runs out ~3 s after it
            assert seconds > 2.5, f"replica 2 saw an un-notified bump early ({seconds:.2f} s)"
        print(f"bump {'with' if notify else 'without'} NOTIFY answered {seconds:.2f} s after it")
