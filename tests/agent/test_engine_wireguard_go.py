"""WireGuardGoEngine against real wireguard-go daemons in test namespaces (root).

Two hosts joined by a veth (198.51.100.1/24 ↔ 198.51.100.2/24), one wireguard-go interface
each, configured only through the engine; overlay 100.64.0.1/32 ↔ 100.64.0.2/32 and
fd00::1 ↔ fd00::2. ``wg show IF dump`` inside the namespace is the independent witness.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.engine_scenarios import bring_up, peer_row, two_hosts
from tests.conftest import need
from tongdao.agent.engine import (
    SOCKET_DIR,
    EngineError,
    PeerConfig,
    UapiError,
    WireGuardGoEngine,
    generate_private_key,
    public_key_of,
    wireguard_go_pids,
)
from tongdao.network.wgconfig import PeerSpec, render
from tongdao.testing import netns
from tongdao.testing.keys import keypair
from tongdao.testing.netns import Topology, add_address, add_route, leftovers, ping, wg_dump

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _prerequisites() -> None:
    if os.geteuid() != 0:
        need("root")
    for tool in ("wireguard-go", "wg", "ip", "ping"):
        if shutil.which(tool) is None:
            need(tool)
    if not Path("/dev/net/tun").exists():
        need("/dev/net/tun")


@pytest.fixture
def topo() -> Iterator[Topology]:
    with Topology() as topology:
        yield topology


class RecordingEngine(WireGuardGoEngine):
    """The real engine, keeping every UAPI request it writes."""

    def __init__(self) -> None:
        super().__init__(timeout=30)
        self.sent: list[bytes] = []

    def _request(self, ifname: str, payload: bytes) -> str:
        self.sent.append(payload)
        return super()._request(ifname, payload)


def test_tunnel_configured_only_through_the_engine() -> None:
    engine = RecordingEngine()
    with Topology() as topo:
        a, b = two_hosts(topo)
        bring_up(engine, a, b)
        bring_up(engine, b, a)
        extra = keypair()[1]
        engine.set_peers(a.ifname, [PeerConfig(extra, ("100.64.1.0/24", "fd00:1::/64"))])

        assert ping(a.ns, b.v4) and ping(a.ns, b.v6) and ping(b.ns, a.v4)

        # the independent view agrees with what the engine set
        iface, peers = wg_dump(a.ns, a.ifname)
        assert iface[:3] == [a.private_key, a.public_key, str(a.port)]
        assert set(peers) == {b.public_key, extra}
        assert peers[b.public_key][1] == b.endpoint
        assert peers[b.public_key][2] == "100.64.0.2/32,fd00::2/128"
        assert peers[extra][2] == "100.64.1.0/24,fd00:1::/64"

        # counters and handshake through get()
        state = engine.get(a.ifname)
        assert state.public_key == a.public_key and state.listen_port == a.port
        seen = state.peers[b.public_key]
        assert seen.last_handshake and abs(seen.last_handshake - time.time()) < 60
        assert seen.rx_bytes > 0 and seen.tx_bytes > 0
        assert seen.allowed_ips == ("100.64.0.2/32", "fd00::2/128")

        # one peer's allowed IPs change: one peer on the wire, the other peer untouched
        before = peer_row(a, b.public_key)
        engine.sent.clear()
        engine.set_peers(a.ifname, [PeerConfig(extra, ("100.64.2.0/24",))])
        [payload] = engine.sent
        assert payload.count(b"public_key=") == 1 and b"replace_peers" not in payload
        after_peers = wg_dump(a.ns, a.ifname)[1]
        assert after_peers[extra][2] == "100.64.2.0/24"
        assert after_peers[b.public_key][:4] == before[:4]  # psk, endpoint, ips, handshake
        assert int(after_peers[b.public_key][4]) >= int(before[4]) > 0  # session kept

        # remove a peer
        engine.set_peers(a.ifname, removals=[extra])
        assert set(wg_dump(a.ns, a.ifname)[1]) == {b.public_key}
        assert ping(a.ns, b.v4, tries=1)

        # the agent's objects go away; a new engine adopts the running interfaces
        pids = {h.ifname: wireguard_go_pids(h.ifname) for h in (a, b)}
        del engine
        again = WireGuardGoEngine()
        assert sorted(set(again.list_interfaces()) & {a.ifname, b.ifname}) == sorted(
            [a.ifname, b.ifname]
        )
        assert again.ensure_interface(a.ifname, netns=a.ns) is False
        assert again.ensure_interface(b.ifname, netns=b.ns) is False
        assert {h.ifname: wireguard_go_pids(h.ifname) for h in (a, b)} == pids
        assert again.get(a.ifname).public_key == a.public_key
        assert ping(a.ns, b.v6, tries=1) and ping(b.ns, a.v4, tries=1)

        names, interfaces = [a.ns, b.ns], [a.ifname, b.ifname]
        assert len(leftovers(names, interfaces)) == 2 * 1 + 2 * 2
    assert leftovers(names, interfaces) == []


def test_daemons_outlive_a_killed_agent(topo: Topology) -> None:
    a, b = two_hosts(topo)
    bring_up(WireGuardGoEngine(), a, b)
    agent = textwrap.dedent(
        f"""
        import time
        from tongdao.agent.engine import PeerConfig, WireGuardGoEngine
        engine = WireGuardGoEngine()
        assert engine.ensure_interface({b.ifname!r}, netns={b.ns!r})
        engine.configure({b.ifname!r}, private_key={b.private_key!r}, listen_port={b.port})
        engine.set_peers({b.ifname!r}, [PeerConfig({a.public_key!r}, {a.overlay()!r})])
        print("ready", flush=True)
        time.sleep(60)
        """
    )
    with subprocess.Popen([sys.executable, "-c", agent], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "ready"
            [daemon] = wireguard_go_pids(b.ifname)
            assert os.getsid(daemon) not in {os.getsid(0), os.getsid(proc.pid)}
            assert (
                int(Path(f"/proc/{daemon}/stat").read_text().rpartition(")")[2].split()[1])
                != proc.pid
            )
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
    for cidr in b.overlay():
        add_address(b.ns, b.ifname, cidr)
    for cidr in a.overlay():
        add_route(b.ns, cidr, dev=b.ifname)
    # fail-static: the agent is dead, the tunnel still forwards
    assert wireguard_go_pids(b.ifname) == [daemon]
    assert ping(a.ns, b.v4) and ping(b.ns, a.v6)


def test_errno_delete_and_stale_socket(topo: Topology) -> None:
    engine = WireGuardGoEngine(timeout=10)
    ns = topo.namespace()
    first, second = topo.wg_ifname(), topo.wg_ifname()
    engine.ensure_interface(first, netns=ns)
    engine.ensure_interface(second, netns=ns)
    engine.configure(first, listen_port=int(first[3:]))
    with pytest.raises(UapiError) as info:
        engine.configure(second, listen_port=int(first[3:]))  # same namespace, same port
    assert info.value.errno == 98

    with pytest.raises(EngineError, match="link set up"):
        WireGuardGoEngine().ensure_interface(first, netns=topo.namespace())  # wrong namespace

    engine.delete_interface(first)
    engine.delete_interface(first)
    assert not wireguard_go_pids(first) and not (SOCKET_DIR / f"{first}.sock").exists()
    assert first not in netns.run(["ip", "-o", "link"], netns=ns).stdout
    assert first not in engine.list_interfaces() and second in engine.list_interfaces()

    # a daemon killed hard leaves a stale socket: not listed, replaced on ensure
    [pid] = wireguard_go_pids(second)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while (wireguard_go_pids(second) or engine.is_alive(second)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (SOCKET_DIR / f"{second}.sock").exists()
    assert second not in engine.list_interfaces()
    assert engine.ensure_interface(second, netns=ns) is True
    assert engine.get(second).peers == {}


def test_ten_thousand_peers_in_one_set(topo: Topology) -> None:
    engine = WireGuardGoEngine(timeout=60)
    ns = topo.namespace()
    ifname = topo.wg_ifname()
    engine.ensure_interface(ifname, netns=ns)
    engine.configure(ifname, private_key=generate_private_key())
    peers = [
        PeerConfig(base64.b64encode(os.urandom(32)).decode(), (f"100.64.{i // 256}.{i % 256}/32",))
        for i in range(10_000)
    ]
    started = time.perf_counter()
    engine.set_peers(ifname, peers)
    elapsed = time.perf_counter() - started
    assert elapsed < 30
    state = engine.get(ifname)
    assert len(state.peers) == 10_000
    assert state.peers[peers[9_999].public_key].allowed_ips == ("100.64.39.15/32",)
    assert len(wg_dump(ns, ifname)[1]) == 10_000


def test_reference_client_from_an_exported_device_config(topo: Topology) -> None:
    gateway_ns, client_ns = topo.namespace(), topo.namespace()
    veth_g, veth_c = topo.veth(gateway_ns, client_ns)
    add_address(gateway_ns, veth_g, "203.0.113.1/24")
    add_address(client_ns, veth_c, "203.0.113.2/24")
    gateway_if, client_if = topo.wg_ifname(), topo.wg_ifname()
    gateway_key = generate_private_key()
    client_private, client_public = keypair()

    engine = WireGuardGoEngine()
    engine.ensure_interface(gateway_if, netns=gateway_ns)
    engine.configure(gateway_if, private_key=gateway_key, listen_port=int(gateway_if[3:]))
    engine.set_peers(gateway_if, [PeerConfig(client_public, ("100.64.0.2/32", "fd00::2/128"))])
    add_address(gateway_ns, gateway_if, "100.64.0.1/24")
    add_address(gateway_ns, gateway_if, "fd00::1/64")

    exported = render(
        device_name="laptop",
        device_id="d-1",
        tenant_name="ACME",
        ipv4="100.64.0.2",
        ipv6="fd00::2",
        dns=["100.64.0.1"],
        routable=["100.64.0.0/24", "fd00::/64"],
        peers=[
            PeerSpec(
                "bj-1",
                "CN-Beijing",
                public_key_of(gateway_key),
                "203.0.113.1",
                int(gateway_if[3:]),
                "100.64.0.1",
                "fd00::1",
            )
        ],
    )
    config = netns.bring_up_client(client_ns, client_if, exported, client_private)
    assert config.addresses == ("100.64.0.2/32", "fd00::2/128")
    assert ping(client_ns, "100.64.0.1") and ping(client_ns, "fd00::1")
    seen = engine.get(gateway_if).peers[client_public]
    assert (seen.endpoint or "").startswith("203.0.113.2:") and seen.rx_bytes > 0


def test_strip_matches_wg_quick(tmp_path: Path) -> None:
    if shutil.which("wg-quick") is None:
        need("wg-quick")
    text = render(
        device_name="laptop",
        device_id="d-1",
        tenant_name="ACME",
        ipv4="100.64.0.2",
        ipv6="fd00::2",
        dns=["100.64.0.1", "fd00::1"],
        routable=["100.64.0.0/24"],
        peers=[PeerSpec("bj-1", "CN", keypair()[1], "203.0.113.1", 51820, "100.64.0.1", "fd00::1")],
    ).replace("[Interface]\n", "[Interface]\nMTU = 1380\nTable = off\nPostUp = true # x\n")
    path = tmp_path / "wgt51820.conf"
    path.write_text(text)
    path.chmod(0o600)
    done = netns.run(["wg-quick", "strip", str(path)])
    # wg-quick echoes its buffer, which adds one newline
    assert netns.parse_wg_quick(text).setconf + "\n" == done.stdout


def test_a_daemon_whose_binary_was_replaced_is_found(topo: Topology, tmp_path: Path) -> None:
    """A package upgrade replaces /usr/bin/wireguard-go under running daemons: they keep the
    old build. The engine names the interfaces whose daemon runs a file no longer on disk."""
    installed = shutil.which("wireguard-go")
    assert installed is not None
    copy = tmp_path / "wireguard-go"
    shutil.copy2(os.path.realpath(installed), copy)
    ns = topo.namespace()
    old, current = topo.wg_ifname(), topo.wg_ifname()
    WireGuardGoEngine(binary=str(copy), timeout=10).ensure_interface(old, netns=ns)
    engine = WireGuardGoEngine(timeout=10)
    engine.ensure_interface(current, netns=ns)
    assert engine.replaced([old, current]) == []
    copy.unlink()  # what dpkg does to the old file when it installs the new one
    assert engine.replaced([old, current]) == [old]
    assert engine.replaced(["wgt1"]) == []  # no daemon at all: nothing to say
