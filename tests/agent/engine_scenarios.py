"""Engine test scenarios shared by the userspace engine's tests (test_engine_wireguard_go.py)
and the kernel engine's, which run inside a VM (kernel_guest.py): two hosts joined by a veth
(198.51.100.1/24 ↔ 198.51.100.2/24), one WireGuard interface each, configured only through
the engine under test; overlay 100.64.0.1/32 ↔ 100.64.0.2/32 and fd00::1 ↔ fd00::2.

No pytest fixtures and no import of ``tests.conftest`` here: the VM imports this module, and
the conftest's imports (the web app, the store) alone take over a minute under qemu tcg."""

from __future__ import annotations

from dataclasses import dataclass

from tongdao.agent.engine import Engine, PeerConfig, generate_private_key, public_key_of
from tongdao.testing.netns import Topology, add_address, add_route, wg_dump


@dataclass
class Host:
    ns: str
    ifname: str
    private_key: str
    port: int
    underlay: str
    v4: str
    v6: str

    @property
    def public_key(self) -> str:
        return public_key_of(self.private_key)

    @property
    def endpoint(self) -> str:
        return f"{self.underlay}:{self.port}"

    def overlay(self) -> tuple[str, str]:
        return f"{self.v4}/32", f"{self.v6}/128"


def two_hosts(topo: Topology) -> tuple[Host, Host]:
    ns_a, ns_b = topo.namespace(), topo.namespace()
    veth_a, veth_b = topo.veth(ns_a, ns_b)
    add_address(ns_a, veth_a, "198.51.100.1/24")
    add_address(ns_b, veth_b, "198.51.100.2/24")
    a_if, b_if = topo.wg_ifname(), topo.wg_ifname()
    a = Host(
        ns_a, a_if, generate_private_key(), int(a_if[3:]), "198.51.100.1", "100.64.0.1", "fd00::1"
    )
    b = Host(
        ns_b, b_if, generate_private_key(), int(b_if[3:]), "198.51.100.2", "100.64.0.2", "fd00::2"
    )
    return a, b


def bring_up(engine: Engine, host: Host, other: Host) -> None:
    """Interface and peer through the engine; addresses and routes as the agent's router would."""
    assert engine.ensure_interface(host.ifname, netns=host.ns) is True
    engine.configure(host.ifname, private_key=host.private_key, listen_port=host.port)
    engine.set_peers(
        host.ifname, [PeerConfig(other.public_key, other.overlay(), endpoint=other.endpoint)]
    )
    for cidr in host.overlay():
        add_address(host.ns, host.ifname, cidr)
    for cidr in other.overlay():
        add_route(host.ns, cidr, dev=host.ifname)


def peer_row(host: Host, key: str) -> list[str]:
    return wg_dump(host.ns, host.ifname)[1][key]
