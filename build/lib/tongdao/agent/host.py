"""Addresses, routes and policy rules on the gateway host, through iproute2 (``ip -json``).

Everything here converges ("ensure"): adding what is missing, replacing what differs,
removing what is ours and no longer wanted; a second run changes nothing. ``netns`` runs the
same commands inside a network namespace (tests and the demo).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterable, Sequence
from typing import Any

from tongdao.errors import TongdaoError

RULE_PRIORITY_BASE = 10_000  # our `ip rule`s: priority = base + table % 20000


class HostError(TongdaoError):
    """An iproute2 command failed."""


def _ip(netns: str | None, *args: str, check: bool = True) -> str:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise HostError(f"{' '.join(argv)}: {result.stderr.strip()}")
    return result.stdout


def _ip_batch(
    netns: str | None,
    commands: Sequence[Sequence[str]],
    *,
    family: str | None = None,
    check: bool = True,
) -> None:
    """Several ``ip`` commands in one process (``ip -batch -``): a fresh interface needs
    several, and each process costs a few milliseconds. A batch line takes no options, so
    ``family`` (``-4``/``-6``) holds for the whole batch; without it, iproute2 takes the family
    from the address or prefix each command names. ``check``: stop at the first failure and
    raise; otherwise run every command (``-force``) and ignore failures (deletions of what
    may be gone already)."""
    if not commands:
        return
    argv = ["ip", *(["-n", netns] if netns else []), *([family] if family else [])]
    argv += [*([] if check else ["-force"]), "-batch", "-"]
    script = "".join(" ".join(command) + "\n" for command in commands)
    result = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise HostError(f"{' '.join(argv)}: {result.stderr.strip()} (commands: {script!r})")


def _ip_json(netns: str | None, *args: str) -> list[dict[str, Any]]:
    argv = ["ip", *(["-n", netns] if netns else []), "-json", *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        if "does not exist" in result.stderr:  # an empty routing table is not there yet
            return []
        raise HostError(f"{' '.join(argv)}: {result.stderr.strip()}")
    out = result.stdout
    data = json.loads(out) if out.strip() else []
    return data if isinstance(data, list) else []


def link_up(ifname: str, netns: str | None = None) -> None:
    _ip(netns, "link", "set", "dev", ifname, "up")


def ensure_addresses(ifname: str, wanted: Sequence[str], netns: str | None = None) -> None:
    """Exactly ``wanted`` (CIDR interface addresses) on the interface, link-local aside."""
    current: set[str] = set()
    for link in _ip_json(netns, "address", "show", "dev", ifname):
        for addr in link.get("addr_info", []):
            if addr.get("scope") == "link":
                continue
            current.add(f"{addr['local']}/{addr['prefixlen']}")
    want = {str(ipaddress.ip_interface(a)) for a in wanted}
    _ip_batch(
        netns,
        [["address", "replace", a, "dev", ifname] for a in sorted(want - current)]
        + [["address", "del", a, "dev", ifname] for a in sorted(current - want)],
    )


def table_routes(table: int, netns: str | None = None) -> dict[str, tuple[str, str]]:
    """prefix → (device, protocol) of the routes in one table, both families."""
    routes: dict[str, tuple[str, str]] = {}
    for family in ("-4", "-6"):
        for route in _ip_json(netns, family, "route", "show", "table", str(table)):
            dst = route.get("dst", "")
            if dst == "default":
                dst = "0.0.0.0/0" if family == "-4" else "::/0"
            elif "/" not in dst:
                dst += "/32" if family == "-4" else "/128"
            prefix = str(ipaddress.ip_network(dst, strict=False))
            routes[prefix] = (route.get("dev", ""), str(route.get("protocol", "")))
    return routes


def ensure_table(
    ifname: str,
    table: int,
    prefixes: Iterable[str],
    netns: str | None = None,
    *,
    exclusive: bool = True,
) -> None:
    """Table ``table`` routes exactly ``prefixes`` into ``ifname``. ``exclusive=False`` is for
    a shared table (a connector's main table): only routes into ``ifname`` that the kernel did
    not add itself are ours to remove."""
    want = {str(ipaddress.ip_network(p, strict=False)) for p in prefixes}
    current = table_routes(table, netns)
    if not exclusive:
        current = {p: r for p, r in current.items() if r[0] == ifname and r[1] != "kernel"}
    _ip_batch(
        netns,
        [
            ["route", "replace", prefix, "dev", ifname, "table", str(table)]
            for prefix in sorted(want)
            if current.get(prefix, ("", ""))[0] != ifname
        ],
    )
    _ip_batch(
        netns,
        [["route", "del", prefix, "table", str(table)] for prefix in sorted(set(current) - want)],
        check=False,
    )


def flush_table(table: int, netns: str | None = None) -> None:
    for family in ("-4", "-6"):
        _ip(netns, family, "route", "flush", "table", str(table), check=False)


def rule_priority(table: int) -> int:
    return RULE_PRIORITY_BASE + table % 20_000


def our_rules(netns: str | None = None) -> dict[tuple[str, str], int]:
    """(family flag, iif) → table of the `ip rule`s in our priority band."""
    found: dict[tuple[str, str], int] = {}
    for family in ("-4", "-6"):
        for rule in _ip_json(netns, family, "rule", "show"):
            prio = int(rule.get("priority", 0))
            if RULE_PRIORITY_BASE <= prio < RULE_PRIORITY_BASE + 20_000 and "iif" in rule:
                table = rule.get("table", "0")
                found[(family, rule["iif"])] = int(table) if str(table).isdigit() else -1
    return found


def ensure_rules(wanted: dict[str, int], netns: str | None = None) -> None:
    """For each interface → table in ``wanted``: `ip rule iif IF lookup TABLE` (both families);
    our rules for other interfaces are removed."""
    current = our_rules(netns)
    for family in ("-4", "-6"):
        stale: list[list[str]] = []
        adds: list[list[str]] = []
        for ifname, table in sorted(wanted.items()):
            if current.get((family, ifname)) == table:
                continue
            if (family, ifname) in current:
                stale.append(["rule", "del", "iif", ifname])
            lookup = ["lookup", str(table), "priority", str(rule_priority(table))]
            adds.append(["rule", "add", "iif", ifname, *lookup])
        for fam, ifname in sorted(current):
            if fam == family and ifname not in wanted:
                priority = str(rule_priority(current[(fam, ifname)]))
                stale.append(["rule", "del", "iif", ifname, "priority", priority])
        _ip_batch(netns, stale, family=family, check=False)
        _ip_batch(netns, adds, family=family)


def enable_forwarding(netns: str | None = None) -> None:
    keys = ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
    argv = [*(["ip", "netns", "exec", netns] if netns else []), "sysctl", "-qw", *keys]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise HostError(f"sysctl {' '.join(keys)}: {result.stderr.strip()}")
