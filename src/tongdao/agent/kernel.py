"""The kernel WireGuard engine: the ``wireguard`` module driven over netlink.

Same behaviour as :class:`~tongdao.agent.engine.WireGuardGoEngine` behind the same ``Engine``
protocol: interfaces are kernel ``wireguard`` links (pyroute2's ``IPRoute``: add, set up,
list, delete, in the agent's namespace), configured and read back through WireGuard's
generic netlink family (include/uapi/linux/wireguard.h). ``set_peers`` names only the peers
it changes (upserts with ``WGPEER_F_REPLACE_ALLOWEDIPS``, removals with
``WGPEER_F_REMOVE_ME``, never ``WGDEVICE_F_REPLACE_PEERS``), so the others keep their
sessions and counters. Many peers go in one message (about :data:`CHUNK_BYTES` each), so a
full sync of 10,000 peers is a few dozen round trips, as ``wg setconf`` does it.

Interfaces live in network namespaces (``netns``): names are per namespace here (unlike
wireguard-go's host-wide UAPI sockets), so the engine remembers where each interface was
ensured and looks in its own ``netns`` (the agent's) for any other. Fail-static is the
kernel's: a link outlives the agent that made it; ``replaced`` has nothing to report (no
daemon runs an old binary). The MTU is the module's default (1420, as wireguard-go's).

Everything is validated in Python before the first message is sent, as the UAPI engine does.
"""

from __future__ import annotations

import base64
import binascii
import errno as errnos
import os
import platform
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from pyroute2 import IPRoute
from pyroute2.netlink import NETLINK_GENERIC
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic.wireguard import (
    WG_CMD_GET_DEVICE,
    WG_CMD_SET_DEVICE,
    WG_GENL_VERSION,
    WGDEVICE_A_FWMARK,
    WGDEVICE_A_IFNAME,
    WGDEVICE_A_LISTEN_PORT,
    WGDEVICE_A_PEERS,
    WGDEVICE_A_PRIVATE_KEY,
    WGPEER_F_REMOVE_ME,
    WGPEER_F_REPLACE_ALLOWEDIPS,
)
from pyroute2.netns import create_socket

from tongdao.agent.engine import (
    DEFAULT_TIMEOUT,
    DeviceState,
    Engine,
    EngineBuild,
    EngineError,
    InterfaceNotFound,
    PeerConfig,
    PeerState,
    WireGuardGoEngine,
    check_ifname,
    key_to_hex,
    normalize_allowed_ip,
    normalize_endpoint,
    public_key_of,
)

MODULE_DIR: Final = Path("/sys/module/wireguard")
ENGINES: Final = ("auto", "kernel", "wireguard-go")
"""The values of ``--engine`` / ``TONGDAO_ENGINE``."""
CHUNK_BYTES: Final = 48 * 1024
# A peer's allowed IPs per peer attribute (netlink attribute lengths are 16-bit): a peer with
# more (a linked PoP carrying a large tenant's routes) goes on in further attributes naming the
# same key without WGPEER_F_REPLACE_ALLOWEDIPS, which add to what the first part set, as wg(8)
# does.
ALLOWED_IPS_BYTES: Final = 32 * 1024
"""Peers per set message, by their encoded size: well under a netlink socket's default send
buffer (212,992 bytes), which is the kernel's limit on one message."""


class KernelError(EngineError):
    """The kernel answered a netlink request with an error."""

    def __init__(self, ifname: str, operation: str, errno: int) -> None:
        self.ifname = ifname
        self.operation = operation
        self.errno = abs(errno)
        super().__init__(
            f"{ifname}: netlink {operation} failed: errno={self.errno} "
            f"({os.strerror(self.errno) if self.errno else 'unknown'})"
        )


# --- WireGuard's generic netlink, encoded here ------------------------------------------------
# pyroute2's ``WireGuard.set`` takes one peer per message, and its ``wgmsg`` encodes and decodes
# attribute by attribute in Python objects: in the VM test (qemu tcg) a set of 10,000 peers
# took 87 s and reading them back 66 s through it. The format is small
# (include/uapi/linux/wireguard.h), so the messages are packed and parsed here with ``struct``;
# the socket is opened by pyroute2 (in the interface's namespace) and the command and
# attribute numbers are pyroute2's.

NLM_F_REQUEST: Final = 0x1
NLM_F_ACK: Final = 0x4
NLM_F_DUMP: Final = 0x300
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLA_F_NESTED: Final = 0x8000
NLA_TYPE_MASK: Final = 0x3FFF
GENL_ID_CTRL: Final = 0x10
CTRL_CMD_GETFAMILY: Final = 3
CTRL_ATTR_FAMILY_ID: Final = 1
CTRL_ATTR_FAMILY_NAME: Final = 2
# peer attributes (WGPEER_A_*) and allowed-IP attributes (WGALLOWEDIP_A_*)
P_PUBLIC_KEY, P_PRESHARED_KEY, P_FLAGS, P_ENDPOINT, P_KEEPALIVE = 1, 2, 3, 4, 5
P_HANDSHAKE, P_RX_BYTES, P_TX_BYTES, P_ALLOWEDIPS = 6, 7, 8, 9
IP_FAMILY, IP_ADDR, IP_CIDR = 1, 2, 3
_ZERO_KEY: Final = bytes(32)
_U16 = struct.Struct("=H")
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")
_HDR = struct.Struct("=IHHII")
_GENL = struct.Struct("=BBH")
_NLA = struct.Struct("=HH")


def _nla(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return _NLA.pack(size, kind) + payload + b"\0" * (-size % 4)


def _nest(kind: int, parts: Iterable[bytes]) -> bytes:
    return _nla(kind | NLA_F_NESTED, b"".join(parts))


def _attrs(data: memoryview) -> Iterator[tuple[int, memoryview]]:
    offset = 0
    while offset + 4 <= len(data):
        size, kind = _NLA.unpack_from(data, offset)
        if size < 4:
            break
        yield kind & NLA_TYPE_MASK, data[offset + 4 : offset + size]
        offset += (size + 3) & ~3


def _sockaddr(endpoint: str) -> bytes:
    host, _, port = normalize_endpoint(endpoint).rpartition(":")
    if host.startswith("["):
        packed = socket.inet_pton(socket.AF_INET6, host[1:-1])
        head = _U16.pack(socket.AF_INET6) + struct.pack(">HI", int(port), 0)
        return head + packed + bytes(4)
    packed = socket.inet_pton(socket.AF_INET, host)
    return _U16.pack(socket.AF_INET) + struct.pack(">H", int(port)) + packed + bytes(8)


def _endpoint(data: memoryview) -> str | None:
    family = _U16.unpack_from(data, 0)[0]
    port = struct.unpack_from(">H", data, 2)[0]
    if family == socket.AF_INET and len(data) >= 8:
        return f"{socket.inet_ntop(socket.AF_INET, bytes(data[4:8]))}:{port}"
    if family == socket.AF_INET6 and len(data) >= 24:
        return f"[{socket.inet_ntop(socket.AF_INET6, bytes(data[8:24]))}]:{port}"
    return None


# The constant parts of a peer's attributes, packed once: a full sync packs tens of thousands.
_KEY_HEAD: Final = _NLA.pack(36, P_PUBLIC_KEY)
_PSK_HEAD: Final = _NLA.pack(36, P_PRESHARED_KEY)
_V4_HEAD: Final = (
    _NLA.pack(28, NLA_F_NESTED) + _nla(IP_FAMILY, _U16.pack(socket.AF_INET)) + _NLA.pack(8, IP_ADDR)
)
_V6_HEAD: Final = (
    _NLA.pack(40, NLA_F_NESTED)
    + _nla(IP_FAMILY, _U16.pack(socket.AF_INET6))
    + _NLA.pack(20, IP_ADDR)
)
_CIDR: Final = tuple(_nla(IP_CIDR, bytes((n,))) for n in range(129))


def _allowed_ip(cidr: str) -> bytes:
    address, _, length = normalize_allowed_ip(cidr).partition("/")
    if ":" in address:
        return _V6_HEAD + socket.inet_pton(socket.AF_INET6, address) + _CIDR[int(length)]
    return _V4_HEAD + socket.inet_pton(socket.AF_INET, address) + _CIDR[int(length)]


def _raw(key_b64: str) -> bytes:
    """A base64 key's 32 bytes; ``ValueError`` (the UAPI engine's words) otherwise."""
    try:
        raw = binascii.a2b_base64(key_b64, strict_mode=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        key_to_hex(key_b64)  # raises with the reason
        raise ValueError(f"not a WireGuard key: {key_b64!r}")
    return raw


def _peer_chunks(upserts: Iterable[PeerConfig], removals: Iterable[str]) -> list[bytes]:
    """The peers as encoded peer attributes, removals first, in chunks of at most about
    :data:`CHUNK_BYTES`; raises ``ValueError`` (a bad key, endpoint or prefix, a peer named
    twice) before anything is sent."""
    peers: list[bytes] = []
    removed: set[bytes] = set()
    remove_flag = _nla(P_FLAGS, _U32.pack(WGPEER_F_REMOVE_ME))
    for key in removals:
        raw = _raw(key)
        if raw in removed:
            continue
        removed.add(raw)
        peers.append(_nest(0, (_nla(P_PUBLIC_KEY, raw), remove_flag)))
    seen: set[bytes] = set()
    replace_flag = _nla(P_FLAGS, _U32.pack(WGPEER_F_REPLACE_ALLOWEDIPS))
    keepalive_off = _nla(P_KEEPALIVE, _U16.pack(0))
    for peer in upserts:
        raw = _raw(peer.public_key)
        if raw in removed or raw in seen:
            raise ValueError(f"peer {peer.public_key} named twice in one change")
        seen.add(raw)
        parts = [_KEY_HEAD, raw]
        if peer.preshared_key is not None:
            parts += (_PSK_HEAD, _raw(peer.preshared_key))
        if peer.endpoint is not None:
            parts.append(_nla(P_ENDPOINT, _sockaddr(peer.endpoint)))
        if peer.keepalive:
            if not 0 <= peer.keepalive <= 65535:
                raise ValueError(f"keepalive out of range: {peer.keepalive}")
            parts.append(_nla(P_KEEPALIVE, _U16.pack(peer.keepalive)))
        elif not peer.new:
            parts.append(keepalive_off)
        groups: list[bytes] = []
        group: list[bytes] = []
        size = 0
        for cidr in peer.allowed_ips:
            entry = _allowed_ip(cidr)
            if group and size + len(entry) > ALLOWED_IPS_BYTES:
                groups.append(b"".join(group))
                group, size = [], 0
            group.append(entry)
            size += len(entry)
        groups.append(b"".join(group))
        for n, ips in enumerate(groups):
            nest = (_NLA.pack(4 + len(ips), P_ALLOWEDIPS | NLA_F_NESTED), ips)
            body = b"".join((*parts, replace_flag, *nest) if n == 0 else (_KEY_HEAD, raw, *nest))
            peers.append(_NLA.pack(4 + len(body), NLA_F_NESTED) + body)
    chunks: list[bytes] = []
    current: list[bytes] = []
    filled = 0
    for encoded in peers:
        if current and filled + len(encoded) > CHUNK_BYTES:
            chunks.append(b"".join(current))
            current, filled = [], 0
        current.append(encoded)
        filled += len(encoded)
    if current:
        chunks.append(b"".join(current))
    return chunks


class _Genl:
    """One generic netlink socket, opened in a namespace, knowing the ``wireguard`` family."""

    def __init__(self, netns: str | None, timeout: float) -> None:
        # flags=0: never create the namespace (pyroute2's default is O_CREAT)
        self.sock = create_socket(
            netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC, flags=0
        )
        try:
            self.sock.settimeout(timeout)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.bind((0, 0))
            self.seq = 0
            self.family = GENL_ID_CTRL
            name = _nla(CTRL_ATTR_FAMILY_NAME, b"wireguard\0")
            for reply in self.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, name, dump=False):
                for kind, value in _attrs(reply):
                    if kind == CTRL_ATTR_FAMILY_ID:
                        self.family = _U16.unpack_from(value)[0]
            if self.family == GENL_ID_CTRL:
                raise OSError(errnos.ENOENT, "no wireguard generic netlink family")
        except BaseException:
            self.sock.close()
            raise

    def close(self) -> None:
        self.sock.close()

    def __del__(self) -> None:
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close()

    def request(self, family: int, cmd: int, payload: bytes, *, dump: bool) -> list[memoryview]:
        """Send one request and collect the payloads (after the genl header) of its answers.
        Raises ``OSError`` with the kernel's errno."""
        self.seq += 1
        flags = NLM_F_REQUEST | (NLM_F_DUMP if dump else NLM_F_ACK)
        size = _HDR.size + _GENL.size + len(payload)
        header = _HDR.pack(size, family, flags, self.seq, 0)
        self.sock.sendall(header + _GENL.pack(cmd, WG_GENL_VERSION, 0) + payload)
        out: list[memoryview] = []
        while True:
            data = memoryview(self.sock.recv(1 << 20))
            offset = 0
            while offset + _HDR.size <= len(data):
                length, kind, _flags, seq, _pid = _HDR.unpack_from(data, offset)
                if length < _HDR.size:
                    raise OSError(errnos.EPROTO, "short netlink message")
                body = data[offset + _HDR.size : offset + length]
                offset += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if kind in (NLMSG_ERROR, NLMSG_DONE):
                    code = struct.unpack_from("=i", body)[0] if len(body) >= 4 else 0
                    if code:
                        raise OSError(-code, os.strerror(-code))
                    if kind == NLMSG_DONE or not dump:
                        return out
                else:
                    out.append(body[_GENL.size :])

    def set_device(self, payload: bytes) -> None:
        self.request(self.family, WG_CMD_SET_DEVICE, payload, dump=False)

    def get_device(self, ifname: str) -> list[memoryview]:
        name = _nla(WGDEVICE_A_IFNAME, ifname.encode() + b"\0")
        return self.request(self.family, WG_CMD_GET_DEVICE, name, dump=True)


def _device_state(ifname: str, replies: Iterable[memoryview]) -> DeviceState:
    """A get dump: one or more messages; a peer whose allowed IPs did not fit continues in the
    next message under its public key again."""
    has_private = False
    public: str | None = None
    listen_port: int | None = None
    fwmark: int | None = None
    peers: dict[bytes, PeerState] = {}
    allowed: dict[bytes, list[str]] = {}
    for reply in replies:
        for kind, value in _attrs(reply):
            if kind == WGDEVICE_A_PRIVATE_KEY:
                has_private = bytes(value) != _ZERO_KEY
                public = public_key_of(base64.b64encode(value).decode()) if has_private else None
            elif kind == WGDEVICE_A_LISTEN_PORT:
                listen_port = _U16.unpack_from(value)[0] or None
            elif kind == WGDEVICE_A_FWMARK:
                fwmark = _U32.unpack_from(value)[0] or None
            elif kind == WGDEVICE_A_PEERS:
                for _, peer in _attrs(value):
                    _peer_state(peer, peers, allowed)
    return DeviceState(
        ifname,
        has_private,
        public,
        listen_port,
        fwmark,
        {
            state.public_key: state._replace(allowed_ips=tuple(allowed[raw]))
            for raw, state in peers.items()
        },
    )


def _peer_state(
    data: memoryview, peers: dict[bytes, PeerState], allowed: dict[bytes, list[str]]
) -> None:
    raw = b""
    endpoint: str | None = None
    handshake: float | None = None
    rx = tx = keepalive = 0
    psk = False
    ips: list[str] = []
    for kind, value in _attrs(data):
        if kind == P_PUBLIC_KEY:
            raw = bytes(value)
        elif kind == P_PRESHARED_KEY:
            psk = bytes(value) != _ZERO_KEY
        elif kind == P_ENDPOINT:
            endpoint = _endpoint(value)
        elif kind == P_KEEPALIVE:
            keepalive = _U16.unpack_from(value)[0]
        elif kind == P_HANDSHAKE:
            seconds, nanos = struct.unpack_from("=qq", value)
            handshake = (seconds + nanos / 1e9) or None
        elif kind == P_RX_BYTES:
            rx = _U64.unpack_from(value)[0]
        elif kind == P_TX_BYTES:
            tx = _U64.unpack_from(value)[0]
        elif kind == P_ALLOWEDIPS:
            for _, item in _attrs(value):
                family = length = 0
                address = b""
                for sub, part in _attrs(item):
                    if sub == IP_FAMILY:
                        family = _U16.unpack_from(part)[0]
                    elif sub == IP_ADDR:
                        address = bytes(part)
                    elif sub == IP_CIDR:
                        length = part[0]
                if family:
                    ips.append(f"{socket.inet_ntop(family, address)}/{length}")
    allowed.setdefault(raw, []).extend(ips)
    if raw in peers:
        return  # a continuation: only more allowed IPs
    peers[raw] = PeerState(
        public_key=base64.b64encode(raw).decode(),
        allowed_ips=(),
        endpoint=endpoint,
        last_handshake=handshake,
        rx_bytes=rx,
        tx_bytes=tx,
        keepalive=keepalive or None,
        has_preshared_key=psk,
    )


class KernelEngine:
    """The ``wireguard`` kernel module over netlink (pyroute2). ``netns``: the namespace the
    agent manages, where interfaces not ensured by this object are looked for."""

    def __init__(self, netns: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.netns = netns
        self.timeout = timeout
        self._where: dict[str, str | None] = {}
        self._wg: dict[str | None, _Genl] = {}
        self._ip: dict[str | None, IPRoute] = {}
        self._lock = threading.RLock()

    # sockets, one of each kind per namespace, opened on first use

    def _ns(self, ifname: str) -> str | None:
        return self._where.get(check_ifname(ifname), self.netns)

    def _open(self, kind: Callable[..., Any], netns: str | None) -> Any:
        try:
            if netns is None:
                return kind()
            # flags=0: never create the namespace (pyroute2's default is O_CREAT)
            return kind(netns=netns, flags=0)
        except (OSError, NetlinkError) as exc:
            where = netns or "the host"
            raise EngineError(f"cannot open a netlink socket in {where}: {exc}") from exc

    @contextmanager
    def _iproute(self, netns: str | None) -> Iterator[Any]:
        with self._lock:
            if netns not in self._ip:
                self._ip[netns] = self._open(IPRoute, netns)
            yield self._ip[netns]

    @contextmanager
    def _genl(self, netns: str | None) -> Iterator[_Genl]:
        with self._lock:
            if netns not in self._wg:
                try:
                    self._wg[netns] = _Genl(netns, self.timeout)
                except OSError as exc:
                    where = netns or "the host"
                    raise EngineError(
                        f"cannot open WireGuard's netlink family in {where}: {exc}"
                    ) from exc
            yield self._wg[netns]

    def close(self) -> None:
        """Close the netlink sockets (the links stay; a later call opens new sockets)."""
        with self._lock:
            for sock in [*self._wg.values(), *self._ip.values()]:
                sock.close()
            self._wg.clear()
            self._ip.clear()

    def __enter__(self) -> KernelEngine:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # the engine's build

    def build(self) -> EngineBuild:
        return kernel_build()

    def replaced(self, ifnames: Iterable[str]) -> list[str]:
        return []  # no daemon, no binary to be replaced under it

    # lifecycle

    def _link(self, ipr: Any, ifname: str) -> Any | None:
        try:
            links = ipr.link("get", ifname=ifname)
        except NetlinkError as exc:
            if exc.code == errnos.ENODEV:
                return None
            raise
        return links[0] if links else None

    def ensure_interface(self, ifname: str, netns: str | None = None) -> bool:
        check_ifname(ifname)
        try:
            with self._iproute(netns) as ipr:
                created = False
                link = self._link(ipr, ifname)
                if link is None:
                    ipr.link("add", ifname=ifname, kind="wireguard")
                    link = self._link(ipr, ifname)
                    created = True
                if link is None:
                    raise EngineError(f"{ifname}: created, then not found")
                kind = link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")
                if kind != "wireguard":
                    raise EngineError(f"{ifname}: a {kind or 'non-WireGuard'} link has the name")
                ipr.link("set", index=link["index"], state="up")
        except NetlinkError as exc:
            raise KernelError(ifname, "link add", exc.code) from exc
        self._where[ifname] = netns
        return created

    def delete_interface(self, ifname: str) -> None:
        netns = self._ns(ifname)
        try:
            with self._iproute(netns) as ipr:
                link = self._link(ipr, ifname)
                if link is not None:
                    ipr.link("del", index=link["index"])
        except NetlinkError as exc:
            if exc.code != errnos.ENODEV:
                raise KernelError(ifname, "link del", exc.code) from exc
        self._where.pop(ifname, None)

    def list_interfaces(self) -> list[str]:
        names: set[str] = set()
        for netns in {self.netns, *self._where.values()}:
            try:
                with self._iproute(netns) as ipr:
                    for link in ipr.get_links():
                        if link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") == "wireguard":
                            name = link.get_attr("IFLA_IFNAME")
                            if self._where.get(name, self.netns) == netns:
                                names.add(name)
            except NetlinkError as exc:
                raise EngineError(f"cannot list links in {netns or 'the host'}: {exc}") from exc
        return sorted(names)

    # configuration

    def get(self, ifname: str) -> DeviceState:
        netns = self._ns(ifname)
        return _device_state(ifname, self._request(ifname, netns, "get", None))

    def configure(
        self,
        ifname: str,
        *,
        private_key: str | None = None,
        listen_port: int | None = None,
        fwmark: int | None = None,
    ) -> None:
        parts = [_nla(WGDEVICE_A_IFNAME, check_ifname(ifname).encode() + b"\0")]
        if private_key is not None:
            parts.append(_nla(WGDEVICE_A_PRIVATE_KEY, _raw(private_key)))
        if listen_port is not None:
            if not 0 <= listen_port <= 65535:
                raise ValueError(f"listen port out of range: {listen_port}")
            parts.append(_nla(WGDEVICE_A_LISTEN_PORT, _U16.pack(listen_port)))
        if fwmark is not None:
            if not 0 <= fwmark <= 0xFFFFFFFF:
                raise ValueError(f"fwmark out of range: {fwmark}")
            parts.append(_nla(WGDEVICE_A_FWMARK, _U32.pack(fwmark)))
        self._request(ifname, self._ns(ifname), "set (device)", [b"".join(parts)])

    def set_peers(
        self, ifname: str, upserts: Iterable[PeerConfig] = (), removals: Iterable[str] = ()
    ) -> None:
        name = _nla(WGDEVICE_A_IFNAME, check_ifname(ifname).encode() + b"\0")
        payloads = [
            name + _nla(WGDEVICE_A_PEERS | NLA_F_NESTED, chunk)
            for chunk in _peer_chunks(upserts, removals)
        ]
        if payloads:
            self._request(ifname, self._ns(ifname), "set (peers)", payloads)

    def _request(
        self, ifname: str, netns: str | None, operation: str, sets: list[bytes] | None
    ) -> list[memoryview]:
        """``sets``: set payloads, sent in order; ``None``: a get."""
        try:
            with self._genl(netns) as genl:
                if sets is None:
                    return genl.get_device(ifname)
                for payload in sets:
                    genl.set_device(payload)
                return []
        except TimeoutError as exc:
            raise EngineError(
                f"{ifname}: netlink {operation} timed out ({self.timeout} s)"
            ) from exc
        except OSError as exc:
            if exc.errno in {errnos.ENODEV, errnos.ENOENT}:
                raise InterfaceNotFound(
                    f"{ifname}: no WireGuard link in {netns or 'the host'}"
                ) from exc
            raise KernelError(ifname, operation, exc.errno or 0) from exc


# --- the module and the choice ---------------------------------------------------------------


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def kernel_build(module_dir: Path = MODULE_DIR) -> EngineBuild:
    """The loaded module's version (``/sys/module/wireguard/version``), else ``modinfo``'s."""
    where = f"wireguard module, Linux {platform.release()}"
    version = _read(module_dir / "version")
    if version is not None:
        return EngineBuild("kernel", where, version, str(module_dir / "version"))
    if shutil.which("modinfo") is not None:
        try:
            done = subprocess.run(
                ["modinfo", "-F", "version", "wireguard"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            done = None
        if done is not None and done.returncode == 0 and done.stdout.strip():
            return EngineBuild("kernel", where, done.stdout.strip(), "modinfo")
    return EngineBuild("kernel", where, None, "")


def kernel_module_available(module_dir: Path = MODULE_DIR) -> bool:
    """The ``wireguard`` module is loaded, or ``modprobe`` loads it now."""
    if module_dir.is_dir():
        return True
    if shutil.which("modprobe") is None:
        return False
    try:
        done = subprocess.run(
            ["modprobe", "-q", "wireguard"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and module_dir.is_dir()


def choose_engine(
    choice: str = "auto",
    netns: str | None = None,
    *,
    probe: Callable[[], bool] = kernel_module_available,
) -> Engine:
    """``kernel``, ``wireguard-go``, or ``auto``: the kernel engine where the ``wireguard``
    module is present or loadable, wireguard-go otherwise."""
    if choice not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, not {choice!r}")
    if choice == "wireguard-go":
        return WireGuardGoEngine()
    if probe():
        return KernelEngine(netns)
    if choice == "kernel":
        raise EngineError(
            "the kernel engine was asked for, but the wireguard module is neither loaded "
            "nor loadable (modprobe wireguard)"
        )
    return WireGuardGoEngine()
