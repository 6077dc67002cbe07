"""Rule pi.notice_and_consent in the data plane: a user without a current consent to transfer
abroad is not routed abroad.

The compiler (:func:`tongdao.gateway.service.compile_desired`) keeps such a user's devices off
every PoP abroad (no peer there, not in the allowed IPs of a peer PoP there) and, at a PoP in
China, takes their addresses out of every policy pair whose other side is abroad with
:func:`withhold_abroad` (pure: CIDR arithmetic on the compiled rules), so the gateway in China
drops the packets before they cross the border. A broad policy prefix that covers a withheld
address is split around it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

from tongdao.gateway.desired import PolicyRule

Net = ipaddress.IPv4Network | ipaddress.IPv6Network

ANYWHERE: tuple[str, ...] = ("0.0.0.0/0", "::/0")


@lru_cache(maxsize=1 << 16)
def _net(cidr: str) -> Net:
    return ipaddress.ip_network(cidr, strict=False)


def _within(inner: Net, outer: Net) -> bool:
    return inner.version == outer.version and inner.subnet_of(outer)  # type: ignore[arg-type]


def _exclude(net: Net, holes: Iterable[Net]) -> list[Net]:
    """``net`` without ``holes`` (each inside ``net``), as few CIDRs as it takes."""
    pieces: list[Net] = [net]
    for hole in holes:
        out: list[Net] = []
        for piece in pieces:
            if _within(hole, piece):
                out.extend(piece.address_exclude(hole))  # type: ignore[arg-type]
            elif not _within(piece, hole):
                out.append(piece)
        pieces = out
    return pieces


class Region:
    """A set of networks; host routes (thousands of devices) are looked up by hash."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        nets = {_net(c) for c in cidrs}
        self.hosts = {n for n in nets if n.prefixlen == n.max_prefixlen}
        self.wide = [n for n in nets if n.prefixlen != n.max_prefixlen]

    def __bool__(self) -> bool:
        return bool(self.hosts or self.wide)

    def covers(self, net: Net) -> bool:
        return net in self.hosts or any(_within(net, w) for w in self.wide)

    def holes_in(self, net: Net) -> list[Net]:
        if net.prefixlen == net.max_prefixlen:
            return []
        return [h for h in (*self.hosts, *self.wide) if _within(h, net)]


def split(cidrs: Iterable[str], region: Region) -> tuple[list[str], list[str]]:
    """``cidrs`` cut into what lies inside ``region`` and what lies outside (same space)."""
    inside: list[str] = []
    outside: list[str] = []
    for cidr in cidrs:
        net = _net(cidr)
        if region.covers(net):
            inside.append(cidr)
            continue
        holes = region.holes_in(net)
        if not holes:
            outside.append(cidr)
            continue
        inside.extend(str(h) for h in holes)
        outside.extend(str(p) for p in _exclude(net, holes))
    return inside, outside


def _rule(rule: PolicyRule, src: Iterable[str], dst: Iterable[str]) -> PolicyRule | None:
    s, d = tuple(sorted(set(src))), tuple(sorted(set(dst)))
    if not s or not d:
        return None
    return PolicyRule(src=s, dst=d, protocol=rule.protocol, ports=rule.ports)


def withhold_abroad(
    rules: Sequence[PolicyRule], held: Iterable[str], abroad: Iterable[str]
) -> tuple[PolicyRule, ...]:
    """The rules without any pair between a ``held`` address (a device of a user who has not
    consented to transfer abroad) and an ``abroad`` network, either way. Unaffected rules are
    returned as they are (the same objects)."""
    abroad_nets = Region(abroad)
    if not abroad_nets:
        return tuple(rules)
    held_nets = Region(held)
    if not held_nets:
        return tuple(rules)
    out: list[PolicyRule] = []
    for rule in rules:
        src_held, src_rest = split(rule.src, held_nets)
        dst_held, dst_rest = split(rule.dst, held_nets)
        src_abroad, src_other = split(src_rest, abroad_nets)
        dst_abroad, dst_other = split(dst_rest, abroad_nets)
        if not (src_held and dst_abroad) and not (src_abroad and dst_held):
            out.append(rule)
            continue
        # Allowed: other → anything; held → held or other; abroad → abroad or other.
        for part in (
            _rule(rule, src_other, [*dst_held, *dst_abroad, *dst_other]),
            _rule(rule, src_held, [*dst_held, *dst_other]),
            _rule(rule, src_abroad, [*dst_abroad, *dst_other]),
        ):
            if part is not None:
                out.append(part)
    return tuple(out)
