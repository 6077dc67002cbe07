"""The engine without root: keys, the UAPI serializer and parser (against text recorded from
wireguard-go 0.0.20220316), FakeEngine's wireguard-go semantics, WireGuardGoEngine's socket
plumbing against a scripted UAPI server, and the wg-quick parsing of the reference client."""

from __future__ import annotations

import base64
import ipaddress
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tongdao.agent.engine import (
    DeviceState,
    Engine,
    EngineError,
    FakeEngine,
    InterfaceNotFound,
    PeerConfig,
    UapiError,
    WireGuardGoEngine,
    generate_private_key,
    key_from_hex,
    key_to_hex,
    normalize_allowed_ip,
    normalize_endpoint,
    parse_errno,
    parse_get,
    public_key_of,
    serialize_set,
)
from tongdao.gateway.desired import Peer
from tongdao.network.wgconfig import PeerSpec, render
from tongdao.testing.keys import keypair
from tongdao.testing.netns import check_test_network, parse_wg_quick, with_private_key

# RFC 7748, section 6.1 (Alice)
RFC_PRIVATE = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
RFC_PUBLIC = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"

# `get=1` answered by wireguard-go after
#   wg set IF private-key K listen-port 51999 fwmark 0x20
#     peer P1 allowed-ips 100.64.0.9/32,fd00::9/128,100.64.1.7/24 endpoint [fd00::5]:51820
#             persistent-keepalive 25 preshared-key PSK
#     peer P2 allowed-ips 198.18.0.0/16
RECORDED_GET = """\
private_key=40e41853914805c8f7295e1d3b52810c5bf0df4f47862bb0b3ccca0bbc865e49
listen_port=51999
fwmark=32
public_key=e15dac2c6ba10ed1984e9d98da4ca7f8c0e24349269298e067e549f7c19f8a08
preshared_key=37b835d21490d8635aec56829ed8e1545bb5ab7a2a2648afe93ac8f9d9ec6c60
protocol_version=1
endpoint=[fd00::5]:51820
last_handshake_time_sec=0
last_handshake_time_nsec=0
tx_bytes=0
rx_bytes=0
persistent_keepalive_interval=25
allowed_ip=100.64.0.9/32
allowed_ip=fd00::9/128
allowed_ip=100.64.1.0/24
public_key=19a170e7ac40a4055e2d33113a0198a98aacc2f1f96089f04445a65b88ae1407
preshared_key=0000000000000000000000000000000000000000000000000000000000000000
protocol_version=1
last_handshake_time_sec=0
last_handshake_time_nsec=0
tx_bytes=0
rx_bytes=0
persistent_keepalive_interval=0
allowed_ip=198.18.0.0/16
errno=0

"""
# what `wg show IF dump` printed for the same device
RECORDED_PUBLIC = "EDrodYCctEYYsDX/qNx8T9p/arZBa78DO9queOmKdgk="
RECORDED_P1 = "4V2sLGuhDtGYTp2Y2kyn+MDiQ0kmkpjgZ+VJ98Gfigg="
RECORDED_P2 = "GaFw56xApAVeLTMROgGYqYqswvH5YInwREWmW4iuFAc="

# a peer after traffic (wireguard-go, this repository's root test)
RECORDED_ACTIVE = """\
private_key=40e41853914805c8f7295e1d3b52810c5bf0df4f47862bb0b3ccca0bbc865e49
listen_port=40001
public_key=e15dac2c6ba10ed1984e9d98da4ca7f8c0e24349269298e067e549f7c19f8a08
preshared_key=0000000000000000000000000000000000000000000000000000000000000000
protocol_version=1
endpoint=198.51.100.2:40002
last_handshake_time_sec=1795473600
last_handshake_time_nsec=500000000
tx_bytes=1212
rx_bytes=1180
persistent_keepalive_interval=0
allowed_ip=100.64.0.2/32
errno=0

"""


def pub() -> str:
    return keypair()[1]


# --- keys ----------------------------------------------------------------------------------


def test_public_key_matches_rfc7748_vector() -> None:
    assert key_to_hex(public_key_of(key_from_hex(RFC_PRIVATE))) == RFC_PUBLIC


def test_generated_key_matches_the_keys_test_helper_format() -> None:
    private = generate_private_key()
    assert len(base64.b64decode(private)) == 32
    assert public_key_of(private) != public_key_of(generate_private_key())


def test_hex_and_base64_round_trip() -> None:
    key = pub()
    assert key_from_hex(key_to_hex(key)) == key
    assert key_to_hex(key) == key_to_hex(key).lower()


@pytest.mark.parametrize("bad", ["", "abc", "not base64!!", base64.b64encode(b"x" * 31).decode()])
def test_bad_base64_keys_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="key"):
        key_to_hex(bad)


@pytest.mark.parametrize("bad", ["zz" * 32, "00" * 31])
def test_bad_hex_keys_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="key"):
        key_from_hex(bad)


# --- serializer ----------------------------------------------------------------------------


def test_serialize_one_upsert_exactly() -> None:
    key, psk = pub(), pub()
    text = serialize_set(
        upserts=[
            PeerConfig(
                key,
                ("100.64.0.7/24", "fd00::7/128"),
                endpoint="198.51.100.2:51820",
                keepalive=25,
                preshared_key=psk,
            )
        ]
    ).decode()
    assert text == (
        "set=1\n"
        f"public_key={key_to_hex(key)}\n"
        f"preshared_key={key_to_hex(psk)}\n"
        "endpoint=198.51.100.2:51820\n"
        "persistent_keepalive_interval=25\n"
        "replace_allowed_ips=true\n"
        "allowed_ip=100.64.0.0/24\n"
        "allowed_ip=fd00::7/128\n"
        "\n"
    )


def test_serialize_device_keys_then_removals_then_upserts() -> None:
    private, gone, kept = generate_private_key(), pub(), pub()
    text = serialize_set(
        private_key=private,
        listen_port=51820,
        fwmark=0x20,
        upserts=[PeerConfig(kept, ("100.64.0.2/32",))],
        removals=[gone, gone],
    ).decode()
    assert text.splitlines() == [
        "set=1",
        f"private_key={key_to_hex(private)}",
        "listen_port=51820",
        "fwmark=32",
        f"public_key={key_to_hex(gone)}",
        "remove=true",
        f"public_key={key_to_hex(kept)}",
        "persistent_keepalive_interval=0",
        "replace_allowed_ips=true",
        "allowed_ip=100.64.0.2/32",
        "",  # the blank line that ends the request
    ]
    assert text.endswith("\n\n")


def test_a_new_peer_leaves_default_settings_unwritten() -> None:
    quiet, chatty = pub(), pub()
    text = serialize_set(
        upserts=[
            PeerConfig(quiet, ("100.64.0.2/32",), new=True),
            PeerConfig(chatty, ("100.64.0.3/32",), keepalive=25, new=True),
        ]
    ).decode()
    assert text.splitlines() == [
        "set=1",
        f"public_key={key_to_hex(quiet)}",
        "replace_allowed_ips=true",
        "allowed_ip=100.64.0.2/32",
        f"public_key={key_to_hex(chatty)}",
        "persistent_keepalive_interval=25",
        "replace_allowed_ips=true",
        "allowed_ip=100.64.0.3/32",
        "",
    ]


def test_a_change_never_rewrites_all_peers() -> None:
    text = serialize_set(upserts=[PeerConfig(pub(), ())], removals=[pub()]).decode()
    assert "replace_peers" not in text
    assert text.count("public_key=") == 2
    # no allowed IPs: replace_allowed_ips empties the list
    assert text.endswith("replace_allowed_ips=true\n\n")


def test_nothing_to_do_is_an_empty_set() -> None:
    assert serialize_set() == b"set=1\n\n"


def test_a_peer_named_twice_is_refused_before_anything_is_sent() -> None:
    key = pub()
    with pytest.raises(ValueError, match="twice"):
        serialize_set(upserts=[PeerConfig(key), PeerConfig(key)])
    with pytest.raises(ValueError, match="twice"):
        serialize_set(upserts=[PeerConfig(key)], removals=[key])


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("198.51.100.2:51820", "198.51.100.2:51820"),
        ("[fd00::0002]:1", "[fd00::2]:1"),
    ],
)
def test_endpoints_are_normalized(endpoint: str, expected: str) -> None:
    assert normalize_endpoint(endpoint) == expected


@pytest.mark.parametrize(
    "bad", ["gw.example.net:51820", "198.51.100.2", "fd00::2:51820", "198.51.100.2:70000", ":1"]
)
def test_bad_endpoints_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        serialize_set(upserts=[PeerConfig(pub(), endpoint=bad)])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"listen_port": 65536}, "listen port"),
        ({"fwmark": -1}, "fwmark"),
        ({"upserts": [PeerConfig(keypair()[1], ("100.64.0.300/32",))]}, "CIDR"),
        ({"upserts": [PeerConfig(keypair()[1], keepalive=70000)]}, "keepalive"),
    ],
)
def test_bad_values_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        serialize_set(**kwargs)  # type: ignore[arg-type]


def test_peer_config_from_the_desired_state_model() -> None:
    key = pub()
    peer = Peer(
        public_key=key,
        kind="device",
        ref=str(uuid.uuid4()),
        allowed_ips=("100.64.0.2/32",),
        endpoint="203.0.113.5:51820",
        keepalive=25,
    )
    assert PeerConfig.from_desired(peer) == PeerConfig(
        key, ("100.64.0.2/32",), "203.0.113.5:51820", 25
    )


# --- parser --------------------------------------------------------------------------------


def test_parse_recorded_get() -> None:
    state = parse_get("wgt51999", RECORDED_GET)
    assert state.has_private_key
    assert state.public_key == RECORDED_PUBLIC
    assert (state.listen_port, state.fwmark) == (51999, 32)
    assert list(state.peers) == [RECORDED_P1, RECORDED_P2]
    first, second = state.peers[RECORDED_P1], state.peers[RECORDED_P2]
    assert first.allowed_ips == ("100.64.0.9/32", "fd00::9/128", "100.64.1.0/24")
    assert first.endpoint == "[fd00::5]:51820"
    assert (first.keepalive, first.has_preshared_key, first.last_handshake) == (25, True, None)
    assert (second.endpoint, second.keepalive, second.has_preshared_key) == (None, None, False)
    assert "40e41853" not in repr(state)  # the private key is not kept


def test_parse_counters_and_handshake() -> None:
    peer = parse_get("wgt40001", RECORDED_ACTIVE).peers[RECORDED_P1]
    assert peer.last_handshake == pytest.approx(1795473600.5)
    assert (peer.rx_bytes, peer.tx_bytes) == (1180, 1212)


def test_parse_fresh_device() -> None:
    state = parse_get("wgt1", "listen_port=46417\nerrno=0\n\n")
    assert state == DeviceState("wgt1", False, None, 46417, None, {})


def test_parse_errno_becomes_a_typed_error() -> None:
    with pytest.raises(UapiError) as info:
        parse_get("wgt1", "errno=-22\n\n")
    assert info.value.errno == 22
    assert "Invalid argument" in str(info.value)
    assert parse_errno("errno=0\n\n") == 0
    with pytest.raises(EngineError, match="without errno"):
        parse_errno("listen_port=1\n\n")


def test_parse_malformed_line() -> None:
    with pytest.raises(EngineError, match="malformed"):
        parse_get("wgt1", "garbage\nerrno=0\n\n")


# --- FakeEngine ----------------------------------------------------------------------------


@pytest.fixture
def fake() -> FakeEngine:
    engine = FakeEngine()
    assert engine.ensure_interface("wgt51820") is True
    return engine


def test_fake_satisfies_the_protocol() -> None:
    engines: list[Engine] = [FakeEngine(), WireGuardGoEngine()]
    assert len(engines) == 2


def test_fake_ensure_is_idempotent_and_lists(fake: FakeEngine) -> None:
    assert fake.ensure_interface("wgt51820") is False
    fake.ensure_interface("wgt51821", netns="td-x")
    assert fake.list_interfaces() == ["wgt51820", "wgt51821"]
    fake.delete_interface("wgt51821")
    fake.delete_interface("wgt51821")
    assert fake.list_interfaces() == ["wgt51820"]
    with pytest.raises(InterfaceNotFound):
        fake.get("wgt51821")
    with pytest.raises(ValueError, match="interface name"):
        fake.ensure_interface("a" * 16)


def test_fake_configure(fake: FakeEngine) -> None:
    private = generate_private_key()
    fake.configure("wgt51820", private_key=private, listen_port=51820, fwmark=7)
    state = fake.get("wgt51820")
    assert (state.has_private_key, state.public_key) == (True, public_key_of(private))
    assert (state.listen_port, state.fwmark) == (51820, 7)


def test_fake_port_in_use_is_eaddrinuse(fake: FakeEngine) -> None:
    fake.configure("wgt51820", listen_port=51820)
    fake.ensure_interface("wgt51821")
    with pytest.raises(UapiError) as info:
        fake.configure("wgt51821", listen_port=51820)
    assert info.value.errno == 98
    fake.ensure_interface("wgt51822", netns="td-other")  # another namespace: free
    fake.configure("wgt51822", listen_port=51820)


def test_fake_upsert_replace_and_remove(fake: FakeEngine) -> None:
    a, b = pub(), pub()
    fake.set_peers(
        "wgt51820",
        [
            PeerConfig(a, ("100.64.0.2/32",), endpoint="198.51.100.2:1", keepalive=25),
            PeerConfig(b, ("100.64.0.3/32",)),
        ],
    )
    fake.set_peers("wgt51820", [PeerConfig(a, ("100.64.0.20/32", "fd00::20/128"))])
    peers = fake.get("wgt51820").peers
    assert peers[a].allowed_ips == ("100.64.0.20/32", "fd00::20/128")
    assert peers[a].endpoint == "198.51.100.2:1"  # None leaves the endpoint
    assert peers[a].keepalive is None
    assert peers[b].allowed_ips == ("100.64.0.3/32",)
    fake.set_peers("wgt51820", removals=[b, pub()])  # an unknown peer is a no-op
    assert list(fake.get("wgt51820").peers) == [a]


def test_fake_sends_only_the_changed_peer(fake: FakeEngine) -> None:
    keys = [pub() for _ in range(50)]
    fake.set_peers("wgt51820", [PeerConfig(k, (f"100.64.0.{i}/32",)) for i, k in enumerate(keys)])
    fake.requests.clear()
    fake.set_peers("wgt51820", [PeerConfig(keys[7], ("100.64.1.7/32",))])
    fake.set_peers("wgt51820")  # nothing: no request at all
    [(ifname, payload)] = fake.requests
    assert ifname == "wgt51820"
    assert payload.count(b"public_key=") == 1
    assert b"replace_peers" not in payload
    assert len(fake.get("wgt51820").peers) == 50


def test_fake_allowed_ip_moves_to_the_last_peer_that_claims_it(fake: FakeEngine) -> None:
    a, b = pub(), pub()
    fake.set_peers("wgt51820", [PeerConfig(a, ("100.64.0.0/24", "100.64.1.0/24"))])
    fake.set_peers("wgt51820", [PeerConfig(b, ("100.64.1.5/24",))])
    peers = fake.get("wgt51820").peers
    assert peers[a].allowed_ips == ("100.64.0.0/24",)
    assert peers[b].allowed_ips == ("100.64.1.0/24",)


def test_fake_ignores_a_peer_with_the_device_own_key(fake: FakeEngine) -> None:
    private = generate_private_key()
    fake.configure("wgt51820", private_key=private)
    fake.set_peers("wgt51820", [PeerConfig(public_key_of(private), ("100.64.0.1/32",))])
    assert fake.get("wgt51820").peers == {}


def test_fake_applies_lines_up_to_the_first_bad_one(fake: FakeEngine) -> None:
    a = pub()
    payload = f"set=1\npublic_key={key_to_hex(a)}\nallowed_ip=100.64.0.2/32\nbogus=1\n\n"
    assert fake._handle("wgt51820", payload.encode()) == "errno=-22\n\n"
    assert fake.get("wgt51820").peers[a].allowed_ips == ("100.64.0.2/32",)
    assert fake._handle("wgt51820", b"nonsense\n\n") == "errno=-22\n\n"


def test_fake_get_round_trips_through_the_parser(fake: FakeEngine) -> None:
    a, psk = pub(), pub()
    fake.set_peers(
        "wgt51820",
        [PeerConfig(a, ("fd00::2/128",), "[fd00::9]:51820", keepalive=5, preshared_key=psk)],
    )
    peer = fake.get("wgt51820").peers[a]
    assert (peer.endpoint, peer.keepalive, peer.has_preshared_key) == ("[fd00::9]:51820", 5, True)
    assert (peer.rx_bytes, peer.tx_bytes, peer.last_handshake) == (0, 0, None)


# --- WireGuardGoEngine against a scripted UAPI server ---------------------------------------


Reply = Callable[[bytes], bytes | None]


@pytest.fixture
def uapi(tmp_path: Path) -> Iterator[Callable[[str, Reply], None]]:
    """Serve ``<tmp>/<ifname>.sock`` with a scripted reply per request (one thread each)."""
    threads: list[threading.Thread] = []
    listeners: list[socket.socket] = []
    stop = threading.Event()

    def serve(ifname: str, reply: Reply) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(tmp_path / f"{ifname}.sock"))
        listener.listen(8)
        listener.settimeout(0.05)
        listeners.append(listener)

        def loop() -> None:
            while not stop.is_set():
                try:
                    conn, _ = listener.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(5)
                    data = b""
                    try:
                        while not data.endswith(b"\n\n"):
                            chunk = conn.recv(65536)
                            if not chunk:
                                break
                            data += chunk
                        answer = reply(data)
                        if answer is None:
                            conn.recv(1)  # hold the connection until the client gives up
                        else:
                            conn.sendall(answer)
                    except OSError:
                        pass

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        threads.append(thread)

    yield serve
    stop.set()
    for thread in threads:
        thread.join(timeout=10)
    for listener in listeners:
        listener.close()


def test_engine_get_and_set_over_a_socket(
    tmp_path: Path, uapi: Callable[[str, Reply], None]
) -> None:
    seen: list[bytes] = []

    def reply(data: bytes) -> bytes:
        seen.append(data)
        return RECORDED_GET.encode() if data == b"get=1\n\n" else b"errno=0\n\n"

    uapi("wgt51999", reply)
    engine = WireGuardGoEngine(socket_dir=tmp_path, timeout=3)
    assert engine.get("wgt51999").public_key == RECORDED_PUBLIC
    key = pub()
    engine.set_peers("wgt51999", [PeerConfig(key, ("100.64.0.2/32",))])
    engine.set_peers("wgt51999")  # nothing to send
    engine.configure("wgt51999", listen_port=51999)
    assert seen[1] == serialize_set(upserts=[PeerConfig(key, ("100.64.0.2/32",))])
    assert seen[2] == b"set=1\nlisten_port=51999\n\n"
    assert len(seen) == 3


def test_engine_translates_errno(tmp_path: Path, uapi: Callable[[str, Reply], None]) -> None:
    uapi("wgt1", lambda data: b"errno=-98\n\n")
    engine = WireGuardGoEngine(socket_dir=tmp_path, timeout=3)
    with pytest.raises(UapiError) as info:
        engine.configure("wgt1", listen_port=1)
    assert (info.value.errno, info.value.ifname) == (98, "wgt1")


def test_engine_times_out(tmp_path: Path, uapi: Callable[[str, Reply], None]) -> None:
    uapi("wgt2", lambda data: None)
    engine = WireGuardGoEngine(socket_dir=tmp_path, timeout=0.3)
    with pytest.raises(EngineError, match="timed out"):
        engine.get("wgt2")


def test_engine_reports_a_truncated_response(
    tmp_path: Path, uapi: Callable[[str, Reply], None]
) -> None:
    uapi("wgt3", lambda data: b"listen_port=1\n")
    engine = WireGuardGoEngine(socket_dir=tmp_path, timeout=3)
    with pytest.raises(EngineError, match="mid-response"):
        engine.get("wgt3")


def test_engine_missing_and_stale_sockets(
    tmp_path: Path, uapi: Callable[[str, Reply], None]
) -> None:
    uapi("wgt4", lambda data: b"errno=0\n\n")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "wgt5.sock"))  # bound, never listening: refused
    try:
        engine = WireGuardGoEngine(socket_dir=tmp_path, timeout=1)
        assert engine.list_interfaces() == ["wgt4"]
        assert engine.is_alive("wgt4") and not engine.is_alive("wgt5")
        with pytest.raises(InterfaceNotFound):
            engine.get("wgt5")
        with pytest.raises(InterfaceNotFound):
            engine.get("wgt6")
    finally:
        stale.close()


# --- reference client parsing, test address guard -------------------------------------------


def device_config(endpoint_host: str = "198.51.100.1", port: int = 51820) -> str:
    return render(
        device_name="laptop",
        device_id="d-1",
        tenant_name="ACME # Beijing",
        ipv4="100.64.0.2",
        ipv6="fd00::2",
        dns=["100.64.0.1"],
        routable=["100.64.0.0/24", "fd00::/64"],
        peers=[
            PeerSpec(
                "bj-1", "CN-Beijing", RECORDED_P1, endpoint_host, port, "100.64.0.1", "fd00::1"
            )
        ],
    )


def test_parse_wg_quick_like_wg_quick_strip() -> None:
    config = parse_wg_quick(device_config() + "MTU = 1380\nPostUp = echo hi\n")
    assert config.addresses == ("100.64.0.2/32", "fd00::2/128")
    assert config.dns == ("100.64.0.1",)
    assert config.mtu is None  # MTU after [Peer] is not an [Interface] key: kept for wg
    assert config.allowed_ips == ("100.64.0.0/24", "fd00::/64")
    assert "Address" not in config.setconf and "DNS" not in config.setconf
    assert "MTU = 1380" in config.setconf
    assert "# PrivateKey = <this device's private key>" in config.setconf
    mtu = parse_wg_quick("[Interface]\nMTU = 1380 # small\nListenPort = 1\n")
    assert (mtu.mtu, mtu.setconf) == (1380, "[Interface]\nListenPort = 1\n")


def test_with_private_key() -> None:
    text = with_private_key(parse_wg_quick(device_config()).setconf, "KEY=")
    assert "[Interface]\nPrivateKey = KEY=\n" in text
    with pytest.raises(ValueError, match="already"):
        with_private_key(text, "KEY=")
    with pytest.raises(ValueError, match="Interface"):
        with_private_key("[Peer]\n", "KEY=")


@pytest.mark.parametrize(
    "cidr", ["192.0.2.1/24", "198.51.100.0/24", "203.0.113.9", "198.19.0.0/16", "fd00::1/64"]
)
def test_test_networks_accepted(cidr: str) -> None:
    assert check_test_network(cidr) == cidr


@pytest.mark.parametrize(
    "cidr", ["10.0.0.1/8", "172.16.0.1/12", "192.168.1.1/24", "8.8.8.8", "2001:db8::1", "0.0.0.0/0"]
)
def test_other_networks_refused(cidr: str) -> None:
    with pytest.raises(ValueError, match="outside"):
        check_test_network(cidr)


@settings(max_examples=500, derandomize=True)
@given(
    st.one_of(
        st.ip_addresses(v=4).flatmap(lambda a: st.tuples(st.just(a), st.integers(0, 32))),
        st.ip_addresses(v=6).flatmap(lambda a: st.tuples(st.just(a), st.integers(0, 128))),
    ),
    st.booleans(),
)
def test_allowed_ip_fast_path_agrees_with_ipaddress(
    address_and_length: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int], exploded: bool
) -> None:
    """The inet_pton fast path must give exactly what ``ipaddress`` gives, for canonical and
    non-canonical spellings alike (host bits set, exploded IPv6, mapped IPv4)."""
    address, length = address_and_length
    text = address.exploded if exploded else str(address)
    cidr = f"{text}/{length}"
    expected = str(ipaddress.ip_network(cidr, strict=False))
    assert normalize_allowed_ip(cidr) == expected
    assert normalize_allowed_ip(expected) == expected


@pytest.mark.parametrize("bad", ["100.64.0.1", "100.64.0.0/33", "fd00::/129", "x/8", "/8", ""])
def test_allowed_ip_refusals(bad: str) -> None:
    if bad == "100.64.0.1":  # a bare address is a host route, as for ip_network
        assert normalize_allowed_ip(bad) == "100.64.0.1/32"
        return
    with pytest.raises(ValueError, match="not a CIDR"):
        normalize_allowed_ip(bad)
