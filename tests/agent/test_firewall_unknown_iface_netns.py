"""A ``wgt…`` interface the firewall does not know forwards nothing, on a real kernel.

The agent creates a tenant interface and sets its peers while (or before) the table learns
about it, and deletes one only after the table has forgotten it. In between, the interface is
in neither ``@dispatch`` nor ``@ifaces``; these tests show that the forward chain drops what
enters or leaves it anyway, while other forwarding on the host goes on.

Topology (namespaces ``td-…-pop``, ``-t``, ``-u``, ``-v``; all deleted at teardown, even on
failure)::

    td-…-t ── eth0 ══ wgt59999 ┐             (a veth named like a tenant interface; the table
     100.64.9.2, fd00:9::2     │              knows only wgt51820, which does not exist here)
                              pop ── up0 ══ eth0 ── td-…-u   203.0.113.2, fd00:cb::2
                               └──── up1 ══ eth0 ── td-…-v   198.51.100.2
"""

from __future__ import annotations

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

import pytest

from tests.conftest import need
from tongdao.agent import firewall as fw
from tongdao.gateway.desired import PolicyRule, TenantInterface

pytestmark = pytest.mark.root

UNKNOWN = "wgt59999"
PROBE_PORT = 9999
PROBES = 3

HOSTS = {
    # name: (pop end, pop addresses, host addresses)
    "t": (UNKNOWN, ("100.64.9.1/24", "fd00:9::1/64"), ("100.64.9.2/24", "fd00:9::2/64")),
    "u": ("up0", ("203.0.113.1/24", "fd00:cb::1/64"), ("203.0.113.2/24", "fd00:cb::2/64")),
    "v": ("up1", ("198.51.100.1/24",), ("198.51.100.2/24",)),
}

SEND_SCRIPT = """
import socket, sys
host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
with socket.socket(family, socket.SOCK_DGRAM) as s:
    for _ in range(count):
        s.sendto(b"probe", (host, port))
"""

# In each host: count the probes that arrive (by source family), nothing else.
PROBE_TABLE = {
    "nftables": [
        {"add": {"table": {"family": "inet", "name": "probe"}}},
        {
            "add": {
                "chain": {
                    "family": "inet",
                    "table": "probe",
                    "name": "input",
                    "type": "filter",
                    "hook": "input",
                    "prio": 0,
                    "policy": "accept",
                }
            }
        },
        *(
            {
                "add": {
                    "rule": {
                        "family": "inet",
                        "table": "probe",
                        "chain": "input",
                        "expr": [
                            {
                                "match": {
                                    "op": "==",
                                    "left": {"meta": {"key": "nfproto"}},
                                    "right": f,
                                }
                            },
                            {
                                "match": {
                                    "op": "==",
                                    "left": {"payload": {"protocol": "udp", "field": "dport"}},
                                    "right": PROBE_PORT,
                                }
                            },
                            {"counter": {"packets": 0, "bytes": 0}},
                        ],
                    }
                }
            }
            for f in ("ipv4", "ipv6")
        ),
    ]
}


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def ns_sh(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *argv, check=check)


def addr(host: str, version: int) -> str:
    for cidr in HOSTS[host][2]:
        if (":" in cidr) == (version == 6):
            return cidr.split("/")[0]
    raise AssertionError(f"{host} has no IPv{version} address")


@dataclass
class Net:
    prefix: str

    def ns(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    @property
    def pop(self) -> str:
        return self.ns("pop")

    def ping(self, src: str, dst: str) -> bool:
        done = ns_sh(self.ns(src), "ping", "-n", "-q", "-c", "1", "-W", "1", dst, check=False)
        return done.returncode == 0

    def received(self, host: str) -> dict[int, int]:
        """Probes counted in ``host`` so far, by IP version."""
        listed = json.loads(
            ns_sh(self.ns(host), "nft", "-j", "list", "table", "inet", "probe").stdout
        )
        counts: dict[int, int] = {}
        for item in listed["nftables"]:
            rule = item.get("rule")
            if rule is None:
                continue
            family = next(e["match"]["right"] for e in rule["expr"] if "match" in e)
            packets = next(e["counter"]["packets"] for e in rule["expr"] if "counter" in e)
            counts[4 if family == "ipv4" else 6] = packets
        return counts

    def send(self, src: str, dst: str, version: int) -> None:
        """``PROBES`` UDP probes from ``src`` to ``dst``, then a round trip from the PoP itself
        to ``dst``'s side (not forwarded, so the table does not filter it) as a barrier: what
        the PoP forwarded before it has been delivered when it comes back."""
        target = addr(dst, version)
        ns_sh(self.ns(src), sys.executable, "-c", SEND_SCRIPT, target, str(PROBE_PORT), str(PROBES))
        assert self.ping("pop", target)


def _build(net: Net) -> None:
    for name in ("pop", *HOSTS):
        sh("ip", "netns", "add", net.ns(name))
        ns_sh(net.ns(name), "ip", "link", "set", "lo", "up")
    for key in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"):
        ns_sh(net.pop, "sysctl", "-q", "-w", key)
    for host, (pop_end, pop_addrs, host_addrs) in HOSTS.items():
        ns = net.ns(host)
        sh(
            "ip", "link", "add", pop_end, "netns", net.pop,
            "type", "veth", "peer", "name", "eth0", "netns", ns,
        )  # fmt: skip
        for side, ifname, addrs in ((net.pop, pop_end, pop_addrs), (ns, "eth0", host_addrs)):
            for cidr in addrs:
                family = "-6" if ":" in cidr else "-4"
                extra = ("nodad",) if family == "-6" else ()
                ns_sh(side, "ip", family, "addr", "add", cidr, "dev", ifname, *extra)
            ns_sh(side, "ip", "link", "set", ifname, "up")
        for cidr in pop_addrs:
            family = "-6" if ":" in cidr else "-4"
            gateway = cidr.split("/")[0]
            ns_sh(ns, "ip", family, "route", "add", "default", "via", gateway)
    for host in HOSTS:
        done = subprocess.run(
            ["ip", "netns", "exec", net.ns(host), "nft", "-j", "-f", "-"],
            input=json.dumps(PROBE_TABLE),
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
    # neighbour discovery and ARP settle before the first probe; this is also the control:
    # without our table, the PoP forwards between all of them
    for src, dst in (("t", "u"), ("u", "t"), ("v", "u")):
        for version in (4, 6) if src != "v" else (4,):
            for _ in range(20):
                if net.ping(src, addr(dst, version)):
                    break
                time.sleep(0.25)
            else:
                pytest.fail(f"topology never converged: {src} -> {dst} (IPv{version})")


@pytest.fixture
def net() -> Iterator[Net]:
    if os.geteuid() != 0:
        need("root (network namespaces)")
    for tool in ("ip", "nft", "ping"):
        if shutil.which(tool) is None:
            need(tool)
    topology = Net(prefix=f"td-{secrets.token_hex(3)}")
    try:
        _build(topology)
        yield topology
    finally:
        for name in ("pop", *HOSTS):
            sh("ip", "netns", "del", topology.ns(name), check=False)


def known_tenant() -> TenantInterface:
    """A tenant the table knows, whose interface is not the one in the topology."""
    return TenantInterface(
        tenant_id=uuid.UUID(int=51820),
        ifname="wgt51820",
        listen_port=51820,
        table=51820,
        address_v4="100.64.9.1/24",
        address_v6="fd00:9::1/64",
        pools=("100.64.9.0/24", "fd00:9::/64"),
        policy=(PolicyRule(src=("0.0.0.0/0", "::/0"), dst=("0.0.0.0/0", "::/0")),),
    )


def test_without_our_table_the_unknown_interface_forwards(net: Net) -> None:
    """The control: the probes arrive both ways, so the zeros below are the firewall's."""
    for version in (4, 6):
        net.send("t", "u", version)
        net.send("u", "t", version)
    assert net.received("u") == {4: PROBES, 6: PROBES}
    assert net.received("t") == {4: PROBES, 6: PROBES}


@pytest.mark.parametrize("tenants", ["none", "another"])
def test_unknown_tenant_interface_forwards_nothing(net: Net, tenants: str) -> None:
    fw.apply_ruleset(
        fw.compile_ruleset([known_tenant()] if tenants == "another" else []), netns=net.pop
    )
    for version in (4, 6):
        net.send("t", "u", version)  # out of the unknown wgt… interface, to the uplink
        net.send("u", "t", version)  # from the uplink, into it
    # (out of it, into it) by IP version
    assert (net.received("u"), net.received("t")) == ({4: 0, 6: 0}, {4: 0, 6: 0})
    assert not net.ping("t", addr("u", 4))
    # host forwarding between interfaces that are not tenants' is not affected
    net.send("v", "u", 4)
    assert net.received("u") == {4: PROBES, 6: 0}
    assert net.ping("v", addr("u", 4))
