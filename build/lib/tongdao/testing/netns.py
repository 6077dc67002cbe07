"""Network namespaces for tests: hosts, veth wires, addresses, routes, and a reference client.

Everything here needs root. Namespaces are named ``td-<6 hex>``; addresses and routes are
refused unless they fall inside the documentation/benchmark/CGNAT/ULA ranges in
``TEST_NETWORKS``, so a test can never route into a real network.

``Topology`` is the context manager tests use: on exit (also when the test failed) it kills
every process inside its namespaces and every wireguard-go daemon of the interfaces it handed
out, removes their UAPI sockets and deletes the namespaces (which deletes their links).

wireguard-go inside a namespace: ``ip netns exec`` shares ``/var/run`` with the host, so a
daemon's socket is ``/var/run/wireguard/<ifname>.sock`` on the host whatever namespace its
interface is in. Interface names must therefore be unique across namespaces;
``Topology.wg_ifname()`` hands out unused ``wgt<port>`` names.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from tongdao.agent.engine import (
    SOCKET_DIR,
    check_ifname,
    daemon_env,
    process_alive,
    wireguard_go_pids,
)
from tongdao.errors import TongdaoError

PREFIX = "td-"
TEST_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "198.18.0.0/15",
        "100.64.0.0/10",
        "fd00::/8",
    )
)
TIMEOUT = 15.0
WG_QUICK_TABLE = 51820  # wg-quick's default table and fwmark for a full tunnel


class NetnsError(TongdaoError):
    """A namespace command failed."""


def check_test_network(cidr: str) -> str:
    """``cidr`` (an address with or without a prefix length) lies inside a test range."""
    net = ipaddress.ip_interface(cidr).network
    if not any(net.version == t.version and net.subnet_of(t) for t in TEST_NETWORKS):  # type: ignore[arg-type]
        raise ValueError(f"{cidr} is outside the test networks {[str(t) for t in TEST_NETWORKS]}")
    return cidr


def run(
    argv: Sequence[str],
    *,
    netns: str | None = None,
    check: bool = True,
    timeout: float = TIMEOUT,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command (inside ``netns`` if given), capturing its output."""
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    done = subprocess.run(
        full,
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=None if input_text is not None else subprocess.DEVNULL,
    )
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(full)} exited {done.returncode}: {done.stderr.strip()}")
    return done


def new_name() -> str:
    return PREFIX + secrets.token_hex(3)


def list_namespaces(prefix: str = PREFIX) -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    return sorted(ln.split()[0] for ln in out.splitlines() if ln.startswith(prefix))


def create_namespace(name: str | None = None) -> str:
    name = name or new_name()
    if not name.startswith(PREFIX):
        raise ValueError(f"test namespaces are named {PREFIX}*: {name!r}")
    run(["ip", "netns", "add", name])
    run(["ip", "-n", name, "link", "set", "dev", "lo", "up"])
    return name


def namespace_pids(name: str) -> list[int]:
    done = run(["ip", "netns", "pids", name], check=False)
    return [int(p) for p in done.stdout.split() if p.isdigit()]


def delete_namespace(name: str) -> None:
    """Kill every process in the namespace, then delete it (and the links inside)."""
    if name not in list_namespaces(name):
        return
    for _ in range(3):
        pids = namespace_pids(name)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(pids, 2.0)
    run(["ip", "netns", "delete", name])


def _wait_gone(pids: Sequence[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(process_alive(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def add_veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> None:
    """A veth pair with one end in each namespace, both up (never in the host namespace)."""
    run(["ip", "-n", ns_a, "link", "add", name_a, "type", "veth", "peer", name_b, "netns", ns_b])
    run(["ip", "-n", ns_a, "link", "set", "dev", name_a, "up"])
    run(["ip", "-n", ns_b, "link", "set", "dev", name_b, "up"])


def add_address(ns: str, ifname: str, cidr: str) -> None:
    check_test_network(cidr)
    extra = ["nodad"] if ipaddress.ip_interface(cidr).version == 6 else []
    run(["ip", "-n", ns, "address", "add", cidr, "dev", ifname, *extra])


def add_route(
    ns: str, cidr: str, *, dev: str | None = None, via: str | None = None, table: int | None = None
) -> None:
    """``ip route replace``; default routes are allowed (a test namespace has no way out)."""
    if ipaddress.ip_network(cidr, strict=False).prefixlen:
        check_test_network(cidr)
    argv = ["ip", "-n", ns, "route", "replace", cidr]
    if via:
        argv += ["via", check_test_network(via)]
    if dev:
        argv += ["dev", dev]
    if table is not None:
        argv += ["table", str(table)]
    run(argv)


def set_forwarding(ns: str, enabled: bool = True) -> None:
    value = "1" if enabled else "0"
    settings = [f"net.ipv4.ip_forward={value}", f"net.ipv6.conf.all.forwarding={value}"]
    run(["sysctl", "-q", "-w", *settings], netns=ns)


def ping(ns: str, address: str, *, count: int = 1, wait: float = 1.0, tries: int = 5) -> bool:
    """True once a ping from ``ns`` to ``address`` is answered (bounded tries)."""
    check_test_network(address)
    for _ in range(tries):
        done = run(
            ["ping", "-n", "-q", "-c", str(count), "-W", str(wait), address],
            netns=ns,
            check=False,
            timeout=count * wait + 5,
        )
        if done.returncode == 0:
            return True
    return False


def wg_dump(ns: str, ifname: str) -> tuple[list[str], dict[str, list[str]]]:
    """``wg show IF dump`` run inside ``ns`` (the independent view): the interface row
    (private key, public key, port, fwmark) and peer rows by public key (psk, endpoint,
    allowed-ips, latest handshake, rx, tx, keepalive)."""
    rows = [
        ln.split("\t") for ln in run(["wg", "show", ifname, "dump"], netns=ns).stdout.splitlines()
    ]
    return rows[0], {row[0]: row[1:] for row in rows[1:]}


# --- reference client (stock wg-quick behaviour) ---------------------------------------------

WG_QUICK_ONLY = {"address", "dns", "mtu", "table", "preup", "postup", "predown", "postdown"}
WG_QUICK_ONLY |= {"saveconfig"}


@dataclass(frozen=True)
class WgQuickConfig:
    setconf: str  # what ``wg-quick strip`` prints: the file without wg-quick-only keys
    addresses: tuple[str, ...]
    dns: tuple[str, ...]
    mtu: int | None
    allowed_ips: tuple[str, ...]


def _values(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse_wg_quick(text: str) -> WgQuickConfig:
    """Split a wg-quick file the way ``wg-quick strip`` does: comments are cut for parsing
    only, ``[Interface]`` keys wg(8) does not know are taken out, every other line is kept
    verbatim."""
    kept: list[str] = []
    addresses: list[str] = []
    dns: list[str] = []
    allowed: list[str] = []
    mtu: int | None = None
    section = ""
    for line in text.splitlines():
        stripped = line.split("#", 1)[0].strip()
        key, sep, value = stripped.partition("=")
        key, value = key.strip().lower(), value.strip()
        if stripped.startswith("["):
            section = stripped.lower()
        elif sep and section == "[interface]" and key in WG_QUICK_ONLY:
            if key == "address":
                addresses += _values(value)
            elif key == "dns":
                dns += _values(value)
            elif key == "mtu":
                mtu = int(value)
            continue
        elif sep and section == "[peer]" and key == "allowedips":
            allowed += _values(value)
        kept.append(line)
    return WgQuickConfig("\n".join(kept) + "\n", tuple(addresses), tuple(dns), mtu, tuple(allowed))


def with_private_key(setconf: str, private_key: str) -> str:
    """Put ``PrivateKey`` under ``[Interface]`` (the exported file leaves it to the device)."""
    lines = setconf.splitlines()
    for line in lines:
        if line.split("#", 1)[0].replace(" ", "").lower().startswith("privatekey="):
            raise ValueError("the configuration already has a PrivateKey")
    for index, line in enumerate(lines):
        if line.strip().lower() == "[interface]":
            lines.insert(index + 1, f"PrivateKey = {private_key}")
            return "\n".join(lines) + "\n"
    raise ValueError("no [Interface] section")


def start_wireguard_go(ns: str, ifname: str) -> None:
    """``ip netns exec NS wireguard-go IFNAME`` (daemonizes), then wait for its socket."""
    sock = SOCKET_DIR / f"{check_ifname(ifname)}.sock"
    subprocess.run(
        ["ip", "netns", "exec", ns, "wireguard-go", ifname],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
        check=True,
        env=daemon_env(),
        start_new_session=True,
    )
    deadline = time.monotonic() + TIMEOUT
    while not sock.exists():
        if time.monotonic() > deadline:
            raise NetnsError(f"wireguard-go {ifname} never opened {sock}")
        time.sleep(0.02)


def bring_up_client(ns: str, ifname: str, config_text: str, private_key: str) -> WgQuickConfig:
    """An unmodified WireGuard client, as wg-quick would bring it up from ``config_text``:
    wireguard-go, ``wg setconf`` of the stripped file plus the private key, the addresses,
    the MTU, the link, and a route per AllowedIPs prefix (a /0 goes through wg-quick's fwmark
    table so the tunnel's own UDP still leaves by the main table). DNS is ignored."""
    config = parse_wg_quick(config_text)
    for cidr in config.addresses:
        check_test_network(cidr)
    start_wireguard_go(ns, ifname)
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(with_private_key(config.setconf, private_key))
        handle.flush()
        run(["wg", "setconf", ifname, handle.name], netns=ns)
    for cidr in config.addresses:
        add_address(ns, ifname, cidr)
    if config.mtu:
        run(["ip", "-n", ns, "link", "set", "dev", ifname, "mtu", str(config.mtu)])
    run(["ip", "-n", ns, "link", "set", "dev", ifname, "up"])
    full_tunnel = False
    for cidr in config.allowed_ips:
        net = ipaddress.ip_network(cidr, strict=False)
        if net.prefixlen == 0:
            full_tunnel = True
            family = f"-{net.version}"
            add_route(ns, str(net), dev=ifname, table=WG_QUICK_TABLE)
            table = str(WG_QUICK_TABLE)
            run(["ip", family, "-n", ns, "rule", "add", "not", "fwmark", table, "table", table])
            run(
                [
                    "ip",
                    family,
                    "-n",
                    ns,
                    "rule",
                    "add",
                    "table",
                    "main",
                    "suppress_prefixlength",
                    "0",
                ]
            )
        else:
            add_route(ns, str(net), dev=ifname)
    if full_tunnel:
        run(["wg", "set", ifname, "fwmark", str(WG_QUICK_TABLE)], netns=ns)
        run(["sysctl", "-q", "-w", "net.ipv4.conf.all.src_valid_mark=1"], netns=ns)
    return config


# --- topology --------------------------------------------------------------------------------


class Topology:
    """Namespaces, wires and wireguard-go daemons of one test, always torn down on exit."""

    def __init__(self) -> None:
        self.namespaces: list[str] = []
        self.interfaces: list[str] = []
        self.errors: list[str] = []

    def __enter__(self) -> Topology:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        if exc is None and self.errors:
            raise NetnsError("cleanup failed: " + "; ".join(self.errors))

    def namespace(self) -> str:
        name = create_namespace()
        self.namespaces.append(name)
        return name

    def veth(self, ns_a: str, ns_b: str) -> tuple[str, str]:
        suffix = secrets.token_hex(3)
        name_a, name_b = f"tdva{suffix}", f"tdvb{suffix}"
        add_veth(ns_a, name_a, ns_b, name_b)
        return name_a, name_b

    def wg_ifname(self) -> str:
        """An unused ``wgt<port>`` name (no socket, no daemon), tracked for cleanup."""
        for _ in range(100):
            name = f"wgt{secrets.randbelow(20000) + 40000}"
            if name in self.interfaces or (SOCKET_DIR / f"{name}.sock").exists():
                continue
            if wireguard_go_pids(name):
                continue
            self.interfaces.append(name)
            return name
        raise NetnsError("no free wgt<port> name")

    def track(self, ifname: str) -> None:
        if ifname not in self.interfaces:
            self.interfaces.append(ifname)

    def close(self) -> None:
        for ifname in self.interfaces:
            try:
                pids = wireguard_go_pids(ifname)
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                if not _wait_gone(pids, 5.0):
                    self.errors.append(f"wireguard-go {ifname} survived SIGKILL")
                (SOCKET_DIR / f"{ifname}.sock").unlink(missing_ok=True)
            except (OSError, subprocess.SubprocessError, TongdaoError) as exc:
                self.errors.append(f"{ifname}: {exc}")
        for name in self.namespaces:
            try:
                delete_namespace(name)
            except (OSError, subprocess.SubprocessError, TongdaoError) as exc:
                self.errors.append(f"{name}: {exc}")
        self.interfaces.clear()
        self.namespaces.clear()


def leftovers(namespaces: Sequence[str], interfaces: Sequence[str]) -> list[str]:
    """What of these namespaces and wireguard-go interfaces still exists (to test cleanup)."""
    present = list_namespaces()
    found = [n for n in namespaces if n in present]
    for ifname in interfaces:
        if wireguard_go_pids(ifname):
            found.append(f"wireguard-go {ifname}")
        if (SOCKET_DIR / f"{ifname}.sock").exists():
            found.append(f"socket {ifname}")
    return found
