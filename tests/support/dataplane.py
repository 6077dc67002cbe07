"""Helpers for data-plane robustness tests.

* ``RestartableServer``: a uvicorn control plane on a fixed loopback port that can be stopped
  and started again (the agent keeps the URL it was given).
* ``AgentProcess``: ``python -m tongdao gateway run`` as a subprocess in its own session, so a
  SIGKILL hits the agent alone (as a crash would) and its in-flight ``ip``/``nft``/``wg``
  children can be waited for; wireguard-go daemons start their own sessions and survive.
* ``PopView`` / ``assert_pop_matches``: the PoP namespace read back with independent tools
  (``wg show all dump``, ``ip -j rule``, ``ip -j route show table N``, ``nft -j list
  ruleset``) and compared with a desired state, exactly.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import uvicorn
from fastapi import FastAPI

from tongdao.agent import firewall
from tongdao.agent.host import rule_priority
from tongdao.agent.planner import InterfacePlan
from tongdao.gateway.desired import DesiredState, TenantInterface


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``predicate`` until true; returns the seconds it took, fails after ``timeout``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    if predicate():
        return time.monotonic() - start
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- control plane ---------------------------------------------------------------------------


class RestartableServer:
    """``app`` served by uvicorn in a thread on one fixed 127.0.0.1 port, stoppable and
    restartable (SO_REUSEADDR, so connections left in TIME_WAIT do not block the rebind)."""

    def __init__(
        self,
        app: FastAPI,
        *,
        lifespan: Literal["auto", "on", "off"] = "off",
        port: int | None = None,
    ) -> None:
        self.app = app
        self.lifespan = lifespan
        self.port = port or free_port()
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None
        self.sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> None:
        assert not self.running
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", self.port))
        config = uvicorn.Config(
            self.app, lifespan=self.lifespan, log_level="warning", timeout_graceful_shutdown=2
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        self.server, self.thread, self.sock = server, thread, sock

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(10)
            if self.thread.is_alive():
                self.server.force_exit = True
                self.thread.join(5)
            assert not self.thread.is_alive(), "uvicorn did not stop"
        if self.sock is not None:
            self.sock.close()
        self.server = self.thread = self.sock = None

    def __enter__(self) -> RestartableServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- processes -------------------------------------------------------------------------------


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if fields[0] not in {"Z", "X"} and int(fields[2]) == pgid:
            found.append(int(entry.name))
    return found


def drain_group(pgid: int, seconds: float = 15.0) -> None:
    """Wait for a killed leader's children (in-flight ip/nft/wg commands) to finish; SIGKILL
    them past ``seconds``."""
    deadline = time.monotonic() + seconds
    while group_members(pgid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.2)
            return
        time.sleep(0.02)


# ``python -c CRASH_AT METHOD ARGS...``: the agent CLI, SIGKILLing itself the moment it calls
# ``ControlPlane.METHOD`` (so a crash lands exactly in the window before that call).
CRASH_AT = """
import os, signal, sys
from tongdao.agent import gateway
def crash(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
setattr(gateway.ControlPlane, sys.argv.pop(1), crash)
sys.argv[0] = "tongdao"
from tongdao.cli import main
main()
"""


@dataclass
class AgentProcess:
    """The gateway agent CLI, run and killed as a separate process."""

    server: str
    state_dir: Path
    token: str
    netns: str
    log_dir: Path
    poll_wait: float = 5.0
    proc: subprocess.Popen[bytes] | None = None
    runs: int = 0
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def log_path(self, run: int | None = None) -> Path:
        return self.log_dir / f"agent-{self.runs if run is None else run}.log"

    def start(self, *, crash_at: str | None = None) -> None:
        """Start the agent; ``crash_at``: a ``ControlPlane`` method (``ack``, ``publish_key``)
        at whose first call the agent SIGKILLs itself."""
        assert self.proc is None or self.proc.poll() is not None, "the agent is running"
        self.runs += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        head = ["-m", "tongdao"] if crash_at is None else ["-c", CRASH_AT, crash_at]
        argv = [
            sys.executable,
            *head,
            "gateway",
            "run",
            "--server",
            self.server,
            "--token",
            self.token,
            "--state-dir",
            str(self.state_dir),
            "--netns",
            self.netns,
            "--poll-wait",
            str(self.poll_wait),
            "--log-level",
            "info",
        ]
        with self.log_path().open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.started.append(self.proc)

    def kill(self) -> None:
        """SIGKILL the agent (only it), reap it, and let its in-flight children finish."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        drain_group(proc.pid)

    def terminate(self, grace: float = 15.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self, run: int | None = None) -> str:
        path = self.log_path(run)
        return path.read_text(errors="replace") if path.exists() else ""

    def cleanup(self) -> None:
        """Kill every agent process this object started (for fixture teardown)."""
        for proc in self.started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
            drain_group(proc.pid, 5.0)


# --- the control plane's view ----------------------------------------------------------------


def gateway_desired_state(server: str, state_dir: Path) -> DesiredState:
    """The PoP's desired state as the control plane serves it now, fetched with the agent's
    own credential (``wait=0``: no long poll)."""
    credential = json.loads((state_dir / "credential.json").read_text())["credential"]
    resp = httpx.get(
        server + "/api/v1/gateway/desired-state",
        params={"after": 0, "wait": 0},
        headers={"Authorization": f"Bearer {credential}"},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return DesiredState.model_validate(resp.json())


# --- the PoP's view (independent tools) ------------------------------------------------------


def _run(ns: str, *argv: str) -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)} in {ns}: {done.stderr.strip()}"
    return done.stdout


def _ip_json(ns: str, *argv: str) -> list[dict[str, Any]]:
    out = _run(ns, "ip", "-j", *argv)
    data = json.loads(out) if out.strip() else []
    return data if isinstance(data, list) else []


@dataclass(frozen=True)
class WgInterface:
    public_key: str
    listen_port: int
    peers: dict[str, frozenset[str]]  # public key → allowed IPs


def _net(dst: str, version: int) -> str:
    if dst == "default":
        return "0.0.0.0/0" if version == 4 else "::/0"
    if "/" not in dst:
        dst += "/32" if version == 4 else "/128"
    return str(ipaddress.ip_network(dst, strict=False))


class PopView:
    """What the PoP namespace actually runs, read with wg, ip and nft."""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    def links(self) -> set[str]:
        return {str(link["ifname"]) for link in _ip_json(self.ns, "link", "show")}

    def wg(self) -> dict[str, WgInterface]:
        """WireGuard interfaces of this namespace. (``wg show all`` lists every wireguard-go
        UAPI socket in the host-wide /var/run/wireguard, other namespaces' too: keep only the
        interfaces that are links here.)"""
        ifaces: dict[str, WgInterface] = {}
        peers: dict[str, dict[str, frozenset[str]]] = {}
        for line in _run(self.ns, "wg", "show", "all", "dump").splitlines():
            f = line.split("\t")
            if len(f) == 5:  # interface: name, private key, public key, port, fwmark
                peers[f[0]] = {}
                ifaces[f[0]] = WgInterface(f[2], int(f[3]), peers[f[0]])
            elif len(f) == 9:  # peer: name, key, psk, endpoint, allowed ips, ...
                allowed = frozenset() if f[4] == "(none)" else frozenset(f[4].split(","))
                assert f[1] not in peers[f[0]], f"peer {f[1]} listed twice on {f[0]}"
                peers[f[0]][f[1]] = allowed
        links = self.links()
        return {name: iface for name, iface in ifaces.items() if name in links}

    def rules(self) -> list[tuple[int, str, int, int]]:
        """(family, iif, table, priority) of every `ip rule` that names an input interface."""
        found = []
        for version in (4, 6):
            for rule in _ip_json(self.ns, f"-{version}", "rule", "show"):
                if "iif" in rule:
                    table = str(rule.get("table", "-1"))
                    found.append(
                        (
                            version,
                            str(rule["iif"]),
                            int(table) if table.isdigit() else -1,
                            int(rule.get("priority", -1)),
                        )
                    )
        return found

    def routes(self, table: int) -> list[tuple[str, str]]:
        """(prefix, device) of every route in a table, both families, duplicates kept."""
        found = []
        for version in (4, 6):
            for route in _ip_json(self.ns, f"-{version}", "route", "show", "table", str(table)):
                found.append((_net(str(route.get("dst", "")), version), str(route.get("dev", ""))))
        return found

    def ruleset(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(_run(self.ns, "nft", "-j", "list", "ruleset"))
        return out

    def link_up(self, ifname: str) -> bool:
        links = _ip_json(self.ns, "link", "show", "dev", ifname)
        return bool(links) and "UP" in links[0].get("flags", [])

    def addresses(self, ifname: str) -> set[str]:
        found = set()
        for link in _ip_json(self.ns, "address", "show", "dev", ifname):
            for addr in link.get("addr_info", []):
                if addr.get("scope") != "link":
                    found.add(str(ipaddress.ip_interface(f"{addr['local']}/{addr['prefixlen']}")))
        return found


def desired_routes(tenant: TenantInterface) -> set[str]:
    """The routes the tenant's table must hold, as the planner defines them (the pools, and
    peer prefixes outside the pools)."""
    step = InterfacePlan(tenant, False, False, False, (), ())
    return {str(ipaddress.ip_network(p, strict=False)) for p in step.routes}


def uncovered(tenant: TenantInterface, routes: set[str]) -> list[str]:
    """Prefixes of the tenant (pools, peers' allowed IPs) that no route in ``routes`` covers
    (an invariant independent of how the planner picks routes)."""
    nets = [ipaddress.ip_network(r) for r in routes]
    wanted = set(tenant.pools) | {a for p in tenant.peers for a in p.allowed_ips}
    missing = []
    for cidr in sorted(wanted):
        net = ipaddress.ip_network(cidr, strict=False)
        if not any(net.version == r.version and net.subnet_of(r) for r in nets):  # type: ignore[arg-type]
            missing.append(cidr)
    return missing


def tongdao_tables(ruleset: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        item["table"]
        for item in ruleset.get("nftables", [])
        if "table" in item and item["table"].get("name") == firewall.TABLE
    ]


def tongdao_items(ruleset: dict[str, Any]) -> dict[str, Any]:
    """Only what belongs to ``table inet tongdao`` (sets, maps, chains, rules)."""
    items = []
    for item in ruleset.get("nftables", []):
        for body in item.values():
            if (
                isinstance(body, dict)
                and body.get("table") == firewall.TABLE
                and body.get("family") == firewall.FAMILY
            ):
                items.append(item)
                break
    return {"nftables": items}


def pop_differences(
    ns: str, desired: DesiredState, *, other_wg: frozenset[str] = frozenset()
) -> list[str]:
    """Every way the PoP namespace differs from ``desired`` (empty: it matches exactly).
    ``other_wg``: WireGuard interfaces in the namespace that are not the agent's."""
    view = PopView(ns)
    problems: list[str] = []
    tenants = {t.ifname: t for t in desired.tenants}

    # WireGuard: exactly the desired interfaces, keys, ports, peers and allowed IPs.
    wg = {name: i for name, i in view.wg().items() if name not in other_wg}
    if set(wg) != set(tenants):
        problems.append(f"wg interfaces {sorted(wg)} != desired {sorted(tenants)}")
    for name, tenant in tenants.items():
        have = wg.get(name)
        if have is None:
            continue
        want_peers = {p.public_key: frozenset(p.allowed_ips) for p in tenant.peers}
        if have.peers != want_peers:
            missing = sorted(set(want_peers) - set(have.peers))
            extra = sorted(set(have.peers) - set(want_peers))
            wrong = sorted(
                k for k in set(want_peers) & set(have.peers) if want_peers[k] != have.peers[k]
            )
            problems.append(
                f"{name}: peers differ: {len(missing)} missing, {len(extra)} extra, "
                f"{len(wrong)} with other allowed-ips (e.g. {(missing + extra + wrong)[:3]})"
            )
        if have.listen_port != tenant.listen_port:
            problems.append(f"{name}: listen port {have.listen_port} != {tenant.listen_port}")
        if tenant.public_key is not None and have.public_key != tenant.public_key:
            problems.append(f"{name}: key {have.public_key} != published {tenant.public_key}")
        if not view.link_up(name):
            problems.append(f"{name}: link is not up")
        want_addrs = {
            str(ipaddress.ip_interface(tenant.address_v4)),
            str(ipaddress.ip_interface(tenant.address_v6)),
        }
        if view.addresses(name) != want_addrs:
            problems.append(f"{name}: addresses {view.addresses(name)} != {want_addrs}")

    # Policy routing: exactly one rule per tenant interface per family, none for others.
    rules = view.rules()
    counts = Counter((family, iif) for family, iif, _, _ in rules)
    for (family, iif), n in counts.items():
        if n > 1:
            problems.append(f"{n} IPv{family} rules for iif {iif}")
        if iif.startswith("wgt") and iif not in tenants:
            problems.append(f"IPv{family} rule for iif {iif}, which no tenant wants")
    for name, tenant in tenants.items():
        for family in (4, 6):
            mine = [r for r in rules if r[0] == family and r[1] == name]
            rule = (family, name, tenant.table, rule_priority(tenant.table))
            if mine != [rule]:
                problems.append(f"IPv{family} rules for {name}: {mine} != [{rule}]")

    # Routes: each tenant table routes exactly its pools and peers' prefixes into its interface.
    for name, tenant in tenants.items():
        routes = view.routes(tenant.table)
        dup = [r for r, n in Counter(routes).items() if n > 1]
        if dup:
            problems.append(f"table {tenant.table}: duplicate routes {dup[:3]}")
        want_routes = {(p, name) for p in desired_routes(tenant)}
        have_routes = set(routes)
        holes = uncovered(tenant, {p for p, dev in have_routes if dev == name})
        if holes:
            problems.append(f"table {tenant.table}: nothing routes {holes[:3]} to {name}")
        if have_routes != want_routes:
            missing_routes = sorted(want_routes - have_routes)
            extra_routes = sorted(have_routes - want_routes)
            problems.append(
                f"table {tenant.table}: {len(missing_routes)} routes missing "
                f"(e.g. {missing_routes[:3]}), {len(extra_routes)} extra "
                f"(e.g. {extra_routes[:3]})"
            )

    # nftables: exactly one `table inet tongdao`, its sets holding what the compiler says.
    ruleset = view.ruleset()
    tables = tongdao_tables(ruleset)
    if len(tables) != 1 or tables[0].get("family") != firewall.FAMILY:
        problems.append(f"nft tables named {firewall.TABLE}: {tables}")
    want_counts = firewall.set_element_counts(firewall.compile_ruleset(desired.tenants))
    have_counts = firewall.set_element_counts(tongdao_items(ruleset))
    if have_counts != want_counts:
        diff = {
            k: (have_counts.get(k), want_counts.get(k))
            for k in set(have_counts) | set(want_counts)
            if have_counts.get(k) != want_counts.get(k)
        }
        problems.append(f"nft set element counts (have, want) differ: {diff}")
    return problems


def assert_pop_matches(ns: str, desired: DesiredState, **kw: Any) -> None:
    problems = pop_differences(ns, desired, **kw)
    assert not problems, f"PoP state != desired version {desired.version}:\n  " + "\n  ".join(
        problems
    )
