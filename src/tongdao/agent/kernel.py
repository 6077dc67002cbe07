"""The kernel WireGuard engine: the ``wireguard`` module driven over netlink with pyroute2.

Same behaviour as :class:`~tongdao.agent.engine.WireGuardGoEngine` behind the same ``Engine``
protocol: interfaces are ``ip link add ... type wireguard`` links (``IPRoute``), configured
and read back through WireGuard's generic netlink family (pyroute2's ``WireGuard`` socket
and its ``wgmsg`` message). ``set_peers`` names only the peers it changes (upserts with
``WGPEER_F_REPLACE_ALLOWEDIPS``, removals with ``WGPEER_F_REMOVE_ME``, never
``WGDEVICE_F_REPLACE_PEERS``), so the others keep their sessions and counters. Many peers
go in few messages (pyroute2's own ``WireGuard.set`` sends one peer per message): a full
sync of 10,000 peers is a few dozen round trips, as ``wg setconf`` does it.

Interfaces live in network namespaces (``netns``): names are per namespace here (unlike
wireguard-go's host-wide UAPI sockets), so the engine remembers where each interface was
ensured and looks in its own ``netns`` (the agent's) for any other. Fail-static is the
kernel's: a link outlives the agent that made it, and ``replaced`` has nothing to report
(no daemon runs an old binary; a module upgrade takes a reboot or a reload, which drops the
links anyway).

Everything is validated in Python before the first message is sent, as the UAPI engine does.
"""

from __future__ import annotations

import errno as errnos
import os
import platform
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from pyroute2 import IPRoute
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic.wireguard import (
    WG_CMD_SET_DEVICE,
    WG_GENL_VERSION,
    WGPEER_F_REMOVE_ME,
    WGPEER_F_REPLACE_ALLOWEDIPS,
    AsyncWireGuard,
    WireGuard,
    wgmsg,
)

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


class _AsyncSocket(AsyncWireGuard):  # type: ignore[misc]
    async def send_set(self, msg: Any) -> None:
        """Send one prepared set message and wait for its acknowledgement (as pyroute2's
        ``AsyncWireGuard.set`` does for the one peer it takes)."""
        msg["cmd"] = WG_CMD_SET_DEVICE
        msg["version"] = WG_GENL_VERSION
        msg["header"]["type"] = self.prid
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
        msg["header"]["pid"] = self.pid
        msg.encode()
        self.sendto(msg.data, (0, 0))
        (reply,) = [x async for x in self.get()]
        error = reply["header"].get("error", None)
        if error is not None:
            raise error


class _Socket(WireGuard):  # type: ignore[misc]
    async_class = _AsyncSocket

    def send_set(self, msg: Any) -> None:
        self._run_with_cleanup(self.asyncore.send_set, msg)


def _split_endpoint(endpoint: str) -> dict[str, Any]:
    host, _, port = normalize_endpoint(endpoint).rpartition(":")
    return {"addr": host.strip("[]"), "port": int(port)}


def _allowed(cidrs: Iterable[str]) -> list[dict[str, Any]]:
    out = []
    for cidr in cidrs:
        address, _, length = normalize_allowed_ip(cidr).partition("/")
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        out.append(
            {
                "attrs": [
                    ["WGALLOWEDIP_A_FAMILY", family],
                    ["WGALLOWEDIP_A_IPADDR", socket.inet_pton(family, address)],
                    ["WGALLOWEDIP_A_CIDR_MASK", int(length)],
                ]
            }
        )
    return out


def _peer_messages(upserts: Iterable[PeerConfig], removals: Iterable[str]) -> list[list[Any]]:
    """Peers as netlink attribute lists, removals first; raises ``ValueError`` (a bad key,
    endpoint or prefix, a peer named twice) before anything is sent."""
    peers: list[tuple[int, Any]] = []
    removed: set[str] = set()
    for key in removals:
        hex_key = key_to_hex(key)
        if hex_key in removed:
            continue
        removed.add(hex_key)
        attrs = [["WGPEER_A_PUBLIC_KEY", key], ["WGPEER_A_FLAGS", WGPEER_F_REMOVE_ME]]
        peers.append((48, {"attrs": attrs}))
    seen: set[str] = set()
    for peer in upserts:
        hex_key = key_to_hex(peer.public_key)
        if hex_key in removed or hex_key in seen:
            raise ValueError(f"peer {peer.public_key} named twice in one change")
        seen.add(hex_key)
        attrs = [["WGPEER_A_PUBLIC_KEY", peer.public_key]]
        size = 64
        if peer.preshared_key is not None:
            key_to_hex(peer.preshared_key)
            attrs.append(["WGPEER_A_PRESHARED_KEY", peer.preshared_key])
            size += 36
        if peer.endpoint is not None:
            attrs.append(["WGPEER_A_ENDPOINT", _split_endpoint(peer.endpoint)])
            size += 32
        if peer.keepalive:
            if not 0 <= peer.keepalive <= 65535:
                raise ValueError(f"keepalive out of range: {peer.keepalive}")
            attrs.append(["WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", peer.keepalive])
        elif not peer.new:
            attrs.append(["WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL", 0])
        attrs.append(["WGPEER_A_FLAGS", WGPEER_F_REPLACE_ALLOWEDIPS])
        attrs.append(["WGPEER_A_ALLOWEDIPS", _allowed(peer.allowed_ips)])
        size += 40 * len(peer.allowed_ips)
        peers.append((size, {"attrs": attrs}))
    chunks: list[list[Any]] = []
    current: list[Any] = []
    filled = 0
    for size, attrs in peers:
        if current and filled + size > CHUNK_BYTES:
            chunks.append(current)
            current, filled = [], 0
        current.append(attrs)
        filled += size
    if current:
        chunks.append(current)
    return chunks


def _text(value: Any) -> str:
    """A key as pyroute2 decodes it (base64 bytes, or the attribute holding them)."""
    if not isinstance(value, bytes | str) and hasattr(value, "get"):
        value = value.get("value")
    return value.decode() if isinstance(value, bytes) else str(value)


class KernelEngine:
    """The ``wireguard`` kernel module over netlink (pyroute2). ``netns``: the namespace the
    agent manages, where interfaces not ensured by this object are looked for."""

    def __init__(self, netns: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.netns = netns
        self.timeout = timeout
        self._where: dict[str, str | None] = {}
        self._wg: dict[str | None, _Socket] = {}
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
    def _genl(self, netns: str | None) -> Iterator[Any]:
        with self._lock:
            if netns not in self._wg:
                self._wg[netns] = self._open(_Socket, netns)
            yield self._wg[netns]

    def close(self) -> None:
        with self._lock:
            for sock in [*self._wg.values(), *self._ip.values()]:
                sock.close()
            self._wg.clear()
            self._ip.clear()

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
        try:
            with self._genl(netns) as wg:
                messages = wg.info(ifname)
        except NetlinkError as exc:
            if exc.code in {errnos.ENODEV, errnos.ENOENT}:
                raise InterfaceNotFound(
                    f"{ifname}: no WireGuard link in {netns or 'the host'}"
                ) from exc
            raise KernelError(ifname, "get", exc.code) from exc
        return _device_state(ifname, messages)

    def configure(
        self,
        ifname: str,
        *,
        private_key: str | None = None,
        listen_port: int | None = None,
        fwmark: int | None = None,
    ) -> None:
        msg = wgmsg()
        msg["attrs"].append(["WGDEVICE_A_IFNAME", check_ifname(ifname)])
        if private_key is not None:
            key_to_hex(private_key)
            msg["attrs"].append(["WGDEVICE_A_PRIVATE_KEY", private_key])
        if listen_port is not None:
            if not 0 <= listen_port <= 65535:
                raise ValueError(f"listen port out of range: {listen_port}")
            msg["attrs"].append(["WGDEVICE_A_LISTEN_PORT", listen_port])
        if fwmark is not None:
            if not 0 <= fwmark <= 0xFFFFFFFF:
                raise ValueError(f"fwmark out of range: {fwmark}")
            msg["attrs"].append(["WGDEVICE_A_FWMARK", fwmark])
        self._send(ifname, "set (device)", [msg])

    def set_peers(
        self, ifname: str, upserts: Iterable[PeerConfig] = (), removals: Iterable[str] = ()
    ) -> None:
        chunks = _peer_messages(upserts, removals)
        messages = []
        for chunk in chunks:
            msg = wgmsg()
            msg["attrs"].append(["WGDEVICE_A_IFNAME", check_ifname(ifname)])
            msg["attrs"].append(["WGDEVICE_A_PEERS", chunk])
            messages.append(msg)
        if messages:
            self._send(ifname, "set (peers)", messages)

    def _send(self, ifname: str, operation: str, messages: list[Any]) -> None:
        netns = self._ns(ifname)
        try:
            with self._genl(netns) as wg:
                for msg in messages:
                    wg.send_set(msg)
        except NetlinkError as exc:
            if exc.code == errnos.ENODEV:
                raise InterfaceNotFound(
                    f"{ifname}: no WireGuard link in {netns or 'the host'}"
                ) from exc
            raise KernelError(ifname, operation, exc.code) from exc


def _device_state(ifname: str, messages: Iterable[Any]) -> DeviceState:
    """A get dump (one or more messages; a peer's allowed IPs may continue in the next)."""
    has_private = False
    public: str | None = None
    listen_port: int | None = None
    fwmark: int | None = None
    peers: dict[str, PeerState] = {}
    allowed: dict[str, list[str]] = {}
    for msg in messages:
        private = msg.get_attr("WGDEVICE_A_PRIVATE_KEY")
        if private is not None:
            value = _text(private)
            has_private = value != "A" * 43 + "="
            public = public_key_of(value) if has_private else None
        port = msg.get_attr("WGDEVICE_A_LISTEN_PORT")
        if port is not None:
            listen_port = port or None
        mark = msg.get_attr("WGDEVICE_A_FWMARK")
        if mark is not None:
            fwmark = mark or None
        for peer in msg.get_attr("WGDEVICE_A_PEERS") or ():
            key = _text(peer.get_attr("WGPEER_A_PUBLIC_KEY"))
            ips = allowed.setdefault(key, [])
            for item in peer.get_attr("WGPEER_A_ALLOWEDIPS") or ():
                if "addr" in item:
                    ips.append(item["addr"])
            if key in peers:
                continue  # a continuation: only more allowed IPs
            endpoint = peer.get_attr("WGPEER_A_ENDPOINT")
            where = None
            if endpoint is not None and endpoint.get("port"):
                addr = endpoint["addr"]
                where = (
                    f"[{addr}]:{endpoint['port']}" if ":" in addr else f"{addr}:{endpoint['port']}"
                )
            handshake = peer.get_attr("WGPEER_A_LAST_HANDSHAKE_TIME")
            seconds = handshake["tv_sec"] + handshake["tv_nsec"] / 1e9 if handshake else 0
            psk = peer.get_attr("WGPEER_A_PRESHARED_KEY")
            psk_text = _text(psk) if psk is not None else "A" * 43 + "="
            peers[key] = PeerState(
                public_key=key,
                allowed_ips=(),
                endpoint=where,
                last_handshake=seconds or None,
                rx_bytes=peer.get_attr("WGPEER_A_RX_BYTES") or 0,
                tx_bytes=peer.get_attr("WGPEER_A_TX_BYTES") or 0,
                keepalive=peer.get_attr("WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL") or None,
                has_preshared_key=psk_text != "A" * 43 + "=",
            )
    return DeviceState(
        ifname,
        has_private,
        public,
        listen_port,
        fwmark,
        {key: state._replace(allowed_ips=tuple(allowed[key])) for key, state in peers.items()},
    )


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
