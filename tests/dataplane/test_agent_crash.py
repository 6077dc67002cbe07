"""The gateway agent survives being SIGKILLed at any point of an apply, and a restart while
the control plane is down.

The agent runs as a subprocess (``python -m tongdao gateway run --netns ...``) managing a PoP
namespace with real wireguard-go, iproute2 and nftables. After every crash and restart the
PoP is read back with independent tools (``wg show all dump``, ``ip -j rule``, ``ip -j route
show table N``, ``nft -j list ruleset``) and must equal, exactly, the desired state of the
version the control plane says the gateway acknowledged.

Topology (namespaces made by the test; documentation and test ranges only):

    device ns 198.51.100.2 ── veth ── PoP ns 198.51.100.1  (wgt<port> per tenant, nft, rules)

Set ``TONGDAO_CRASH_SEED`` to replay a run (the seed is printed).
"""

from __future__ import annotations

import ipaddress
import os
import random
import secrets
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support.dataplane import (
    AgentProcess,
    RestartableServer,
    assert_pop_matches,
    gateway_desired_state,
    pop_differences,
    wait_until,
)
from tests.support.privacy import identity_body
from tests.support.world import World
from tongdao.agent.engine import SOCKET_DIR, wireguard_go_pids
from tongdao.gateway.changes import current_version
from tongdao.gateway.desired import DesiredState
from tongdao.testing import netns
from tongdao.testing.keys import keypair

pytestmark = [pytest.mark.root, pytest.mark.timeout(180)]

USERS_A = 3  # the employee and two more users
DEVICES_PER_USER = 40  # 120 devices in tenant A
DEVICES_B = 8
CRASHES = 20
CONVERGE_TIMEOUT = 45.0


@dataclass
class Lab:
    world: World
    server: RestartableServer
    topo: netns.Topology
    pop_ns: str
    pop_id: str
    agent: AgentProcess
    state_dir: Path
    rng: random.Random
    users: list[str] = field(default_factory=list)  # tenant A users owning devices
    disabled: set[str] = field(default_factory=set)
    devices: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → device (A and B)
    group_id: str = ""
    policy_id: str = ""
    b_active: bool = True
    v6_base: str = "fd00"  # random rules name /48s in this /16 (declared, see populate)

    @property
    def a(self) -> str:
        return str(self.world.a.id)

    def api(self, method: str, path: str, headers: dict[str, str], **kw: Any) -> httpx.Response:
        return httpx.request(
            method, self.server.url + "/api/v1" + path, headers=headers, timeout=30, **kw
        )

    def ok(self, resp: httpx.Response) -> Any:
        assert resp.status_code < 300, f"{resp.request.method} {resp.request.url}: {resp.text}"
        return resp.json() if resp.content else None

    # --- changes -------------------------------------------------------------------------------
    def add_device(self, tenant: str = "a", user_id: str | None = None) -> dict[str, Any]:
        fixture = self.world.a if tenant == "a" else self.world.b
        private, public = keypair()
        body: dict[str, Any] = {"name": f"dev-{secrets.token_hex(4)}", "public_key": public}
        if user_id is not None:
            body["user_id"] = user_id
            headers = fixture.admin.headers
        else:
            headers = fixture.employee.headers
        device: dict[str, Any] = self.ok(
            self.api("POST", f"/tenants/{fixture.id}/devices", headers, json=body)
        )
        device["private_key"] = private
        self.devices[device["id"]] = device
        return device

    def revoke(self, device: dict[str, Any]) -> None:
        tenant = device["tenant_id"]
        headers = (self.world.a if tenant == self.a else self.world.b).admin.headers
        self.ok(
            self.api(
                "PATCH",
                f"/tenants/{tenant}/devices/{device['id']}",
                headers,
                json={"state": "revoked"},
            )
        )
        device["state"] = "revoked"

    def set_user(self, user_id: str, state: str) -> None:
        self.ok(
            self.api(
                "PATCH",
                f"/tenants/{self.a}/users/{user_id}",
                self.world.a.admin.headers,
                json={"state": state},
            )
        )
        if state == "disabled":
            self.disabled.add(user_id)
        else:
            self.disabled.discard(user_id)

    def set_tenant_b(self, active: bool) -> None:
        self.ok(
            self.api(
                "PATCH",
                f"/tenants/{self.world.b.id}",
                self.world.admin.headers,
                json={"state": "active" if active else "suspended"},
            )
        )
        self.b_active = active

    def random_rules(self) -> list[dict[str, Any]]:
        rng = self.rng
        a_devices = [d for d in self.devices.values() if d["tenant_id"] == self.a]
        rules = []
        for _ in range(rng.randint(4, 16)):
            kind = rng.choice(["device", "user", "group"])
            if kind == "device":
                src = {"kind": "device", "id": rng.choice(a_devices)["id"]}
            elif kind == "user":
                src = {"kind": "user", "id": rng.choice(self.users)}
            else:
                src = {"kind": "group", "id": self.group_id}
            dests: list[dict[str, Any]] = []
            for _ in range(rng.randint(1, 4)):
                pick = rng.random()
                if pick < 0.4:
                    cidr = f"198.{rng.choice((18, 19))}.{rng.randrange(256)}.0/24"
                elif pick < 0.6:
                    cidr = f"203.0.113.{rng.randrange(0, 256, 16)}/28"
                elif pick < 0.8:
                    cidr = f"{self.v6_base}:{rng.randrange(1 << 16):x}::/48"
                else:
                    cidr = f"{rng.choice(a_devices)['ipv4']}/32"
                dests.append({"kind": "prefix", "cidr": cidr})
            proto = rng.choice(["any", "tcp", "udp", "icmp"])
            rule: dict[str, Any] = {"sources": [src], "destinations": dests, "protocol": proto}
            if proto in ("tcp", "udp") and rng.random() < 0.8:
                ports = set()
                for _ in range(rng.randint(1, 5)):
                    lo = rng.randint(1, 60000)
                    ports.add(str(lo) if rng.random() < 0.5 else f"{lo}-{lo + rng.randint(1, 500)}")
                rule["ports"] = sorted(ports)
            rules.append(rule)
        return rules

    def edit_policy(self) -> None:
        self.ok(
            self.api(
                "PATCH",
                f"/tenants/{self.a}/policies/{self.policy_id}",
                self.world.a.admin.headers,
                json={"rules": self.random_rules()},
            )
        )

    # --- observation ---------------------------------------------------------------------------
    def version(self) -> int:
        with self.world.runtime.db.session(write=False) as session:
            return current_version(session)

    def gateway(self) -> dict[str, Any] | None:
        """The PoP's one gateway as operators see it (None before it enrolled)."""
        rows = self.ok(self.api("GET", f"/pops/{self.pop_id}/gateways", self.world.admin.headers))
        assert rows["count"] <= 1, rows
        return rows["data"][0] if rows["data"] else None

    def acknowledged(self) -> bool:
        gateway = self.gateway()
        return (
            gateway is not None
            and gateway["applied_version"] == self.version()
            and gateway["apply_error"] is None
        )

    def wait_converged(self, what: str, timeout: float = CONVERGE_TIMEOUT) -> float:
        try:
            return wait_until(self.acknowledged, timeout, what)
        except AssertionError:
            raise AssertionError(
                f"{what}: gateway {self.gateway()} never acknowledged version {self.version()}\n"
                f"--- agent log (run {self.agent.runs}) ---\n{self.agent.log()[-4000:]}"
            ) from None

    def desired(self) -> DesiredState:
        for _ in range(20):
            version = self.version()
            desired = gateway_desired_state(self.server.url, self.state_dir)
            gateway = self.gateway()
            if gateway and desired.version == version == gateway["applied_version"]:
                return desired
            time.sleep(0.1)
        raise AssertionError("the config version kept moving while the test was idle")

    def check(self, what: str) -> DesiredState:
        """The gateway acknowledged the latest version, and the PoP runs exactly it."""
        self.wait_converged(what)
        desired = self.desired()
        assert_pop_matches(self.pop_ns, desired)
        # The test's own bookkeeping agrees with the compiled desired state's peers.
        peers = {p.public_key for t in desired.tenants for p in t.peers}
        expected = {
            d["public_key"]
            for d in self.devices.values()
            if d["state"] == "active"
            and d["user_id"] not in self.disabled
            and (d["tenant_id"] == self.a or self.b_active)
        }
        assert peers == expected, f"{what}: desired peers differ from the devices made"
        return desired


@pytest.fixture
def lab(world: World, app: FastAPI, tmp_path: Path) -> Iterator[Lab]:
    seed = int(os.environ.get("TONGDAO_CRASH_SEED", secrets.randbits(32)))
    print(f"TONGDAO_CRASH_SEED={seed}")
    port_min = 30000 + secrets.randbelow(3000) * 10  # wireguard-go sockets are host-wide
    with RestartableServer(app) as server, netns.Topology() as topo:
        for n in range(10):
            topo.track(f"wgt{port_min + n}")
        admin = world.admin.headers
        officer = world.operators["compliance_officer"].headers  # vetting is the officer's
        pop = httpx.post(
            server.url + "/api/v1/pops",
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
        for tenant in (world.a.id, world.b.id):
            for state in ("under_review", "approved", "active"):
                resp = httpx.patch(
                    f"{server.url}/api/v1/tenants/{tenant}",
                    json={"state": state},
                    headers=officer,
                    timeout=30,
                )
                assert resp.status_code == 200, resp.text
        token = httpx.post(
            f"{server.url}/api/v1/pops/{pop['id']}/enrolments", json={}, headers=admin, timeout=30
        ).json()["token"]
        pop_ns = topo.namespace()
        state_dir = tmp_path / "gw"
        agent = AgentProcess(server.url, state_dir, token, pop_ns, tmp_path / "logs")
        lab = Lab(world, server, topo, pop_ns, pop["id"], agent, state_dir, random.Random(seed))
        try:
            yield lab
        finally:
            agent.cleanup()  # before the Topology tears the namespace down


def populate(lab: Lab, per_user: int, extra_users: int, devices_b: int) -> None:
    """Users, a group, devices (each with its own key) and a policy, made through the API."""
    h = lab.world.a.admin.headers
    lab.users = [str(lab.world.a.employee.user_id)]
    for n in range(extra_users):
        user = lab.ok(
            lab.api(
                "POST",
                f"/tenants/{lab.a}/users",
                h,
                json={
                    "email": f"staff{n}@a.example",
                    "display_name": f"Staff {n}",
                    **identity_body(),
                },
            )
        )
        # Rule identity.real_name: their devices are served once a compliance officer verified.
        verify = f"/tenants/{lab.a}/users/{user['id']}/identity-verification"
        lab.ok(lab.api("POST", verify, lab.world.operators["compliance_officer"].headers))
        lab.users.append(user["id"])
    group = lab.ok(
        lab.api(
            "POST",
            f"/tenants/{lab.a}/groups",
            h,
            json={"name": "engineering", "member_ids": lab.users[1:]},
        )
    )
    lab.group_id = group["id"]
    for user_id in lab.users:
        for _ in range(per_user):
            lab.add_device("a", user_id)
    for _ in range(devices_b):
        lab.add_device("b")
    # The rules' prefixes lie in networks the tenant declared and a compliance officer
    # approved (rule network.declared_only), on a site that is never activated: nothing of it
    # is routed. The IPv6 /16 is one that holds neither tenant's overlay pool.
    pools = [ipaddress.ip_network(t.data["ipv6_pool"]) for t in (lab.world.a, lab.world.b)]
    lab.v6_base = next(
        base
        for base in ("fd00", "fd01", "fd02")
        if not any(p.subnet_of(ipaddress.IPv6Network(f"{base}::/16")) for p in pools)
    )
    site = lab.ok(
        lab.api(
            "POST",
            f"/tenants/{lab.a}/sites",
            h,
            json={
                "name": "rule-targets",
                "country": "CN",
                "purpose": "office",
                "prefixes": ["198.18.0.0/15", "203.0.113.0/24", f"{lab.v6_base}::/16"],
            },
        )
    )
    officer = lab.world.operators["compliance_officer"].headers
    for decl in site["declarations"]:
        lab.ok(lab.api("POST", f"/declarations/{decl['id']}/approve", officer, json={}))
    policy = lab.ok(
        lab.api(
            "POST",
            f"/tenants/{lab.a}/policies",
            h,
            json={"name": "office", "rules": lab.random_rules()},
        )
    )
    lab.policy_id = policy["id"]


def make_change(lab: Lab, kind: str) -> str:
    """One data-plane change of ``kind``; returns a description."""
    rng = lab.rng
    if kind == "user":
        user = rng.choice(lab.users[1:])
        state = "active" if user in lab.disabled else "disabled"
        lab.set_user(user, state)
        return f"user {lab.users.index(user)} {state}"
    if kind == "tenant_b":
        lab.set_tenant_b(not lab.b_active)
        return f"tenant B {'active' if lab.b_active else 'suspended'}"
    if kind == "policy":
        lab.edit_policy()
        return "policy rewritten"
    if kind == "add":
        n = rng.randint(1, 4)
        for _ in range(n):
            lab.add_device("a", rng.choice(lab.users))
        return f"{n} devices added"
    assert kind == "revoke"
    active = [d for d in lab.devices.values() if d["state"] == "active" and d["tenant_id"] == lab.a]
    chosen = rng.sample(active, rng.randint(1, 4))
    for device in chosen:
        lab.revoke(device)
    return f"{len(chosen)} devices revoked"


KINDS = ("user", "tenant_b", "policy", "add", "revoke")


def log_events(log: str, since: float) -> list[tuple[float, str]]:
    """(seconds after ``since``, line) of the agent's log lines from ``since`` (epoch) on,
    by their timestamps (local time, milliseconds)."""
    events = []
    for line in log.splitlines():
        try:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp() - since
        except ValueError:
            continue
        if stamp >= -0.001:
            events.append((stamp, line))
    return events


def apply_span(log: str, since: float) -> tuple[float, float] | None:
    """When, after ``since``, the agent first received a desired state and last logged
    "applied version"."""
    events = log_events(log, since)
    fetched = [t for t, line in events if "desired-state" in line]
    applied = [t for t, line in events if "applied version" in line]
    if not fetched or not applied or applied[-1] < fetched[0]:
        return None
    return fetched[0], applied[-1]


def agent_idle(log: str) -> bool:
    """The agent's last apply was acknowledged (it is back to long-polling)."""
    lines = log.splitlines()
    applied = [i for i, line in enumerate(lines) if "applied version" in line]
    acked = [i for i, line in enumerate(lines) if "/gateway/ack" in line]
    return bool(applied) and bool(acked) and acked[-1] > applied[-1]


def phase(log: str, since: float) -> str:
    """How far the killed agent had got with the change made at ``since``."""
    events = log_events(log, since)
    if any("applied version" in line for _, line in events):
        return "after an apply"
    if any("desired-state" in line for _, line in events):
        return "during the apply"
    return "before the fetch"


def test_agent_killed_at_random_points_of_its_apply_converges_exactly(lab: Lab) -> None:
    started = time.monotonic()
    populate(lab, DEVICES_PER_USER, USERS_A - 1, DEVICES_B)
    print(f"populated {len(lab.devices)} devices in {time.monotonic() - started:.1f} s")

    lab.agent.start()
    first = lab.wait_converged("the first apply", 90)
    desired = lab.check("the first apply")
    assert sum(len(t.peers) for t in desired.tenants) == USERS_A * DEVICES_PER_USER + DEVICES_B
    print(f"first full apply of {len(lab.devices)} peers acknowledged in {first:.2f} s")

    # How long each kind of change takes, change to acknowledgement (no crash), and when in
    # that span the agent applies (from its log: the desired state arrives → "applied").
    duration: dict[str, float] = {}
    window: dict[str, tuple[float, float]] = {}
    for kind in (*KINDS, "user", "tenant_b"):  # user and tenant B toggled back
        wall, t0 = time.time(), time.monotonic()
        make_change(lab, kind)
        took = lab.wait_converged(f"the {kind} change")
        duration[kind] = max(duration.get(kind, 0.0), time.monotonic() - t0, took)
        span = apply_span(lab.agent.log(), wall)
        if span is not None:
            window[kind] = span
        previous = lab.check(f"the {kind} change")
    print("change → ack: " + ", ".join(f"{k} {v:.2f} s" for k, v in duration.items()))
    print("apply: " + ", ".join(f"{k} {a:.2f}-{b:.2f} s" for k, (a, b) in window.items()))

    outcomes: Counter[str] = Counter()
    for n in range(CRASHES):
        # A restarted agent re-applies once and acknowledges even when nothing changed; let
        # it finish, so that the kill below lands in the apply of the change.
        wait_until(lambda: agent_idle(lab.agent.log()), 30, "the agent to settle")
        kind = lab.rng.choice(KINDS)
        # Half the kills are blind (anywhere from the change to its acknowledgement), half
        # aimed: a random time into the apply, once the agent's log shows the desired state
        # arrived (bounded by the longest apply of this kind seen without a crash).
        aimed = lab.rng.random() < 0.5
        if aimed:
            low, high = window.get(kind, (0.0, duration[kind]))
            delay = lab.rng.uniform(0, max(high - low, 0.05))
        else:
            delay = lab.rng.uniform(0, duration[kind])
        wall, t0 = time.time(), time.monotonic()
        killed_at: list[float] = []

        def kill(
            killed: list[float] = killed_at,
            aimed: bool = aimed,
            delay: float = delay,
            wall: float = wall,
        ) -> None:
            if aimed:  # wait for the desired state to arrive, then the delay
                limit = time.monotonic() + 10
                while time.monotonic() < limit and phase(lab.agent.log(), wall) == (
                    "before the fetch"
                ):
                    time.sleep(0.002)
            time.sleep(delay)
            lab.agent.kill()
            killed.append(time.monotonic())

        killer = threading.Thread(target=kill, daemon=True)
        killer.start()
        what = make_change(lab, kind)
        killer.join(30)
        assert killed_at, "the kill never happened"
        reached = phase(lab.agent.log(), wall)
        # What the PoP shows: the previous state, the target one, or neither (half way).
        target = gateway_desired_state(lab.server.url, lab.state_dir)
        if not pop_differences(lab.pop_ns, target):
            pop = "new"
        elif not pop_differences(lab.pop_ns, previous):
            pop = "old"
        else:
            pop = "half-applied"
        outcomes[reached] += 1
        outcomes[f"PoP {pop}"] += 1
        outcome = f"{'aimed' if aimed else 'blind'} kill {reached}, PoP {pop}"
        # Sometimes more changes land while the agent is dead.
        if lab.rng.random() < 0.25:
            what += " + " + make_change(lab, lab.rng.choice(KINDS))
        lab.agent.start()
        # Sometimes the restarted agent is killed again at once (during import or restore).
        if lab.rng.random() < 0.3:
            time.sleep(lab.rng.uniform(0, 1.5))
            lab.agent.kill()
            lab.agent.start()
            outcome += "; killed again on restart"
        converge = lab.wait_converged(f"crash {n + 1} ({what})")
        previous = lab.check(f"crash {n + 1} ({what})")
        print(
            f"crash {n + 1:2d}: {what:40s} killed at {killed_at[0] - t0:.2f} s: "
            f"{outcome:62s} converged {converge:.2f} s after restart"
        )
    print(f"kills: {dict(outcomes)}; total {time.monotonic() - started:.0f} s")
    # The kills did interrupt applies in progress, not only idle agents.
    assert outcomes["during the apply"] >= 3, outcomes
    lab.agent.terminate()


def wipe_pop(ns: str) -> None:
    """What a PoP reboot does to the data plane: daemons, links, routes, rules and nft gone."""
    for ifname in [p.name.removesuffix(".sock") for p in SOCKET_DIR.glob("wgt*.sock")]:
        pids = wireguard_go_pids(ifname)
        in_ns = set(netns.namespace_pids(ns))
        if not pids or not set(pids) <= in_ns:
            continue  # another namespace's (or another test's) daemon
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

        def gone(name: str = ifname) -> bool:
            return not wireguard_go_pids(name)

        wait_until(gone, 10, f"{ifname} to die")
        (SOCKET_DIR / f"{ifname}.sock").unlink(missing_ok=True)
    netns.run(["nft", "delete", "table", "inet", "tongdao"], netns=ns, check=False)
    for family in ("-4", "-6"):
        for _ in range(50):
            done = netns.run(["ip", family, "rule", "show"], netns=ns)
            ours = [ln for ln in done.stdout.splitlines() if "iif wgt" in ln]
            if not ours:
                break
            prio = ours[0].split(":", 1)[0]
            netns.run(["ip", family, "rule", "del", "priority", prio], netns=ns)


def test_agent_restarted_while_control_plane_is_down_restores_then_reconciles(
    lab: Lab,
) -> None:
    populate(lab, 5, 0, 0)
    dev_ns = lab.topo.namespace()
    dev_if, pop_if = lab.topo.veth(dev_ns, lab.pop_ns)
    netns.add_address(dev_ns, dev_if, "198.51.100.2/24")
    netns.add_address(lab.pop_ns, pop_if, "198.51.100.1/24")
    device = lab.add_device("a")  # the employee's laptop, with a real client
    lab.agent.start()
    lab.check("the first apply")
    conf = lab.api(
        "GET",
        f"/tenants/{lab.a}/devices/{device['id']}/wireguard.conf",
        lab.world.a.employee.headers,
    )
    assert conf.status_code == 200, conf.text
    text = conf.text
    netns.bring_up_client(dev_ns, lab.topo.wg_ifname(), text, device["private_key"])
    ifaces = lab.ok(lab.api("GET", f"/pops/{lab.pop_id}/interfaces", lab.world.admin.headers))
    gateway_ip = str(ifaces["data"][0]["ipv4"])
    assert netns.ping(dev_ns, gateway_ip), "the device cannot reach its PoP"
    applied = lab.desired()

    # The agent dies; a change is made that it has not seen; then the control plane goes away.
    lab.agent.kill()
    pending = lab.add_device("a")
    lab.revoke(
        next(d for d in lab.devices.values() if d["id"] not in (device["id"], pending["id"]))
    )
    lab.server.stop()
    # Fail-static: with both gone, the data plane keeps forwarding.
    assert netns.ping(dev_ns, gateway_ip), "traffic stopped when the agent died"
    # The PoP reboots: its data plane is gone, and the device loses its PoP.
    wipe_pop(lab.pop_ns)
    assert not netns.ping(dev_ns, gateway_ip, tries=2), "the wipe left the data plane up"

    # The agent starts with no control plane: it restores the last applied state from disk.
    lab.agent.start()
    wait_until(lambda: f"restored version {applied.version}" in lab.agent.log(), 30, "the restore")
    assert_pop_matches(lab.pop_ns, applied)
    assert netns.ping(dev_ns, gateway_ip, tries=20), "no traffic after the restore"
    wait_until(lambda: "control plane:" in lab.agent.log(), 30, "the agent to notice")
    assert lab.agent.alive(), lab.agent.log()
    assert pending["public_key"] not in {p.public_key for t in applied.tenants for p in t.peers}

    # The control plane returns on the same address: the agent applies the pending change.
    lab.server.start()
    desired = lab.check("the change made while the agent was away")
    assert pending["public_key"] in {p.public_key for t in desired.tenants for p in t.peers}
    assert netns.ping(dev_ns, gateway_ip)
    lab.agent.terminate()
    assert not lab.agent.alive()


@pytest.mark.parametrize("crash_at", ["publish_key", "ack"])
def test_agent_killed_between_saving_an_apply_and_reporting_it_reports_after_restart(
    lab: Lab, crash_at: str
) -> None:
    """The narrowest window, hit on purpose: the apply is done and saved to disk, but the
    agent dies before it publishes a new interface's key (``publish_key``) or acknowledges
    the version (``ack``). The restarted agent must still publish and acknowledge: otherwise
    the control plane shows the gateway behind forever, or has no key to give devices."""
    populate(lab, 3, 0, 0)
    lab.agent.start()
    lab.check("the first apply")
    lab.agent.terminate()
    if crash_at == "publish_key":
        lab.add_device("b")  # tenant B is served from now on: a new interface, a new key
    else:
        lab.add_device("a")  # no new interface: apply, then straight to ack
    lab.agent.start(crash_at=crash_at)
    proc = lab.agent.proc
    assert proc is not None
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"the agent never called ControlPlane.{crash_at}:\n{lab.agent.log()[-4000:]}"
        ) from None
    assert proc.returncode == -9, lab.agent.log()
    lab.agent.kill()  # reap, and let in-flight children finish
    assert lab.state_dir.joinpath("applied.json").exists()
    lab.agent.start()
    # A few long polls (5 s each) are plenty.
    lab.wait_converged(f"the version applied before the crash at {crash_at}", 20)
    lab.check(f"the restart after the crash at {crash_at}")
    lab.agent.terminate()
