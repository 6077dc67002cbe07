"""The compiled firewall on a real kernel, in network namespaces this test builds itself.

Topology (every name starts ``td-``; everything is deleted at teardown, even on failure)::

    td-…-ca (client A) ─┐                          ┌─ td-…-cb (client B)
      100.64.1.2        ├─ bridge wgt51820 ┐   ┌ bridge wgt51821 ─┤  100.64.1.2   (same addresses)
    td-…-sa (server A) ─┘   (tenant A)     pop   (tenant B)     └─ td-…-sb (server B)
      198.18.1.2                           │                        198.18.1.2
                       td-…-x1 ── ux1 ─────┴───── ux2 ── td-…-x2   (unrelated forwarding)
                       203.0.113.2                       203.0.113.130

Instead of WireGuard, each tenant "interface" in the PoP is a bridge named like one
(``wgt<port>``): traffic between a tenant's client and server is routed by the PoP and enters
and leaves that same interface, exactly like the hairpin through a WireGuard interface. Each
tenant has its own routing table (``ip rule iif wgt… lookup <port>``), as on a real PoP.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import need
from tongdao.agent import firewall as fw
from tongdao.gateway.desired import PolicyRule, Protocol, TenantInterface

pytestmark = pytest.mark.root

CLIENT4, SERVER4 = "100.64.1.2", "198.18.1.2"
CLIENT6, SERVER6 = "fd00:a::2", "fd00:b::2"
PORTS = (8080, 8081)
PROBE_TIMEOUT = 1.5

SERVER_SCRIPT = """
import selectors, socket, sys, time
deadline = time.monotonic() + float(sys.argv[1])
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[2:]):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(16)
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while time.monotonic() < deadline:
    for key, _ in sel.select(timeout=0.5):
        conn, _ = key.fileobj.accept()
        with conn:
            conn.sendall(b"ok")
"""

CLIENT_SCRIPT = """
import socket, sys
host, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
with socket.socket(family, socket.SOCK_STREAM) as s:
    s.settimeout(timeout)
    try:
        s.connect((host, port))
        sys.exit(0 if s.recv(2) == b"ok" else 2)
    except OSError:
        sys.exit(1)
"""


def sh(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


def ns_sh(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *argv, check=check)


@dataclass
class Net:
    prefix: str
    servers: list[subprocess.Popen[str]]

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    @property
    def pop(self) -> str:
        return self.ns("pop")

    def tcp(self, client: str, host: str, port: int) -> bool:
        done = ns_sh(
            self.ns(client),
            sys.executable,
            "-c",
            CLIENT_SCRIPT,
            host,
            str(port),
            str(PROBE_TIMEOUT),
            check=False,
        )
        assert done.returncode in (0, 1), done
        return done.returncode == 0

    def ping(self, client: str, host: str) -> bool:
        done = ns_sh(self.ns(client), "ping", "-n", "-q", "-c", "1", "-W", "1", host, check=False)
        return done.returncode == 0

    def apply(self, tenants: list[TenantInterface]) -> dict[str, Any]:
        ruleset = fw.compile_ruleset(tenants)
        fw.apply_ruleset(ruleset, netns=self.pop)
        return ruleset

    def listed(self) -> dict[str, Any]:
        """The whole ruleset of the PoP namespace, as the independent ``nft`` CLI lists it."""
        out = ns_sh(self.pop, "nft", "-j", "list", "ruleset").stdout
        parsed: dict[str, Any] = json.loads(out)
        return parsed


def tenant(port: int, *rules: PolicyRule) -> TenantInterface:
    return TenantInterface(
        tenant_id=uuid.UUID(int=port),
        ifname=f"wgt{port}",
        listen_port=port,
        table=port,
        address_v4="100.64.1.1/24",
        address_v6="fd00:a::1/64",
        pools=("100.64.1.0/24", "fd00:a::/64"),
        policy=rules,
    )


A, B = 51820, 51821


def _build(net: Net) -> None:
    for name in ("pop", "ca", "sa", "cb", "sb", "x1", "x2"):
        sh("ip", "netns", "add", net.ns(name))
        ns_sh(net.ns(name), "ip", "link", "set", "lo", "up")
    pop = net.pop
    for key in (
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
        "net.ipv4.conf.all.send_redirects=0",
        "net.ipv4.conf.default.send_redirects=0",
    ):
        ns_sh(pop, "sysctl", "-q", "-w", key)

    def veth(pop_end: str, ns: str) -> None:
        sh(
            "ip",
            "link",
            "add",
            pop_end,
            "netns",
            pop,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            net.ns(ns),
        )
        ns_sh(pop, "ip", "link", "set", pop_end, "up")
        ns_sh(net.ns(ns), "ip", "link", "set", "eth0", "up")

    def host(ns: str, addr4: str, gw4: str, addr6: str | None, gw6: str | None) -> None:
        ns_sh(net.ns(ns), "ip", "addr", "add", addr4, "dev", "eth0")
        ns_sh(net.ns(ns), "ip", "route", "add", "default", "via", gw4)
        if addr6 and gw6:
            ns_sh(net.ns(ns), "ip", "-6", "addr", "add", addr6, "dev", "eth0", "nodad")
            ns_sh(net.ns(ns), "ip", "-6", "route", "add", "default", "via", gw6)

    for port, side in ((A, "a"), (B, "b")):
        bridge = f"wgt{port}"
        ns_sh(pop, "ip", "link", "add", bridge, "type", "bridge")
        ns_sh(pop, "ip", "link", "set", bridge, "up")
        for addr in ("100.64.1.1/24", "198.18.1.1/24"):
            ns_sh(pop, "ip", "addr", "add", addr, "dev", bridge)
        for addr in ("fd00:a::1/64", "fd00:b::1/64"):
            ns_sh(pop, "ip", "-6", "addr", "add", addr, "dev", bridge, "nodad")
        for role in ("c", "s"):
            port_name = f"p{side}{role}"
            veth(port_name, f"{role}{side}")
            ns_sh(pop, "ip", "link", "set", port_name, "master", bridge)
        host(f"c{side}", f"{CLIENT4}/24", "100.64.1.1", f"{CLIENT6}/64", "fd00:a::1")
        host(f"s{side}", f"{SERVER4}/24", "198.18.1.1", f"{SERVER6}/64", "fd00:b::1")
        # the tenant's own routing table, as on a PoP
        for family in ("-4", "-6"):
            ns_sh(
                pop, "ip", family, "rule", "add", "iif", bridge, "lookup", str(port), "pref", "100"
            )
        for dst in ("100.64.1.0/24", "198.18.1.0/24"):
            ns_sh(pop, "ip", "route", "add", dst, "dev", bridge, "table", str(port))
        for dst in ("fd00:a::/64", "fd00:b::/64"):
            ns_sh(pop, "ip", "-6", "route", "add", dst, "dev", bridge, "table", str(port))

    veth("ux1", "x1")
    veth("ux2", "x2")
    ns_sh(pop, "ip", "addr", "add", "203.0.113.1/25", "dev", "ux1")
    ns_sh(pop, "ip", "addr", "add", "203.0.113.129/25", "dev", "ux2")
    host("x1", "203.0.113.2/25", "203.0.113.1", None, None)
    host("x2", "203.0.113.130/25", "203.0.113.129", None, None)

    for side in ("a", "b"):
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                net.ns(f"s{side}"),
                sys.executable,
                "-c",
                SERVER_SCRIPT,
                "300",
                *map(str, PORTS),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        net.servers.append(server)
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "ready"

    # let link-local addresses, neighbour discovery and ARP settle before the first probe
    for client, target in itertools.product(("ca", "cb"), (SERVER4, SERVER6)):
        for _ in range(20):
            if net.ping(client, target):
                break
            time.sleep(0.25)
        else:
            pytest.fail(f"topology never converged: {client} -> {target}")


@pytest.fixture(scope="module")
def net() -> Iterator[Net]:
    if os.geteuid() != 0:
        need("root (network namespaces)")
    for tool in ("ip", "nft", "ping"):
        if shutil.which(tool) is None:
            need(tool)
    topology = Net(prefix=f"td-{secrets.token_hex(3)}", servers=[])
    try:
        _build(topology)
        yield topology
    finally:
        for server in topology.servers:
            server.kill()
            server.wait(timeout=10)
            if server.stdout is not None:
                server.stdout.close()
        for name in ("pop", "ca", "sa", "cb", "sb", "x1", "x2"):
            sh("ip", "netns", "del", topology.ns(name), check=False)


@pytest.fixture
def clean(net: Net) -> Iterator[Net]:
    fw.remove_ruleset(netns=net.pop)
    yield net
    fw.remove_ruleset(netns=net.pop)


def allow(src: str, dst: str, protocol: Protocol = "any", *ports: str) -> PolicyRule:
    return PolicyRule(src=(src,), dst=(dst,), protocol=protocol, ports=ports)


# --------------------------------------------------------------------------- tests


def test_without_our_table_the_topology_forwards(clean: Net) -> None:
    """The control: with no firewall everything flows, so the blocks below are the firewall's."""
    assert clean.tcp("ca", SERVER4, 8080)
    assert clean.tcp("ca", SERVER6, 8081)
    assert clean.ping("cb", SERVER4)
    assert clean.ping("x1", "203.0.113.130")


def test_empty_table_leaves_host_forwarding_alone(clean: Net) -> None:
    clean.apply([])
    assert clean.ping("x1", "203.0.113.130")
    # named like a tenant interface but not (yet) one: nothing is forwarded through it (see
    # test_firewall_unknown_iface_netns.py)
    assert not clean.ping("ca", SERVER4)


def test_default_deny(clean: Net) -> None:
    clean.apply([tenant(A), tenant(B)])
    assert not clean.tcp("ca", SERVER4, 8080)
    assert not clean.tcp("ca", SERVER6, 8080)
    assert not clean.ping("ca", SERVER4)
    assert not clean.ping("cb", SERVER6)
    # unrelated forwarding on the host is untouched
    assert clean.ping("x1", "203.0.113.130")


def test_policy_allows_exactly_one_port_and_family(clean: Net) -> None:
    clean.apply([tenant(A, allow(f"{CLIENT4}/32", f"{SERVER4}/32", "tcp", "8080")), tenant(B)])
    assert clean.tcp("ca", SERVER4, 8080)
    assert not clean.tcp("ca", SERVER4, 8081)
    assert not clean.ping("ca", SERVER4)
    assert not clean.tcp("ca", SERVER6, 8080)  # v4 rule says nothing about v6
    # the server cannot open connections back: the rule is one-way
    assert not clean.ping("sa", CLIENT4)
    # tenant B, with the very same addresses, has no policy
    assert not clean.tcp("cb", SERVER4, 8080)


def test_port_ranges_icmp_and_v6(clean: Net) -> None:
    clean.apply(
        [
            tenant(
                A,
                allow("fd00:a::/64", "fd00:b::2", "tcp", "8000-8080"),
                allow(CLIENT4, SERVER4, "icmp"),
                allow(CLIENT6, "fd00:b::/64", "icmp"),
            ),
            tenant(B, allow("100.64.1.0/24", "198.18.1.0/24", "any")),
        ]
    )
    assert clean.tcp("ca", SERVER6, 8080)
    assert not clean.tcp("ca", SERVER6, 8081)
    assert not clean.tcp("ca", SERVER4, 8080)
    assert clean.ping("ca", SERVER4)
    assert clean.ping("ca", SERVER6)
    assert clean.tcp("cb", SERVER4, 8081)
    assert clean.ping("cb", SERVER4)
    assert not clean.ping("cb", SERVER6)


def test_tenants_never_reach_each_other_even_when_misrouted(clean: Net) -> None:
    """Route tenant A's traffic into tenant B's interface: the firewall still drops it."""
    pop = clean.pop
    # B's server and A's client get unique extra addresses (A's client uses its own for this
    # destination), and both tenant tables are (wrongly) given routes into the other tenant
    ns_sh(clean.ns("sb"), "ip", "addr", "add", "203.0.113.200/32", "dev", "eth0")
    ns_sh(clean.ns("ca"), "ip", "addr", "add", "192.0.2.10/32", "dev", "eth0")
    ns_sh(
        clean.ns("ca"),
        "ip",
        "route",
        "add",
        "203.0.113.200/32",
        "via",
        "100.64.1.1",
        "src",
        "192.0.2.10",
    )
    ns_sh(pop, "ip", "route", "add", "203.0.113.200/32", "dev", f"wgt{B}", "table", str(A))
    ns_sh(pop, "ip", "route", "add", "192.0.2.10/32", "dev", f"wgt{A}", "table", str(B))
    try:
        assert clean.tcp("ca", "203.0.113.200", 8080)  # the misroute works without the firewall
        everything = allow("0.0.0.0/0", "0.0.0.0/0")
        clean.apply([tenant(A, everything), tenant(B, everything)])
        assert not clean.tcp("ca", "203.0.113.200", 8080)
        assert not clean.ping("ca", "203.0.113.200")
        assert clean.tcp("ca", SERVER4, 8080)  # A's own traffic still flows
        assert clean.tcp("cb", SERVER4, 8080)
        # nor from an unrelated interface into a tenant interface
        assert not clean.ping("x1", SERVER4)
    finally:
        ns_sh(pop, "ip", "route", "del", "203.0.113.200/32", "table", str(A), check=False)
        ns_sh(pop, "ip", "route", "del", "192.0.2.10/32", "table", str(B), check=False)
        ns_sh(clean.ns("sb"), "ip", "addr", "del", "203.0.113.200/32", "dev", "eth0", check=False)
        ns_sh(clean.ns("ca"), "ip", "route", "del", "203.0.113.200/32", check=False)
        ns_sh(clean.ns("ca"), "ip", "addr", "del", "192.0.2.10/32", "dev", "eth0", check=False)


def test_conntrack_zones_follow_the_tenant_interface(clean: Net) -> None:
    clean.apply(
        [tenant(A, allow(CLIENT4, SERVER4, "icmp")), tenant(B, allow(CLIENT4, SERVER4, "icmp"))]
    )
    assert clean.ping("ca", SERVER4)
    assert clean.ping("cb", SERVER4)
    table = ns_sh(clean.pop, "cat", "/proc/net/nf_conntrack", check=False).stdout
    if not table:
        pytest.skip("no /proc/net/nf_conntrack in this kernel")
    zones = {
        line.split("zone=")[1].split()[0]
        for line in table.splitlines()
        if f"dst={SERVER4}" in line and "zone=" in line
    }
    assert {str(A), str(B)} <= zones


def test_other_tables_untouched_and_reapply_is_idempotent(clean: Net) -> None:
    pop = clean.pop
    ns_sh(pop, "nft", "add", "table", "inet", "someone_else")
    ns_sh(pop, "nft", "add", "chain", "inet", "someone_else", "c")
    try:
        policy = tenant(
            A, allow(CLIENT4, SERVER4, "tcp", "8080", "9000-9100"), allow(CLIENT6, SERVER6)
        )
        ruleset = clean.apply([policy, tenant(B)])
        first = ns_sh(pop, "nft", "list", "ruleset").stdout
        clean.apply([policy, tenant(B)])
        second = ns_sh(pop, "nft", "list", "ruleset").stdout
        assert first == second
        listed = clean.listed()
        tables = [i["table"]["name"] for i in listed["nftables"] if "table" in i]
        assert sorted(tables) == ["someone_else", "tongdao"]
        ours = [i for i in listed["nftables"] if i.get(next(iter(i)), {}).get("table") == "tongdao"]
        assert fw.set_element_counts({"nftables": ours}) == fw.set_element_counts(ruleset)
        rules = [i["rule"] for i in ours if "rule" in i]
        assert len(rules) == 2 * 2 + 4 + 2 * 10  # notrack + zone twice, forward, two tenants
        # the kernel holds "wgt*" as a wildcard (a literal star would list as "wgt\\*")
        wildcards = [
            e["match"]["right"]
            for r in rules
            if r["chain"] == "forward"
            for e in r["expr"]
            if "match" in e
        ]
        assert wildcards == ["wgt*", "wgt*", "@ifaces"]
        assert fw.read_ruleset(netns=pop) is not None
        fw.remove_ruleset(netns=pop)
        fw.remove_ruleset(netns=pop)  # idempotent
        assert fw.read_ruleset(netns=pop) is None
        assert "someone_else" in ns_sh(pop, "nft", "list", "tables").stdout
    finally:
        ns_sh(pop, "nft", "delete", "table", "inet", "someone_else", check=False)


def test_install_creates_or_replaces_to_the_same_ruleset(clean: Net) -> None:
    """``install_ruleset`` (an agent's first apply) creates the table when it is absent and
    replaces it when it is there (an agent restarted over a live table): both end exactly
    where ``apply_ruleset`` ends, with one table and no duplicated rule."""
    pop = clean.pop
    old = fw.compile_ruleset([tenant(A, allow(CLIENT4, SERVER4, "tcp", "8081")), tenant(B)])
    new = fw.compile_ruleset([tenant(A, allow(CLIENT4, SERVER4, "tcp", "8080"))])
    fw.install_ruleset(new, netns=pop)  # absent: created
    created = ns_sh(pop, "nft", "list", "ruleset").stdout
    assert clean.tcp("ca", SERVER4, 8080)
    assert not clean.tcp("ca", SERVER4, 8081)
    fw.install_ruleset(new, netns=pop)  # present and equal: replaced, unchanged
    assert ns_sh(pop, "nft", "list", "ruleset").stdout == created
    fw.apply_ruleset(old, netns=pop)
    fw.install_ruleset(new, netns=pop)  # present and different: replaced
    assert ns_sh(pop, "nft", "list", "ruleset").stdout == created
    fw.remove_ruleset(netns=pop)
    fw.apply_ruleset(new, netns=pop)
    assert ns_sh(pop, "nft", "list", "ruleset").stdout == created
    with pytest.raises(fw.FirewallError, match="full batch"):
        fw.install_ruleset(fw.plan_update(old, old), netns=pop)


def test_nft_errors_are_typed_and_leave_the_old_table(clean: Net) -> None:
    good = clean.apply([tenant(A, allow(CLIENT4, SERVER4, "tcp", "8080"))])
    broken = json.loads(json.dumps(good))
    broken["nftables"].append(
        {
            "add": {
                "rule": {
                    "family": "inet",
                    "table": "tongdao",
                    "chain": "nope",
                    "expr": [{"accept": None}],
                }
            }
        }
    )
    with pytest.raises(fw.NftError, match="nft:") as caught:
        fw.apply_ruleset(broken, netns=clean.pop)
    assert caught.value.stderr
    listed = fw.read_ruleset(netns=clean.pop)
    assert listed is not None
    assert fw.set_element_counts(listed)["wgt51820_svc4"] == 1
    assert clean.tcp("ca", SERVER4, 8080)


def test_incremental_update(clean: Net) -> None:
    old = clean.apply([tenant(A, allow(CLIENT4, SERVER4, "tcp", "8080")), tenant(B)])
    assert clean.tcp("ca", SERVER4, 8080)
    new = fw.compile_ruleset([tenant(A, allow(CLIENT4, SERVER4, "tcp", "8081")), tenant(B)])
    update = fw.plan_update(old, new)
    assert all("element" in next(iter(cmd.values())) for cmd in update["nftables"])
    fw.apply_ruleset(update, netns=clean.pop)
    assert not clean.tcp("ca", SERVER4, 8080)
    assert clean.tcp("ca", SERVER4, 8081)
    listed = fw.read_ruleset(netns=clean.pop)
    assert listed is not None
    assert fw.set_elements(listed)["wgt51820_svc4"] == fw.set_elements(new)["wgt51820_svc4"]


def test_thousand_rules_apply(clean: Net, record_property: Any) -> None:
    rules = [
        PolicyRule(
            src=(f"100.96.{i // 256}.{i % 256}", f"fd00:64::{i:x}"),
            dst=(f"198.18.{i // 256}.0/24", f"fd00:18:{i:x}::/64"),
            protocol=("tcp", "udp", "any", "icmp")[i % 4],
            ports=(str(1000 + i), f"{20000 + i}-{20010 + i}") if i % 4 < 2 else (),
        )
        for i in range(998)
    ] + [
        allow(CLIENT4, SERVER4, "tcp", "8080"),
        allow("100.64.0.0/16", "198.18.0.0/15", "tcp", "443"),
    ]
    started = time.perf_counter()
    ruleset = fw.compile_ruleset([tenant(A, *rules), tenant(B)])
    compiled = time.perf_counter()
    fw.apply_ruleset(ruleset, netns=clean.pop)
    applied = time.perf_counter()
    fw.apply_ruleset(ruleset, netns=clean.pop)
    reapplied = time.perf_counter()
    counts = fw.set_element_counts(ruleset)
    listed = fw.read_ruleset(netns=clean.pop)
    assert listed is not None
    assert fw.set_element_counts(listed) == counts
    assert clean.tcp("ca", SERVER4, 8080)
    assert not clean.tcp("ca", SERVER4, 8081)
    figures = {
        "compile_s": round(compiled - started, 3),
        "apply_s": round(applied - compiled, 3),
        "reapply_s": round(reapplied - applied, 3),
        "elements": sum(v for k, v in counts.items() if k.startswith("wgt51820_")),
        "counts": {k: v for k, v in counts.items() if k.startswith("wgt51820_")},
    }
    record_property("firewall_1000_rules", json.dumps(figures))
    print("firewall 1000 rules:", json.dumps(figures))
    assert applied - compiled < 30
