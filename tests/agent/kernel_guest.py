"""KernelEngine against the real ``wireguard`` module: run INSIDE the VM only.

Not collected on the host (the name does not match ``test_*.py``): these hosts have no
``wireguard`` module. ``tests/agent/test_engine_kernel_vm.py`` boots Debian's kernel
(``tongdao.testing.vm``) and runs this file there with pytest, under
``TONGDAO_TEST_REQUIRE_ALL=1``. The scenarios are the userspace engine's
(``engine_scenarios.py``: hosts, wires and bring-up) on the kernel engine, and
the gateway agent's ``Applier`` converging desired states onto it. ``wg show IF dump`` inside
the namespace is the independent witness. pytest runs it with ``--noconftest``: the
conftest's imports (the web app, the store) take over a minute under qemu tcg.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.engine_scenarios import bring_up, peer_row, two_hosts
from tongdao.agent.engine import EngineError, InterfaceNotFound, PeerConfig, generate_private_key
from tongdao.agent.gateway import Applier
from tongdao.agent.kernel import KernelEngine, KernelError, choose_engine, kernel_build
from tongdao.agent.state import StateDir
from tongdao.gateway.desired import DesiredState, Peer, PolicyRule, TenantInterface
from tongdao.testing import netns
from tongdao.testing.keys import keypair
from tongdao.testing.netns import Topology, add_address, add_route, ping, wg_dump

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _in_the_vm() -> None:
    if not Path("/sys/module/wireguard").is_dir():
        pytest.fail("the wireguard module is not loaded: this file runs inside the VM")


@pytest.fixture
def topo() -> Iterator[Topology]:
    with Topology() as topology:
        yield topology


@pytest.fixture
def engines() -> Iterator[list[KernelEngine]]:
    """Engines a test made, closed after it (before its namespaces go: request it after
    ``topo``). pyroute2's sockets must be closed by their owner, not by the collector."""
    made: list[KernelEngine] = []
    yield made
    for engine in made:
        engine.close()


class RecordingKernelEngine(KernelEngine):
    """The kernel engine, keeping every set payload it sends."""

    def __init__(self) -> None:
        super().__init__(timeout=30)
        self.sent: list[bytes] = []

    def _request(
        self, ifname: str, netns: str | None, operation: str, sets: list[bytes] | None
    ) -> list[memoryview]:
        if sets is not None:
            self.sent.extend(sets)
        return super()._request(ifname, netns, operation, sets)


def test_the_choice_and_the_build_in_a_kernel_with_the_module() -> None:
    engine = choose_engine("auto")
    assert isinstance(engine, KernelEngine)
    build = kernel_build()
    assert (
        build.engine == "kernel"
        and build.version == Path("/sys/module/wireguard/version").read_text().strip()
    )
    assert build.outdated is False
    assert engine.replaced(["wgt1"]) == []


def test_two_namespaces_pass_traffic_and_read_back_what_was_set(
    topo: Topology, engines: list[KernelEngine]
) -> None:
    engine = RecordingKernelEngine()
    engines.append(engine)
    a, b = two_hosts(topo)
    bring_up(engine, a, b)
    bring_up(engine, b, a)
    extra = keypair()[1]
    psk = base64.b64encode(os.urandom(32)).decode()
    engine.set_peers(
        a.ifname,
        [PeerConfig(extra, ("100.64.1.0/24", "fd00:1::/64"), "[fd00::9]:51999", 25, psk)],
    )
    engine.configure(a.ifname, fwmark=0x51820)

    assert ping(a.ns, b.v4) and ping(a.ns, b.v6) and ping(b.ns, a.v4)

    # the independent view agrees with what the engine set
    iface, peers = wg_dump(a.ns, a.ifname)
    assert iface == [a.private_key, a.public_key, str(a.port), hex(0x51820)]
    assert set(peers) == {b.public_key, extra}
    assert peers[b.public_key][1] == b.endpoint
    assert peers[b.public_key][2] == "100.64.0.2/32,fd00::2/128"
    assert peers[extra] == [
        psk,
        "[fd00::9]:51999",
        "100.64.1.0/24,fd00:1::/64",
        "0",
        "0",
        "0",
        "25",
    ]
    mtu = netns.run(["cat", f"/sys/class/net/{a.ifname}/mtu"], netns=a.ns).stdout.strip()
    assert mtu == "1420"  # the module's default, as wireguard-go's

    # ... and so does the engine's own read-back
    state = engine.get(a.ifname)
    assert state.public_key == a.public_key and state.has_private_key
    assert state.listen_port == a.port and state.fwmark == 0x51820
    seen = state.peers[b.public_key]
    assert seen.endpoint == b.endpoint and seen.keepalive is None
    assert seen.allowed_ips == ("100.64.0.2/32", "fd00::2/128")
    assert seen.last_handshake and abs(seen.last_handshake - time.time()) < 60
    assert seen.rx_bytes > 0 and seen.tx_bytes > 0
    other = state.peers[extra]
    assert other.allowed_ips == ("100.64.1.0/24", "fd00:1::/64")
    assert other.endpoint == "[fd00::9]:51999" and other.keepalive == 25
    assert other.has_preshared_key and not seen.has_preshared_key
    assert engine.get(b.ifname).fwmark is None


def test_set_peers_adds_changes_and_removes_one_peer_only(
    topo: Topology, engines: list[KernelEngine]
) -> None:
    engine = RecordingKernelEngine()
    engines.append(engine)
    a, b = two_hosts(topo)
    bring_up(engine, a, b)
    bring_up(engine, b, a)
    assert ping(a.ns, b.v4)
    before = peer_row(a, b.public_key)
    assert int(before[3]) > 0  # a handshake

    # add one peer: one peer on the wire, no replace-peers flag, the session untouched
    extra = keypair()[1]
    engine.sent.clear()
    engine.set_peers(a.ifname, [PeerConfig(extra, ("100.64.1.0/24",), new=True)])
    [payload] = engine.sent
    assert payload.count(base64.b64decode(extra)) == 1
    assert base64.b64decode(b.public_key) not in payload
    after = wg_dump(a.ns, a.ifname)[1]
    assert set(after) == {b.public_key, extra}
    assert after[b.public_key][:4] == before[:4]  # psk, endpoint, ips, handshake
    assert int(after[b.public_key][4]) >= int(before[4]) > 0  # counters kept

    # change its allowed IPs: replaced, not appended; the other peer again untouched
    engine.set_peers(a.ifname, [PeerConfig(extra, ("100.64.2.0/24", "fd00:2::/64"))])
    after = wg_dump(a.ns, a.ifname)[1]
    assert after[extra][2] == "100.64.2.0/24,fd00:2::/64"
    assert after[b.public_key][:4] == before[:4]

    # remove it (twice: removing an absent peer is a no-op)
    engine.set_peers(a.ifname, removals=[extra])
    engine.set_peers(a.ifname, removals=[extra])
    after = wg_dump(a.ns, a.ifname)[1]
    assert set(after) == {b.public_key}
    assert after[b.public_key][:4] == before[:4]
    assert ping(a.ns, b.v4, tries=1) and ping(b.ns, a.v6, tries=1)

    # a peer named twice, a bad key or prefix: refused before anything is sent
    engine.sent.clear()
    with pytest.raises(ValueError, match="twice"):
        engine.set_peers(a.ifname, [PeerConfig(extra, ())], removals=[extra])
    with pytest.raises(ValueError, match="base64"):
        engine.set_peers(a.ifname, [PeerConfig(keypair()[1], ()), PeerConfig("bad", ())])
    with pytest.raises(ValueError, match="CIDR"):
        engine.set_peers(a.ifname, [PeerConfig(keypair()[1], ("100.64.0.300/32",))])
    assert engine.sent == [] and set(wg_dump(a.ns, a.ifname)[1]) == {b.public_key}


def test_errors_adoption_and_delete(topo: Topology, engines: list[KernelEngine]) -> None:
    engine = KernelEngine(timeout=10)
    engines.append(engine)
    ns = topo.namespace()
    first, second = topo.wg_ifname(), topo.wg_ifname()
    assert engine.ensure_interface(first, netns=ns) is True
    assert engine.ensure_interface(second, netns=ns) is True
    engine.configure(first, listen_port=int(first[3:]))
    with pytest.raises(KernelError) as info:
        engine.configure(second, listen_port=int(first[3:]))  # same namespace, same port
    assert info.value.errno == 98
    with pytest.raises(InterfaceNotFound):
        engine.get("wgt1")
    with pytest.raises(InterfaceNotFound):
        engine.set_peers("wgt1", [PeerConfig(keypair()[1], ())])
    netns.run(["ip", "link", "add", "notwg0", "type", "dummy"], netns=ns)
    with pytest.raises(EngineError, match="dummy"):
        engine.ensure_interface("notwg0", netns=ns)

    # a new engine (the agent restarted) for the namespace adopts the links as they are
    key = generate_private_key()
    engine.configure(second, private_key=key)
    again = KernelEngine(ns)
    engines.append(again)
    assert set(again.list_interfaces()) == {first, second}
    assert again.ensure_interface(second, netns=ns) is False
    assert again.get(second).public_key == engine.get(second).public_key
    assert again.get(first).listen_port == int(first[3:])
    with KernelEngine() as host:
        assert host.list_interfaces() == []  # the host's namespace has none

    again.delete_interface(first)
    again.delete_interface(first)
    assert first not in netns.run(["ip", "-o", "link"], netns=ns).stdout
    assert again.list_interfaces() == [second]


def test_thousands_of_peers_in_one_set(topo: Topology, engines: list[KernelEngine]) -> None:
    engine = KernelEngine(timeout=120)
    engines.append(engine)
    ns = topo.namespace()
    ifname = topo.wg_ifname()
    engine.ensure_interface(ifname, netns=ns)
    engine.configure(ifname, private_key=generate_private_key())
    peers = [
        PeerConfig(
            base64.b64encode(os.urandom(32)).decode(),
            (f"100.64.{i // 256}.{i % 256}/32", f"fd00::{i:x}/128"),
            new=True,
        )
        for i in range(2_000)
    ]
    started = time.perf_counter()
    engine.set_peers(ifname, peers)
    assert time.perf_counter() - started < 60  # under tcg; a few seconds
    state = engine.get(ifname)  # a dump of several messages
    assert len(state.peers) == 2_000
    assert state.peers[peers[1_999].public_key].allowed_ips == ("100.64.7.207/32", "fd00::7cf/128")
    assert len(wg_dump(ns, ifname)[1]) == 2_000
    # One peer with more prefixes than one netlink attribute holds (a linked PoP carrying a
    # large tenant's routes): set in parts, it reads back whole.
    big = PeerConfig(
        keypair()[1], tuple(f"198.18.{i // 16}.{(i % 16) * 16}/28" for i in range(3_000))
    )
    engine.set_peers(ifname, [big])
    assert sorted(engine.get(ifname).peers[big.public_key].allowed_ips) == sorted(big.allowed_ips)


# --- the gateway agent's Applier on the kernel engine ----------------------------------------


def _tenant(port: int, devices: dict[str, str]) -> TenantInterface:
    return TenantInterface(
        tenant_id=uuid.UUID(int=port),
        ifname=f"wgt{port}",
        listen_port=port,
        table=port,
        address_v4="100.64.1.1/24",
        address_v6="fd00:a::1/64",
        pools=("100.64.1.0/24", "fd00:a::/64"),
        peers=tuple(
            Peer(public_key=key, kind="device", ref=str(uuid.uuid4()), allowed_ips=(address,))
            for key, address in sorted(devices.items())
        ),
        policy=(PolicyRule(src=("100.64.1.0/24",), dst=("100.64.1.0/24",)),),
    )


def _client(ns: str, ifname: str, private: str, pop_key: str, address: str) -> None:
    netns.run(["ip", "link", "add", ifname, "type", "wireguard"], netns=ns)
    netns.run(
        [
            *("wg", "set", ifname, "private-key", "/dev/stdin", "peer", pop_key),
            *("endpoint", "198.51.100.1:51820", "allowed-ips", "100.64.1.0/24"),
        ],
        netns=ns,
        input_text=private + "\n",
    )
    add_address(ns, ifname, f"{address}/32")
    netns.run(["ip", "link", "set", ifname, "up"], netns=ns)
    add_route(ns, "100.64.1.0/24", dev=ifname)


def test_the_applier_converges_desired_states_onto_the_kernel_engine(
    topo: Topology, engines: list[KernelEngine], tmp_path: Path
) -> None:
    pop, laptop, phone = topo.namespace(), topo.namespace(), topo.namespace()
    # the PoP's public address on its loopback, one wire per client, host routes both ways
    add_address(pop, "lo", "198.51.100.1/32")
    for ns, address in ((laptop, "198.51.100.2"), (phone, "198.51.100.3")):
        pop_end, far_end = topo.veth(pop, ns)
        add_address(ns, far_end, f"{address}/32")
        add_route(ns, "198.51.100.1/32", dev=far_end)
        add_route(pop, f"{address}/32", dev=pop_end)
    laptop_key, laptop_pub = keypair()
    phone_key, phone_pub = keypair()
    engine = KernelEngine(pop)
    engines.append(engine)
    applier = Applier(engine, StateDir(tmp_path / "state"), pop)

    applier.apply(
        DesiredState(
            version=1,
            pop_id=uuid.UUID(int=1),
            tenants=(_tenant(51820, {laptop_pub: "100.64.1.2/32"}),),
        ),
        reread=True,
    )
    state = engine.get("wgt51820")
    assert state.listen_port == 51820 and state.has_private_key
    assert {k: p.allowed_ips for k, p in state.peers.items()} == {laptop_pub: ("100.64.1.2/32",)}
    _client(laptop, "wgc0", laptop_key, state.public_key or "", "100.64.1.2")
    assert ping(laptop, "100.64.1.1")
    before = wg_dump(pop, "wgt51820")[1][laptop_pub]

    # a second device joins: only it is written; the laptop's session is untouched
    applier.apply(
        DesiredState(
            version=2,
            pop_id=uuid.UUID(int=1),
            tenants=(_tenant(51820, {laptop_pub: "100.64.1.2/32", phone_pub: "100.64.1.3/32"}),),
        )
    )
    _client(phone, "wgc1", phone_key, state.public_key or "", "100.64.1.3")
    assert ping(phone, "100.64.1.1") and ping(laptop, "100.64.1.1", tries=1)
    rows = wg_dump(pop, "wgt51820")[1]
    assert set(rows) == {laptop_pub, phone_pub}
    assert rows[laptop_pub][:4] == before[:4]

    # a restarted agent re-reads the kernel and finds nothing to change; then the laptop goes
    engines.append(KernelEngine(pop))
    again = Applier(engines[-1], StateDir(tmp_path / "state"), pop)
    again.apply(
        DesiredState(
            version=3,
            pop_id=uuid.UUID(int=1),
            tenants=(_tenant(51820, {phone_pub: "100.64.1.3/32"}),),
        ),
        reread=True,
    )
    rows = wg_dump(pop, "wgt51820")[1]
    assert set(rows) == {phone_pub}
    assert engine.get("wgt51820").public_key == state.public_key  # the tenant's key kept
    assert ping(phone, "100.64.1.1", tries=1) and not ping(laptop, "100.64.1.1", tries=1)

    # the tenant goes: its interface is deleted
    again.apply(DesiredState(version=4, pop_id=uuid.UUID(int=1), tenants=()))
    with KernelEngine(pop) as fresh:
        assert fresh.list_interfaces() == []
