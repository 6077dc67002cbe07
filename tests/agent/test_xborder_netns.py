"""Cross-border byte counters on a real kernel (namespaces this test builds): a peer's bytes to
and from what lives behind a cross-border link peer are counted, nothing else is, and a
re-apply (a peer added, the agent restarted) keeps every counter's value.

    ns A 100.64.0.2 ─┐                       ┌─ ns B 198.18.7.10 (behind the link peer)
                     └── bridge "wgt51820" ──┘   in the PoP namespace, which routes between
                         100.64.0.1, 198.18.7.1   the two (enters and leaves the same interface,
                                                  like the hairpin through a WireGuard one)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import need
from tongdao.agent import xborder
from tongdao.gateway.desired import Peer, TenantInterface
from tongdao.testing import netns
from tongdao.testing.keys import public_key

pytestmark = pytest.mark.root

IFNAME = "wgt51820"
DEVICE_KEY, OTHER_KEY, LINK_KEY = public_key(), public_key(), public_key()


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=20)


@pytest.fixture
def lab() -> Iterator[tuple[str, str, str]]:
    if os.geteuid() != 0:
        need("root")
    if shutil.which("nft") is None:
        need("nft")
    with netns.Topology() as topo:
        pop, a, b = topo.namespace(), topo.namespace(), topo.namespace()
        sh("ip", "-n", pop, "link", "add", IFNAME, "type", "bridge")
        for ns, address, gateway in (
            (a, "100.64.0.2/24", "100.64.0.1"),
            (b, "198.18.7.10/24", "198.18.7.1"),
        ):
            inner, outer = topo.veth(ns, pop)
            sh("ip", "-n", pop, "link", "set", outer, "master", IFNAME, "up")
            netns.add_address(ns, inner, address)
            sh("ip", "-n", ns, "route", "add", "default", "via", gateway)
        netns.add_address(pop, IFNAME, "100.64.0.1/24")
        netns.add_address(pop, IFNAME, "198.18.7.1/24")
        sh("ip", "-n", pop, "link", "set", IFNAME, "up")
        netns.set_forwarding(pop)
        yield pop, a, b


def tenant(*extra: Peer) -> TenantInterface:
    peers = (
        Peer(
            public_key=DEVICE_KEY,
            kind="device",
            ref=str(uuid.UUID(int=2)),
            allowed_ips=("100.64.0.2/32",),
        ),
        Peer(
            public_key=LINK_KEY,
            kind="pop",
            ref=str(uuid.UUID(int=9)),
            allowed_ips=("198.18.7.0/24",),
            cross_border=True,
        ),
        *extra,
    )
    return TenantInterface(
        tenant_id=uuid.UUID(int=1),
        ifname=IFNAME,
        listen_port=51820,
        table=51820,
        address_v4="100.64.0.1/24",
        address_v6="fd00:1::1/64",
        pools=("100.64.0.0/24", "fd00:1::/48"),
        peers=peers,
    )


def test_counts_what_crosses_and_keeps_counts_across_applies(lab: tuple[str, str, str]) -> None:
    pop, a, _b = lab
    xborder.apply_counters([tenant()], pop)
    assert xborder.read_counters(pop) == {(IFNAME, DEVICE_KEY): (0, 0)}
    # Not cross-border: the PoP's own address (input, not forwarded) counts nothing.
    assert netns.ping(a, "100.64.0.1")
    assert xborder.read_counters(pop)[(IFNAME, DEVICE_KEY)] == (0, 0)
    # 5 pings of 1,000 bytes to the host behind the link: 5 × 1,028 bytes each way.
    sh(
        "ip",
        "netns",
        "exec",
        a,
        "ping",
        "-c",
        "5",
        "-i",
        "0.2",
        "-s",
        "1000",
        "-W",
        "2",
        "198.18.7.10",
    )
    counted = xborder.read_counters(pop)[(IFNAME, DEVICE_KEY)]
    assert counted == (5 * 1028, 5 * 1028)
    # Another peer arrives, the agent restarts (a new process applies the same state): the
    # device's counter keeps its value.
    other = Peer(
        public_key=OTHER_KEY,
        kind="device",
        ref=str(uuid.UUID(int=3)),
        allowed_ips=("100.64.0.3/32",),
    )
    xborder.apply_counters([tenant(other)], pop)
    xborder.apply_counters([tenant(other)], pop)
    assert xborder.read_counters(pop) == {
        (IFNAME, DEVICE_KEY): counted,
        (IFNAME, OTHER_KEY): (0, 0),
    }
    # Without a cross-border peer there is nothing to count: the counters go.
    no_link = tenant().model_copy(update={"peers": tenant().peers[:1]})
    xborder.apply_counters([no_link], pop)
    assert xborder.read_counters(pop) == {}
    xborder.remove_counters(pop)
