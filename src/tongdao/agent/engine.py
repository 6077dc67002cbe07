"""The data-plane engine: WireGuard interfaces driven through the cross-platform UAPI.

``WireGuardGoEngine`` runs one ``wireguard-go`` daemon per tenant interface and talks to it over
its UAPI socket ``/var/run/wireguard/<ifname>.sock`` (``key=value`` lines, hex keys, ``get=1`` /
``set=1``, answered by ``errno=N``; see https://www.wireguard.com/xplatform/). ``FakeEngine``
keeps the same state in memory and speaks the same UAPI text to itself, for unit tests.

Fail-static: the daemons are started in a session of their own and left to daemonize, so they
are not children of, nor in the process group of, the agent. If the agent dies or restarts, the
interfaces keep forwarding with their last configuration; a restarted agent *adopts* a live
socket (``ensure_interface`` returns ``False``) instead of recreating the interface. Under
systemd the agent's unit needs ``KillMode=process`` (or pass ``launcher=("systemd-run",
"--scope", "--quiet")`` to give every daemon a scope of its own), otherwise stopping the unit
kills the whole control group, daemons included.

Network namespaces: ``ensure_interface(ifname, netns=NS)`` runs ``ip netns exec NS
wireguard-go IFNAME``. ``ip netns exec`` unshares the mount namespace only to remount ``/sys``
and bind ``/etc/netns/NS``; ``/var/run`` stays the host's, so the socket lands in the host's
``/var/run/wireguard`` and the engine reaches it without entering the namespace. The flip side:
interface names must be unique across *all* namespaces of the host (a second ``wgt51820`` in
another namespace would find the socket in use).

``set=1`` is one request, but wireguard-go applies its lines in order and stops at the first bad
one, so everything is validated in Python before a byte is written.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, NamedTuple, Protocol

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from tongdao.errors import TongdaoError
from tongdao.gateway.desired import Peer

SOCKET_DIR = Path("/var/run/wireguard")
DEFAULT_TIMEOUT = 30.0
# Every wireguard-go daemon holds one inotify instance (it watches its UAPI socket's file), and
# the kernel's default per-user limit is 128: the 129th tenant's daemon on a PoP would start and
# never answer. Before starting one, the engine keeps the limit at least this far above the
# daemons it runs, for everything else on the host that uses inotify (so at the default it acts
# from the 96th daemon on, and a host with few tenants is left as it is).
INOTIFY_LIMIT = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_HEADROOM = 32

log = logging.getLogger("tongdao.agent.engine")
_ZERO_KEY_HEX = "0" * 64
_MAX_RESPONSE = 256 * 1024 * 1024  # a get=1 of 100,000 peers is ~40 MB
_POLL = 0.02


class EngineError(TongdaoError):
    """The data plane could not be driven (daemon missing, refused, timed out)."""


class InterfaceNotFound(EngineError):
    """No live UAPI socket for the interface."""


class UapiError(EngineError):
    """The daemon answered a UAPI request with a non-zero ``errno``."""

    def __init__(self, ifname: str, operation: str, errno: int) -> None:
        self.ifname = ifname
        self.operation = operation
        self.errno = abs(errno)  # wireguard-go answers -EINVAL as errno=-22
        name = os.strerror(self.errno) if self.errno else "unknown"
        super().__init__(f"{ifname}: UAPI {operation} failed: errno={errno} ({name})")


# --- keys ------------------------------------------------------------------------------------


def _raw_key(key_b64: str) -> bytes:
    try:
        raw = binascii.a2b_base64(key_b64, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not a base64 WireGuard key: {key_b64!r}") from exc
    if len(raw) != 32:
        raise ValueError(f"a WireGuard key has 32 bytes, not {len(raw)}: {key_b64!r}")
    return raw


def key_to_hex(key_b64: str) -> str:
    """WireGuard's base64 key form → the UAPI's lowercase hex."""
    return _raw_key(key_b64).hex()


def key_from_hex(key_hex: str) -> str:
    """The UAPI's hex key form → WireGuard's base64."""
    try:
        raw = bytes.fromhex(key_hex)
    except ValueError as exc:
        raise ValueError(f"not a hex WireGuard key: {key_hex!r}") from exc
    if len(raw) != 32:
        raise ValueError(f"a WireGuard key has 32 bytes, not {len(raw)}")
    return base64.b64encode(raw).decode()


def generate_private_key() -> str:
    """A fresh X25519 private key in base64, like ``wg genkey``."""
    raw = X25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(raw).decode()


def public_key_of(private_key_b64: str) -> str:
    """The public half of a base64 private key, like ``wg pubkey``."""
    private = X25519PrivateKey.from_private_bytes(_raw_key(private_key_b64))
    return base64.b64encode(
        private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    ).decode()


# --- models ----------------------------------------------------------------------------------


class PeerConfig(NamedTuple):
    """What the engine sets for one peer. ``endpoint`` is an IP literal with port
    (``198.51.100.2:51820``, ``[fd00::2]:51820``); ``None`` leaves the peer's endpoint as it
    is (UAPI cannot clear one; a roaming client's learnt endpoint is kept). ``keepalive``
    ``None`` means off. ``allowed_ips`` replace the peer's current list.

    ``PeerConfig`` and ``PeerState`` are named tuples rather than frozen dataclasses: a full
    sync makes one of each per peer, and a named tuple is built in 0.3-0.55 µs against
    1.3 µs for the frozen dataclass (measured here, 8 fields)."""

    public_key: str
    allowed_ips: tuple[str, ...] = ()
    endpoint: str | None = None
    keepalive: int | None = None
    preshared_key: str | None = None
    new: bool = False
    """The peer is known not to be on the interface yet (the planner knows): settings still
    at WireGuard's defaults (keepalive off) are left unwritten."""

    @classmethod
    def from_desired(cls, peer: Peer, *, new: bool = False) -> PeerConfig:
        return cls(peer.public_key, peer.allowed_ips, peer.endpoint, peer.keepalive, None, new)


class PeerState(NamedTuple):
    public_key: str
    allowed_ips: tuple[str, ...]
    endpoint: str | None
    last_handshake: float | None  # epoch seconds; None before the first handshake
    rx_bytes: int
    tx_bytes: int
    keepalive: int | None
    has_preshared_key: bool


@dataclass(frozen=True)
class DeviceState:
    """An interface as ``get=1`` reports it. The private key is never kept: only whether there
    is one, and the public key derived from it."""

    ifname: str
    has_private_key: bool
    public_key: str | None
    listen_port: int | None
    fwmark: int | None
    peers: Mapping[str, PeerState] = field(default_factory=dict)  # by base64 public key


class Engine(Protocol):
    def ensure_interface(self, ifname: str, netns: str | None = None) -> bool:
        """Create the interface, or adopt a live one; True when it was created."""
        ...

    def delete_interface(self, ifname: str) -> None: ...

    def list_interfaces(self) -> list[str]: ...

    def get(self, ifname: str) -> DeviceState: ...

    def configure(
        self,
        ifname: str,
        *,
        private_key: str | None = None,
        listen_port: int | None = None,
        fwmark: int | None = None,
    ) -> None: ...

    def set_peers(
        self, ifname: str, upserts: Iterable[PeerConfig] = (), removals: Iterable[str] = ()
    ) -> None: ...

    def build(self) -> EngineBuild:
        """Which engine and build this is (logged by the agent at start)."""
        ...

    def replaced(self, ifnames: Iterable[str]) -> list[str]:
        """Of ``ifnames``, those served by a daemon whose binary was replaced since it
        started (a package upgrade): they run the old build until restarted."""
        ...


# --- the engine's build ----------------------------------------------------------------------

ENGINE_MIN_VERSION: Final = "0.0.20231211"
"""The oldest wireguard-go Tongdao is built for: TUN offloads (TSO/GRO through virtio-net
headers, 0.0.20230223) and UDP GSO/GRO (0.0.20231211), about five times the throughput of
Debian bookworm's own 0.0.20220316 (README, "The engine: wireguard-go from bookworm-backports")."""

_SELF_REPORTED_AMBIGUOUS: Final = 20230223
"""wireguard-go 0.0.20231211 was tagged without bumping its ``version.go``: ``--version``
says ``v0.0.20230223`` for both releases, so that answer cannot tell them apart."""

_DATE = re.compile(r"(?<![\d.])0\.0\.(\d{8})(?!\d)")


def _release_date(version: str | None) -> int | None:
    match = _DATE.search(version or "")
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class EngineBuild:
    """The engine's build: ``version`` as the Debian package names it
    (``0.0.20231211-1~bpo12+1``, ``source="dpkg"``) or as the binary says it
    (``0.0.20230223``, ``source="--version"``); ``None`` when neither could tell."""

    engine: str
    binary: str
    version: str | None
    source: str

    @property
    def outdated(self) -> bool | None:
        """True: older than :data:`ENGINE_MIN_VERSION`; False: not; None: cannot tell.
        The kernel module is never outdated: the minimum is wireguard-go's."""
        if self.engine == "kernel":
            return False
        date = _release_date(self.version)
        minimum = _release_date(ENGINE_MIN_VERSION)
        assert minimum is not None
        if date is None:
            return None
        if self.source == "--version" and date == _SELF_REPORTED_AMBIGUOUS:
            return None
        return date < minimum

    def describe(self) -> str:
        version = self.version or "version unknown"
        return f"{self.engine} {version} ({self.binary}, {self.source or 'no version source'})"


def _output(argv: Sequence[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def wireguard_go_build(binary: str = "wireguard-go") -> EngineBuild:
    """The build of ``binary``: from the Debian package that installed it when there is one
    (the package version is exact), else from its own ``--version``."""
    path = shutil.which(binary)
    if path is None:
        return EngineBuild("wireguard-go", binary, None, "")
    real = os.path.realpath(path)
    owner = _output(["dpkg-query", "-S", real]) or _output(["dpkg-query", "-S", path])
    if owner:
        package = owner.split(":", 1)[0].strip()
        version = _output(["dpkg-query", "-W", "-f=${Version}", package])
        if version and version.strip():
            return EngineBuild("wireguard-go", real, version.strip(), "dpkg")
    said = _output([real, "--version"])
    match = _DATE.search(said or "")
    return EngineBuild("wireguard-go", real, match.group(0) if match else None, "--version")


# --- UAPI text -------------------------------------------------------------------------------


def check_ifname(ifname: str) -> str:
    if not 0 < len(ifname) <= 15 or ifname in {".", ".."}:
        raise ValueError(f"interface names have 1 to 15 characters: {ifname!r}")
    if any(ch in ifname for ch in "/:%\0") or any(ch.isspace() for ch in ifname):
        raise ValueError(f"invalid interface name: {ifname!r}")
    return ifname


def _port(value: int, what: str) -> int:
    if not 0 <= value <= 65535:
        raise ValueError(f"{what} out of range: {value}")
    return value


def normalize_endpoint(endpoint: str) -> str:
    """``host:port`` with an IP literal host (IPv6 in brackets), as the UAPI wants it."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"endpoint needs a port: {endpoint!r}")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError as exc:
        raise ValueError(f"endpoint host must be an IP address: {endpoint!r}") from exc
    if address.version == 6 and not bracketed:
        raise ValueError(f"IPv6 endpoints are written [address]:port: {endpoint!r}")
    number = _port(int(port), "endpoint port")
    return f"[{address}]:{number}" if address.version == 6 else f"{address}:{number}"


_PREFIX_LENGTHS: Final = {
    socket.AF_INET: {str(n): 32 - n for n in range(33)},
    socket.AF_INET6: {str(n): 128 - n for n in range(129)},
}
"""Per family: every prefix length as canonically written → the host bits it leaves."""


def _canonical_cidr(cidr: str) -> bool:
    """Whether ``cidr`` is already in canonical form: an address as ``inet_ntop`` writes it,
    an explicit prefix length, no host bits. A fast check (the C address parser, no objects):
    desired states carry tens of thousands of host routes, nearly all canonical already."""
    address, _, length = cidr.partition("/")
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # None: no "/", or a length spelt otherwise ("032") or out of range
    host_bits = _PREFIX_LENGTHS[family].get(length)
    if host_bits is None or (family == socket.AF_INET6 and "." in address):
        return False  # IPv4-mapped spellings are left to ipaddress
    try:
        packed = socket.inet_pton(family, address)
    except OSError:
        return False
    if socket.inet_ntop(family, packed) != address:
        return False
    return host_bits == 0 or int.from_bytes(packed, "big") & ((1 << host_bits) - 1) == 0


def normalize_allowed_ip(cidr: str) -> str:
    """The prefix as WireGuard stores it (host bits cleared)."""
    if _canonical_cidr(cidr):
        return cidr
    try:
        return str(ipaddress.ip_network(cidr, strict=False))
    except ValueError as exc:
        raise ValueError(f"not a CIDR: {cidr!r}") from exc


def serialize_set(
    *,
    private_key: str | None = None,
    listen_port: int | None = None,
    fwmark: int | None = None,
    upserts: Iterable[PeerConfig] = (),
    removals: Iterable[str] = (),
) -> bytes:
    """One ``set=1`` request: device keys, then removed peers, then upserted peers, each
    upsert with ``replace_allowed_ips=true``. Never ``replace_peers``: peers not named keep
    their sessions and counters. Raises ``ValueError`` before anything could be applied."""
    lines = ["set=1"]
    if private_key is not None:
        lines.append(f"private_key={key_to_hex(private_key)}")
    if listen_port is not None:
        lines.append(f"listen_port={_port(listen_port, 'listen port')}")
    if fwmark is not None:
        if not 0 <= fwmark <= 0xFFFFFFFF:
            raise ValueError(f"fwmark out of range: {fwmark}")
        lines.append(f"fwmark={fwmark}")
    removed: set[str] = set()
    for key in removals:
        hex_key = key_to_hex(key)
        if hex_key in removed:
            continue
        removed.add(hex_key)
        lines += (f"public_key={hex_key}", "remove=true")
    seen: set[str] = set()
    for peer in upserts:
        hex_key = key_to_hex(peer.public_key)
        if hex_key in removed or hex_key in seen:
            raise ValueError(f"peer {peer.public_key} named twice in one change")
        seen.add(hex_key)
        lines.append(f"public_key={hex_key}")
        if peer.preshared_key is not None:
            lines.append(f"preshared_key={key_to_hex(peer.preshared_key)}")
        if peer.endpoint is not None:
            lines.append(f"endpoint={normalize_endpoint(peer.endpoint)}")
        if peer.keepalive:
            lines.append(f"persistent_keepalive_interval={_port(peer.keepalive, 'keepalive')}")
        elif not peer.new:
            lines.append("persistent_keepalive_interval=0")
        lines.append("replace_allowed_ips=true")
        lines.extend(f"allowed_ip={normalize_allowed_ip(cidr)}" for cidr in peer.allowed_ips)
    lines += ("", "")
    return "\n".join(lines).encode()


def parse_errno(text: str) -> int:
    """The ``errno=N`` a response ends with."""
    for line in reversed(text.rstrip("\n").split("\n")):
        if line.startswith("errno="):
            try:
                return int(line[6:])
            except ValueError:
                break
    raise EngineError(f"UAPI response without errno: {text[-200:]!r}")


def parse_get(ifname: str, text: str) -> DeviceState:
    """Parse a ``get=1`` response (raises ``UapiError`` for a non-zero errno)."""
    errno = parse_errno(text)
    if errno:
        raise UapiError(ifname, "get", errno)
    has_private = False
    public: str | None = None
    listen_port: int | None = None
    fwmark: int | None = None
    peers: dict[str, PeerState] = {}
    current: dict[str, str] | None = None
    allowed: list[str] = []

    def flush() -> None:
        if current is None:
            return
        seconds = int(current.get("last_handshake_time_sec", "0"))
        nanos = int(current.get("last_handshake_time_nsec", "0"))
        keepalive = int(current.get("persistent_keepalive_interval", "0"))
        psk = current.get("preshared_key", _ZERO_KEY_HEX)
        key = key_from_hex(current["public_key"])
        peers[key] = PeerState(
            public_key=key,
            allowed_ips=tuple(allowed),
            endpoint=current.get("endpoint"),
            last_handshake=seconds + nanos / 1e9 if seconds or nanos else None,
            rx_bytes=int(current.get("rx_bytes", "0")),
            tx_bytes=int(current.get("tx_bytes", "0")),
            keepalive=keepalive or None,
            has_preshared_key=psk != _ZERO_KEY_HEX,
        )

    for line in text.split("\n"):
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise EngineError(f"{ifname}: malformed UAPI line {line!r}")
        if key == "errno":
            break
        if key == "public_key":
            flush()
            current, allowed = {"public_key": value}, []
        elif current is not None:
            if key == "allowed_ip":
                allowed.append(value)
            else:
                current[key] = value
        elif key == "private_key":
            has_private = value != _ZERO_KEY_HEX
            if has_private:
                public = public_key_of(key_from_hex(value))
        elif key == "listen_port":
            listen_port = int(value)
        elif key == "fwmark":
            fwmark = int(value) or None
    flush()
    return DeviceState(ifname, has_private, public, listen_port, fwmark, peers)


# --- wireguard-go ----------------------------------------------------------------------------


def wireguard_go_pids(ifname: str) -> list[int]:
    """Live (non-zombie) ``wireguard-go`` processes serving ``ifname``, by their argv."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        while argv and not argv[-1]:
            argv.pop()
        if len(argv) < 2 or os.path.basename(argv[0]) != b"wireguard-go":
            continue
        if argv[-1] != ifname.encode():
            continue
        if process_alive(int(entry.name)):
            found.append(int(entry.name))
    return sorted(found)


def process_alive(pid: int) -> bool:
    """Some thread of the process is not yet a zombie (a killed Go program's main thread
    turns zombie while its other threads still hold its files, sockets included)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        if stat.rpartition(")")[2].split()[0] not in {"Z", "X"}:
            return True
    return False


def daemon_env() -> dict[str, str]:
    """The environment to start a daemonizing wireguard-go with."""
    env = dict(os.environ)
    # WG_PROCESS_FOREGROUND would keep it from daemonizing; with LOG_LEVEL the daemon would
    # inherit our stdout/stderr pipes (and hold them open).
    for name in ("WG_PROCESS_FOREGROUND", "LOG_LEVEL", "WG_TUN_FD", "WG_UAPI_FD"):
        env.pop(name, None)
    return env


class WireGuardGoEngine:
    """wireguard-go daemons driven through their UAPI sockets."""

    def __init__(
        self,
        *,
        socket_dir: Path = SOCKET_DIR,
        binary: str = "wireguard-go",
        timeout: float = DEFAULT_TIMEOUT,
        launcher: Sequence[str] = (),
        inotify_limit: Path = INOTIFY_LIMIT,
    ) -> None:
        self.socket_dir = socket_dir
        self.binary = binary
        self.timeout = timeout
        self.launcher = tuple(launcher)
        self.inotify_limit = inotify_limit

    def socket_path(self, ifname: str) -> Path:
        return self.socket_dir / f"{check_ifname(ifname)}.sock"

    def build(self) -> EngineBuild:
        return wireguard_go_build(self.binary)

    def replaced(self, ifnames: Iterable[str]) -> list[str]:
        stale = []
        for ifname in ifnames:
            for pid in wireguard_go_pids(ifname):
                try:
                    exe = os.readlink(f"/proc/{pid}/exe")
                except OSError:
                    continue
                if exe.endswith(" (deleted)"):  # the file it runs is no longer on disk
                    stale.append(ifname)
                    break
        return sorted(stale)

    def is_alive(self, ifname: str) -> bool:
        """A daemon accepts connections on the interface's socket."""
        try:
            with self._connect(ifname, time.monotonic() + min(self.timeout, 2.0)):
                return True
        except InterfaceNotFound:
            return False

    # lifecycle

    def ensure_interface(self, ifname: str, netns: str | None = None) -> bool:
        path = self.socket_path(ifname)
        if self.is_alive(ifname):
            self._link_up(ifname, netns)
            return False
        path.unlink(missing_ok=True)  # stale: the daemon died without cleaning up
        self.make_inotify_room()
        argv = [*self.launcher]
        if netns is not None:
            argv += ["ip", "netns", "exec", netns]
        argv += [self.binary, ifname]
        try:
            # The parent opens the TUN device and the listening socket, re-executes itself as
            # the daemon and exits; start_new_session keeps the daemon out of our session.
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env=daemon_env(),
                start_new_session=True,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EngineError(f"{ifname}: could not start {self.binary}: {exc}") from exc
        if done.returncode != 0:
            message = [ln for ln in done.stderr.splitlines() if ln and ln[0] not in "│┌└"]
            raise EngineError(
                f"{ifname}: {self.binary} exited {done.returncode}: {' '.join(message)[-500:]}"
            )
        deadline = time.monotonic() + self.timeout
        while not self.is_alive(ifname):
            if time.monotonic() > deadline:
                raise EngineError(f"{ifname}: {self.binary} started but its socket never answered")
            time.sleep(_POLL)
        self._link_up(ifname, netns)
        return True

    def make_inotify_room(self) -> None:
        """Raise the host's inotify instance limit when one more daemon would come within
        INOTIFY_HEADROOM of it (see INOTIFY_LIMIT); a warning, not a failure, when it cannot."""
        daemons = len(list(self.socket_dir.glob("*.sock"))) if self.socket_dir.is_dir() else 0
        needed = daemons + 1 + INOTIFY_HEADROOM
        try:
            limit = int(self.inotify_limit.read_text().strip())
        except (OSError, ValueError):
            return  # no such setting here: nothing to do
        if limit >= needed:
            return
        raised = max(needed, 2 * limit)
        try:
            self.inotify_limit.write_text(f"{raised}\n")
        except OSError as exc:
            log.warning(
                "%d wireguard-go daemons and fs.inotify.max_user_instances is %d: each daemon "
                "holds one inotify instance, so more tenants may fail to start; set it to at "
                "least %d (%s)",
                daemons,
                limit,
                needed,
                exc,
            )
            return
        log.warning(
            "raised fs.inotify.max_user_instances from %d to %d: each wireguard-go daemon "
            "holds one inotify instance and %d are running",
            limit,
            raised,
            daemons,
        )

    def delete_interface(self, ifname: str) -> None:
        """Stop the daemon (which removes its TUN link). Idempotent."""
        path = self.socket_path(ifname)
        pids = wireguard_go_pids(ifname)
        # Unlinking the socket is wireguard-go's own shutdown signal (it watches the file).
        path.unlink(missing_ok=True)
        for sig, grace in ((None, 2.0), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            if sig is not None:
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
            deadline = time.monotonic() + grace
            while pids and time.monotonic() < deadline:
                time.sleep(_POLL)
                pids = [pid for pid in pids if pid in wireguard_go_pids(ifname)]
            if not pids:
                return
        raise EngineError(f"{ifname}: wireguard-go {pids} did not exit")

    def list_interfaces(self) -> list[str]:
        if not self.socket_dir.is_dir():
            return []
        names = [p.name[: -len(".sock")] for p in self.socket_dir.glob("*.sock")]
        return sorted(n for n in names if len(n) <= 15 and self.is_alive(n))

    # configuration

    def get(self, ifname: str) -> DeviceState:
        return parse_get(ifname, self._request(ifname, b"get=1\n\n"))

    def configure(
        self,
        ifname: str,
        *,
        private_key: str | None = None,
        listen_port: int | None = None,
        fwmark: int | None = None,
    ) -> None:
        payload = serialize_set(private_key=private_key, listen_port=listen_port, fwmark=fwmark)
        self._set(ifname, "set (device)", payload)

    def set_peers(
        self, ifname: str, upserts: Iterable[PeerConfig] = (), removals: Iterable[str] = ()
    ) -> None:
        payload = serialize_set(upserts=upserts, removals=removals)
        if payload != b"set=1\n\n":
            self._set(ifname, "set (peers)", payload)

    # plumbing

    def _set(self, ifname: str, operation: str, payload: bytes) -> None:
        errno = parse_errno(self._request(ifname, payload))
        if errno:
            raise UapiError(ifname, operation, errno)

    def _link_up(self, ifname: str, netns: str | None) -> None:
        argv = ["ip", *(("-n", netns) if netns else ()), "link", "set", "dev", ifname, "up"]
        try:
            done = subprocess.run(
                argv, capture_output=True, text=True, timeout=self.timeout, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EngineError(f"{ifname}: ip link set up failed: {exc}") from exc
        if done.returncode != 0:
            raise EngineError(f"{ifname}: ip link set up failed: {done.stderr.strip()}")

    def _connect(self, ifname: str, deadline: float) -> socket.socket:
        path = self.socket_path(ifname)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise InterfaceNotFound(f"{ifname}: no wireguard-go on {path}") from exc
        except OSError as exc:
            sock.close()
            raise EngineError(f"{ifname}: cannot connect to {path}: {exc}") from exc
        return sock

    def _request(self, ifname: str, payload: bytes) -> str:
        deadline = time.monotonic() + self.timeout
        with self._connect(ifname, deadline) as sock:
            chunks: list[bytes] = []
            try:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                # The daemon stops reading at the first bad line; its errno follows.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(payload)
                tail = b""
                size = 0
                while not tail.endswith(b"\n\n"):
                    sock.settimeout(max(deadline - time.monotonic(), 0.001))
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > _MAX_RESPONSE:
                        raise EngineError(f"{ifname}: UAPI response over {_MAX_RESPONSE} bytes")
                    tail = (tail + chunk)[-2:]
            except TimeoutError as exc:
                raise EngineError(f"{ifname}: UAPI request timed out ({self.timeout} s)") from exc
            except OSError as exc:
                raise EngineError(f"{ifname}: UAPI I/O failed: {exc}") from exc
        text = b"".join(chunks).decode("ascii", errors="replace")
        if not text.endswith("\n\n"):
            raise EngineError(f"{ifname}: UAPI connection closed mid-response: {text[-200:]!r}")
        return text


# --- in memory -------------------------------------------------------------------------------


@dataclass
class _FakePeer:
    endpoint: str | None = None
    keepalive: int = 0
    preshared_key: str = _ZERO_KEY_HEX
    allowed_ips: list[str] = field(default_factory=list)


@dataclass
class _FakeDevice:
    netns: str | None
    private_key: str = _ZERO_KEY_HEX
    listen_port: int = 0
    fwmark: int = 0
    peers: dict[str, _FakePeer] = field(default_factory=dict)  # by hex public key


class FakeEngine:
    """In memory, with wireguard-go's semantics: it interprets the very ``set=1`` text the
    real engine would send (allowed IPs move between peers, removing an unknown peer is a
    no-op, a peer with the device's own key is ignored, lines apply in order up to the first
    bad one) and answers ``get=1`` text that goes through the same parser. Unlike
    wireguard-go it does not pick a random listen port before one is configured."""

    def __init__(self) -> None:
        self.devices: dict[str, _FakeDevice] = {}
        self.requests: list[tuple[str, bytes]] = []  # every UAPI request, for assertions

    def ensure_interface(self, ifname: str, netns: str | None = None) -> bool:
        if check_ifname(ifname) in self.devices:
            return False
        self.devices[ifname] = _FakeDevice(netns)
        return True

    def delete_interface(self, ifname: str) -> None:
        self.devices.pop(check_ifname(ifname), None)

    def list_interfaces(self) -> list[str]:
        return sorted(self.devices)

    def build(self) -> EngineBuild:
        return EngineBuild("fake", "memory", ENGINE_MIN_VERSION, "fake")

    def replaced(self, ifnames: Iterable[str]) -> list[str]:
        return []

    def get(self, ifname: str) -> DeviceState:
        return parse_get(ifname, self._handle(ifname, b"get=1\n\n"))

    def configure(
        self,
        ifname: str,
        *,
        private_key: str | None = None,
        listen_port: int | None = None,
        fwmark: int | None = None,
    ) -> None:
        payload = serialize_set(private_key=private_key, listen_port=listen_port, fwmark=fwmark)
        errno = parse_errno(self._handle(ifname, payload))
        if errno:
            raise UapiError(ifname, "set (device)", errno)

    def set_peers(
        self, ifname: str, upserts: Iterable[PeerConfig] = (), removals: Iterable[str] = ()
    ) -> None:
        payload = serialize_set(upserts=upserts, removals=removals)
        if payload == b"set=1\n\n":
            return
        errno = parse_errno(self._handle(ifname, payload))
        if errno:
            raise UapiError(ifname, "set (peers)", errno)

    # the UAPI, in memory

    def _handle(self, ifname: str, payload: bytes) -> str:
        device = self.devices.get(check_ifname(ifname))
        if device is None:
            raise InterfaceNotFound(f"{ifname}: no such fake interface")
        self.requests.append((ifname, payload))
        text = payload.decode()
        if text == "get=1\n\n":
            return self._render(device)
        if text.startswith("set=1\n"):
            return f"errno={self._apply(ifname, device, text[6:])}\n\n"
        return "errno=-22\n\n"

    @staticmethod
    def _render(device: _FakeDevice) -> str:
        lines: list[str] = []
        if device.private_key != _ZERO_KEY_HEX:
            lines.append(f"private_key={device.private_key}")
        if device.listen_port:
            lines.append(f"listen_port={device.listen_port}")
        if device.fwmark:
            lines.append(f"fwmark={device.fwmark}")
        for key, peer in device.peers.items():
            lines += [f"public_key={key}", f"preshared_key={peer.preshared_key}"]
            lines.append("protocol_version=1")
            if peer.endpoint:
                lines.append(f"endpoint={peer.endpoint}")
            lines += [
                "last_handshake_time_sec=0",
                "last_handshake_time_nsec=0",
                "tx_bytes=0",
                "rx_bytes=0",
                f"persistent_keepalive_interval={peer.keepalive}",
            ]
            lines.extend(f"allowed_ip={cidr}" for cidr in peer.allowed_ips)
        lines.append("errno=0")
        return "\n".join(lines) + "\n\n"

    def _own_public_hex(self, device: _FakeDevice) -> str | None:
        if device.private_key == _ZERO_KEY_HEX:
            return None
        return key_to_hex(public_key_of(key_from_hex(device.private_key)))

    def _apply(self, ifname: str, device: _FakeDevice, body: str) -> int:
        einval, eaddrinuse = -22, -98
        peer: _FakePeer | None = None
        current_key = ""
        dummy = False
        for line in body.split("\n"):
            if not line:
                return 0
            key, sep, value = line.partition("=")
            if not sep:
                return einval
            try:
                if key == "public_key":
                    key_from_hex(value)
                    dummy = value == self._own_public_hex(device)
                    peer = _FakePeer() if dummy else device.peers.setdefault(value, _FakePeer())
                    current_key = value
                elif peer is None:
                    if key == "private_key":
                        key_from_hex(value)
                        device.private_key = value
                    elif key == "listen_port":
                        port = _port(int(value), "listen port")
                        taken = {
                            d.listen_port
                            for name, d in self.devices.items()
                            if name != ifname and d.netns == device.netns
                        }
                        if port and port in taken:
                            return eaddrinuse
                        device.listen_port = port
                    elif key == "fwmark":
                        device.fwmark = int(value)
                    elif key == "replace_peers" and value == "true":
                        device.peers.clear()
                    else:
                        return einval
                elif key == "remove" and value == "true":
                    if not dummy:
                        device.peers.pop(current_key, None)
                    peer, dummy = _FakePeer(), True
                elif key == "preshared_key":
                    key_from_hex(value)
                    peer.preshared_key = value
                elif key == "endpoint":
                    peer.endpoint = normalize_endpoint(value)
                elif key == "persistent_keepalive_interval":
                    peer.keepalive = _port(int(value), "keepalive")
                elif key == "replace_allowed_ips" and value == "true":
                    peer.allowed_ips.clear()
                elif key == "allowed_ip":
                    cidr = normalize_allowed_ip(value)
                    if not dummy:
                        for other in device.peers.values():
                            if cidr in other.allowed_ips:
                                other.allowed_ips.remove(cidr)
                    peer.allowed_ips.append(cidr)
                elif key == "protocol_version" and value == "1":
                    pass
                else:
                    return einval
            except ValueError:
                return einval
        return einval  # no terminating blank line
