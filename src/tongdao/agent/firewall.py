"""The gateway's firewall: tenant isolation and default-deny access policy in nftables.

Everything lives in ONE table, ``inet tongdao``; no other table on the host is read or touched
(besides ``inet tongdao_xb``, the cross-border counters of :mod:`tongdao.agent.xborder`, which
are changed in place so that their values survive). Quotas (``compile_quota``) add a chain of
their own to this table.

Compiled layout (``compile_ruleset``)::

    table inet tongdao {
        set ifaces { type ifname }                        # every tenant interface
        map dispatch { type ifname : verdict }            # "wgt51820" : jump tenant_wgt51820

        chain zone_in  { hook prerouting priority raw
            udp dport { 51820, ... } notrack accept       # the tunnels' own UDP: untracked
            ct zone set iifname map { "wgt51820" : 51820, ... } }      # conntrack zone per
        chain zone_out { hook output priority raw         # tenant interface, so that two
            udp sport { 51820, ... } notrack accept       # tenants using the same addresses
            ct zone set oifname map { ... } }             # never share a conntrack entry

        chain forward { hook forward priority filter; policy drop
            iifname vmap @dispatch                        # entered a tenant interface: its
                                                          # chain always ends in a verdict
            iifname "wgt*" drop                           # a tenant interface the table does
            oifname "wgt*" drop                           # not know (yet / any more): nothing
                                                          # in or out of it is forwarded
            oifname != @ifaces accept                     # not ours: host forwarding unaffected
        }                                                 # anything else into ours: dropped

        chain tenant_wgt51820 {
            oifname != "wgt51820" drop                    # leave where they came in
            ct state established,related accept          # replies, and ICMP errors of allowed flows
            ct state invalid drop
            ip saddr . ip daddr @wgt51820_any4 accept
            ip saddr . ip daddr . meta l4proto . th dport @wgt51820_svc4 accept
            icmp type echo-request ip saddr . ip daddr @wgt51820_icmp4 accept
            (the same three for ip6 / icmpv6)
            drop
        }
        set wgt51820_any4 { type ipv4_addr . ipv4_addr; flags interval }
        set wgt51820_svc4 { type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags interval }
        ...
    }

Every packet does a fixed number of lookups whatever the size of the policy: one or two
interface lookups, and at most six concatenated-set lookups (``pipapo`` sets, whose lookup cost
does not grow with the number of rules in the way a rule list does). A tenant packet leaves the
forward chain at its jump and never meets the two ``wgt*`` rules; other packets pay two prefix
compares for them (``"wgt*"`` is nft's wildcard: the JSON form spells it the same, a literal
star would be ``"wgt\\*"``).

The ``wgt*`` rules close a window the agent cannot avoid: it creates a new tenant interface and
sets its peers while (or before) this table is updated, and removes an interface only after the
table no longer lists it. Without them such an interface, in neither ``@dispatch`` nor
``@ifaces``, would be "not ours": its traffic would be forwarded to the uplink (a tenant's
routing table has no default route, so its lookups fall through to the main table) and the
host's traffic forwarded into it.

Policy rules are expanded into set elements (src × dst × ports, per address family; a rule whose
src and dst share no family matches nothing). The kernel refuses overlapping elements in
concatenated interval sets, so the elements of each set are normalised into a canonical,
disjoint, sorted cover of the same space (``_disjoint``): the same policy always compiles to the
same JSON, whatever the order of its rules. Expansion is bounded by ``MAX_ELEMENTS_PER_TENANT``
(``FirewallLimitError`` beyond it).

Applying (``apply_ruleset``) is one ``nft -j -f -`` transaction: ``add table`` (a no-op when it
exists), ``delete table``, then the whole new table. The kernel commits it atomically: there is
never a moment without the table, a failure leaves the previous table in place, and applying the
same ruleset twice leaves exactly one copy. ``plan_update`` is the cheaper path for a policy-only
change: when the table's shape (tenants, chains, rules) is unchanged it emits only ``delete
element`` / ``add element`` commands, again in one transaction.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tongdao.errors import TongdaoError
from tongdao.gateway.desired import TENANT_IFNAME_PREFIX, PolicyRule, TenantInterface

FAMILY: Final = "inet"
TABLE: Final = "tongdao"
MAX_ELEMENTS_PER_TENANT: Final = 100_000
"""Upper bound on the expanded src × dst × ports elements of one tenant's policy (all six sets
together, before normalisation, and again after it)."""
NFT_TIMEOUT_SECONDS: Final = 120.0

TENANT_WILDCARD: Final = TENANT_IFNAME_PREFIX + "*"
"""nft's wildcard (a prefix compare) for every tenant interface name, known to the table or not."""
IFNAME_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,14}$")
NETNS_RE: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
PORT_RE: Final = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")

PROTO_NUMBERS: Final = {"tcp": 6, "udp": 17}
PROTO_NAMES: Final = {number: name for name, number in PROTO_NUMBERS.items()}

JSON = dict[str, Any]
Interval = tuple[int, int]
Box = tuple[Interval, ...]


class FirewallError(TongdaoError):
    """Base of the firewall layer's errors."""


class FirewallCompileError(FirewallError):
    """The desired state cannot be compiled (bad interface name, address, port, ...)."""


class FirewallLimitError(FirewallCompileError):
    """A tenant's policy expands into more set elements than ``MAX_ELEMENTS_PER_TENANT``."""


class NftError(FirewallError):
    """``nft`` refused a command or could not be run; ``stderr`` holds its message."""

    def __init__(self, message: str, stderr: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.returncode = returncode


# --------------------------------------------------------------------------- names


def tenant_chain(ifname: str) -> str:
    return f"tenant_{ifname}"


def set_name(ifname: str, kind: str, version: int) -> str:
    """``kind`` is ``any``, ``svc`` or ``icmp``; ``version`` 4 or 6."""
    return f"{ifname}_{kind}{version}"


SET_KINDS: Final = ("any", "svc", "icmp")


def _set_type(kind: str, version: int) -> list[str]:
    addr = "ipv4_addr" if version == 4 else "ipv6_addr"
    if kind == "svc":
        return [addr, addr, "inet_proto", "inet_service"]
    return [addr, addr]


# --------------------------------------------------------------------------- expansion


@dataclass(frozen=True)
class _Expanded:
    """One tenant's policy as boxes, keyed by (kind, ip version)."""

    boxes: dict[tuple[str, int], list[Box]]

    def count(self) -> int:
        return sum(len(b) for b in self.boxes.values())


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_networks(values: Iterable[str], where: str) -> list[Network]:
    out: list[Network] = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value, strict=True))
        except ValueError as exc:
            raise FirewallCompileError(f"{where}: {value!r} is not a CIDR ({exc})") from exc
    return out


def _parse_ports(rule: PolicyRule, where: str) -> list[Interval]:
    if rule.protocol in ("any", "icmp"):
        if rule.ports:
            raise FirewallCompileError(f"{where}: ports need protocol tcp or udp")
        return []
    if not rule.ports:
        return [(0, 65535)]
    out: list[Interval] = []
    for text in rule.ports:
        match = PORT_RE.match(text)
        if match is None:
            raise FirewallCompileError(f"{where}: bad port {text!r} (want 443 or 8000-8100)")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if not 0 <= low <= high <= 65535:
            raise FirewallCompileError(f"{where}: bad port range {text!r}")
        out.append((low, high))
    return out


def _span(net: Network) -> Interval:
    return int(net.network_address), int(net.broadcast_address)


def _expand_tenant(tenant: TenantInterface) -> _Expanded:
    boxes: dict[tuple[str, int], list[Box]] = {
        (kind, version): [] for kind in SET_KINDS for version in (4, 6)
    }
    total = 0
    for index, rule in enumerate(tenant.policy):
        where = f"{tenant.ifname} policy[{index}]"
        srcs = _parse_networks(rule.src, where)
        dsts = _parse_networks(rule.dst, where)
        ports = _parse_ports(rule, where)
        kind = {"any": "any", "icmp": "icmp"}.get(rule.protocol, "svc")
        for version in (4, 6):
            fsrc = [_span(n) for n in srcs if n.version == version]
            fdst = [_span(n) for n in dsts if n.version == version]
            size = len(fsrc) * len(fdst) * (len(ports) if kind == "svc" else 1)
            total += size
            if total > MAX_ELEMENTS_PER_TENANT:
                raise FirewallLimitError(
                    f"{tenant.ifname}: policy expands to more than "
                    f"{MAX_ELEMENTS_PER_TENANT} set elements (at policy[{index}])"
                )
            target = boxes[(kind, version)]
            if kind == "svc":
                proto = PROTO_NUMBERS[rule.protocol]
                target.extend((s, d, (proto, proto), p) for s in fsrc for d in fdst for p in ports)
            else:
                target.extend((s, d) for s in fsrc for d in fdst)
    return _Expanded({key: _disjoint(value) for key, value in boxes.items()})


def _disjoint(boxes: Sequence[Box]) -> list[Box]:
    """A canonical list of disjoint boxes covering exactly the union of ``boxes``.

    Sweep the first dimension: cut it at every box boundary, normalise the boxes covering each
    piece recursively over the remaining dimensions, and merge neighbouring pieces whose
    remainders are equal. Deterministic and independent of input order; for policies without
    overlaps it returns the boxes themselves (sorted).
    """
    unique = sorted(set(boxes))
    if not unique:
        return []
    if len(unique[0]) == 1:
        merged: list[Interval] = []
        for ((low, high),) in unique:
            if merged and low <= merged[-1][1] + 1:
                if high > merged[-1][1]:
                    merged[-1] = (merged[-1][0], high)
            else:
                merged.append((low, high))
        return [(iv,) for iv in merged]

    cuts = sorted({b[0][0] for b in unique} | {b[0][1] + 1 for b in unique})
    # boxes sorted by their first interval's start; walk the elementary pieces of dimension 0
    out: list[Box] = []
    active: list[Box] = []
    next_box = 0
    previous: tuple[Interval, list[Box]] | None = None
    for left, right in itertools.pairwise(cuts):
        while next_box < len(unique) and unique[next_box][0][0] <= left:
            active.append(unique[next_box])
            next_box += 1
        active = [b for b in active if b[0][1] >= left]
        rest = _disjoint([b[1:] for b in active]) if active else []
        piece = (left, right - 1)
        if previous is not None and previous[0][1] + 1 == left and previous[1] == rest:
            previous = ((previous[0][0], piece[1]), rest)
            continue
        if previous is not None:
            out.extend((previous[0], *r) for r in previous[1])
        previous = (piece, rest)
    if previous is not None:
        out.extend((previous[0], *r) for r in previous[1])
    return out


# --------------------------------------------------------------------------- rendering


def _render_addr(interval: Interval, version: int) -> Any:
    low, high = interval
    make = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    if low == high:
        return str(make(low))
    size = high - low + 1
    bits = 32 if version == 4 else 128
    if size & (size - 1) == 0 and low % size == 0:
        return {"prefix": {"addr": str(make(low)), "len": bits - (size.bit_length() - 1)}}
    return {"range": [str(make(low)), str(make(high))]}


def _render_port(interval: Interval) -> Any:
    low, high = interval
    return low if low == high else {"range": [low, high]}


def _render_box(box: Box, kind: str, version: int) -> JSON:
    parts: list[Any] = [_render_addr(box[0], version), _render_addr(box[1], version)]
    if kind == "svc":
        proto_low, proto_high = box[2]
        if proto_low != proto_high or proto_low not in PROTO_NAMES:
            raise FirewallCompileError(f"internal: protocol {box[2]} in a service set")
        parts.append(PROTO_NAMES[proto_low])
        parts.append(_render_port(box[3]))
    return {"concat": parts}


def _meta(key: str) -> JSON:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> JSON:
    return {"payload": {"protocol": protocol, "field": field}}


def _match(left: Any, right: Any, op: str = "==") -> JSON:
    return {"match": {"op": op, "left": left, "right": right}}


def _rule(chain: str, *expr: JSON) -> JSON:
    return {"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "expr": list(expr)}}}


def _validate(tenants: Sequence[TenantInterface]) -> list[TenantInterface]:
    seen_names: set[str] = set()
    seen_zones: set[int] = set()
    for tenant in tenants:
        if not IFNAME_RE.match(tenant.ifname):
            raise FirewallCompileError(f"interface name {tenant.ifname!r} is not allowed")
        if tenant.ifname in seen_names:
            raise FirewallCompileError(f"interface {tenant.ifname} appears twice")
        if not 1 <= tenant.listen_port <= 65535:
            raise FirewallCompileError(f"{tenant.ifname}: listen port out of range")
        if tenant.listen_port in seen_zones:
            raise FirewallCompileError(f"listen port {tenant.listen_port} appears twice")
        seen_names.add(tenant.ifname)
        seen_zones.add(tenant.listen_port)
    return sorted(tenants, key=lambda t: t.ifname)


def _tenant_rules(ifname: str) -> list[JSON]:
    chain = tenant_chain(ifname)
    rules = [
        _rule(chain, _match(_meta("oifname"), ifname, "!="), {"drop": None}),
        _rule(
            chain,
            _match({"ct": {"key": "state"}}, ["established", "related"], "in"),
            {"accept": None},
        ),
        _rule(chain, _match({"ct": {"key": "state"}}, "invalid", "in"), {"drop": None}),
    ]
    for version, proto, icmp in ((4, "ip", "icmp"), (6, "ip6", "icmpv6")):
        pair = {"concat": [_payload(proto, "saddr"), _payload(proto, "daddr")]}
        service = {
            "concat": [
                _payload(proto, "saddr"),
                _payload(proto, "daddr"),
                _meta("l4proto"),
                _payload("th", "dport"),
            ]
        }
        rules += [
            _rule(chain, _match(pair, "@" + set_name(ifname, "any", version)), {"accept": None}),
            _rule(chain, _match(service, "@" + set_name(ifname, "svc", version)), {"accept": None}),
            _rule(
                chain,
                _match(_payload(icmp, "type"), "echo-request"),
                _match(pair, "@" + set_name(ifname, "icmp", version)),
                {"accept": None},
            ),
        ]
    rules.append(_rule(chain, {"drop": None}))
    return rules


def _zone_rule(chain: str, key: str, tenants: Sequence[TenantInterface]) -> JSON:
    pairs = [[t.ifname, t.listen_port] for t in tenants]
    return _rule(
        chain,
        {
            "mangle": {
                "key": {"ct": {"key": "zone"}},
                "value": {"map": {"key": _meta(key), "data": {"set": pairs}}},
            }
        },
    )


REPLACING: Final = ("add", "delete", "add")
"""How a full batch starts, on our table: add (a no-op when it exists), delete, add afresh."""


def _table_command(verb: str) -> JSON:
    return {verb: {"table": {"family": FAMILY, "name": TABLE}}}


def compile_ruleset(tenants: Sequence[TenantInterface]) -> JSON:
    """Compile the tenants' isolation and policy into one atomic nft JSON batch (pure)."""
    ordered = _validate(tenants)
    expanded = {t.ifname: _expand_tenant(t) for t in ordered}
    for ifname, exp in expanded.items():
        if exp.count() > MAX_ELEMENTS_PER_TENANT:
            raise FirewallLimitError(
                f"{ifname}: policy normalises to {exp.count()} set elements "
                f"(limit {MAX_ELEMENTS_PER_TENANT})"
            )

    cmds: list[JSON] = [_table_command(verb) for verb in REPLACING]
    base = {"family": FAMILY, "table": TABLE}
    cmds.append({"add": {"set": {**base, "name": "ifaces", "type": "ifname"}}})
    cmds.append({"add": {"map": {**base, "name": "dispatch", "type": "ifname", "map": "verdict"}}})
    for t in ordered:
        cmds.append({"add": {"chain": {**base, "name": tenant_chain(t.ifname)}}})
        for kind in SET_KINDS:
            for version in (4, 6):
                cmds.append(
                    {
                        "add": {
                            "set": {
                                **base,
                                "name": set_name(t.ifname, kind, version),
                                "type": _set_type(kind, version),
                                "flags": ["interval"],
                            }
                        }
                    }
                )
    if ordered:
        cmds.append(
            {"add": {"element": {**base, "name": "ifaces", "elem": [t.ifname for t in ordered]}}}
        )
        cmds.append(
            {
                "add": {
                    "element": {
                        **base,
                        "name": "dispatch",
                        "elem": [
                            [t.ifname, {"jump": {"target": tenant_chain(t.ifname)}}]
                            for t in ordered
                        ],
                    }
                }
            }
        )
    cmds += _element_commands("add", {t.ifname: expanded[t.ifname] for t in ordered})

    hooks = (
        ("zone_in", "prerouting", -300, "iifname"),
        ("zone_out", "output", -300, "oifname"),
    )
    for name, hook, prio, _ in hooks:
        cmds.append(
            {
                "add": {
                    "chain": {
                        **base,
                        "name": name,
                        "type": "filter",
                        "hook": hook,
                        "prio": prio,
                        "policy": "accept",
                    }
                }
            }
        )
    cmds.append(
        {
            "add": {
                "chain": {
                    **base,
                    "name": "forward",
                    "type": "filter",
                    "hook": "forward",
                    "prio": 0,
                    "policy": "drop",
                }
            }
        }
    )
    if ordered:
        # The tunnels' own UDP (to and from the listen ports) is not tracked: connection
        # tracking earns nothing there and would cost two lookups per tunnelled packet on top
        # of the one for the packet inside.
        ports: list[int] = sorted({t.listen_port for t in ordered})
        for name, _, _, key in hooks:
            field = "dport" if name == "zone_in" else "sport"
            cmds.append(
                _rule(
                    name,
                    _match(_payload("udp", field), {"set": ports}),
                    {"notrack": None},
                    {"accept": None},  # done with this chain: no zone lookup for these
                )
            )
            cmds.append(_zone_rule(name, key, ordered))
    # Ours first: a tenant packet costs one map lookup here (its chain always ends in a
    # verdict), anything else two prefix compares and one more set lookup. A ``wgt…``
    # interface not (yet, or no longer) in the table forwards nothing either way.
    cmds.append(_rule("forward", {"vmap": {"key": _meta("iifname"), "data": "@dispatch"}}))
    for key in ("iifname", "oifname"):
        cmds.append(_rule("forward", _match(_meta(key), TENANT_WILDCARD), {"drop": None}))
    cmds.append(_rule("forward", _match(_meta("oifname"), "@ifaces", "!="), {"accept": None}))
    for t in ordered:
        cmds += with_crossborder_rates(t, _tenant_rules(t.ifname))
    cmds += compile_quota(ordered)
    return {"nftables": cmds}


# --- cross-border rate per tenant (rule crossborder.tenant_authorised) -----------------------
# A peer PoP across the border carries ``link_rate_mbps``: the tenant's approved cross-border
# bandwidth. Traffic of the tenant's chain to the addresses behind that peer, and from them, is
# held to that rate, each direction by its own token bucket; what goes over it is dropped.
# These rules come right after the chain's first rule, before the accepts of established
# flows, so every packet of the flows across the border is counted.
CROSSBORDER_BURST_SECONDS: Final = 0.05
"""The bucket holds this much of a second's worth at the rate (at least 64 KiB)."""


def crossborder_rate_rules(tenant: TenantInterface) -> list[JSON]:
    """Two rules per rate-limited peer of the tenant (to it, from it), in peer order."""
    chain = tenant_chain(tenant.ifname)
    rules: list[JSON] = []
    for peer in tenant.peers:
        if peer.link_rate_mbps is None or not peer.allowed_ips:
            continue
        rate = peer.link_rate_mbps * 125_000  # Mbit/s -> bytes/s
        burst = max(65_536, int(rate * CROSSBORDER_BURST_SECONDS))
        nets = _parse_networks(peer.allowed_ips, f"{tenant.ifname}: peer {peer.ref}")
        for version, proto in ((4, "ip"), (6, "ip6")):
            elems = [
                {"prefix": {"addr": str(n.network_address), "len": n.prefixlen}}
                for n in nets
                if n.version == version
            ]
            if not elems:
                continue
            for field in ("daddr", "saddr"):
                rules.append(
                    _rule(
                        chain,
                        _match(_payload(proto, field), {"set": elems}),
                        {
                            "limit": {
                                "rate": rate,
                                "rate_unit": "bytes",
                                "per": "second",
                                "burst": burst,
                                "burst_unit": "bytes",
                                "inv": True,
                            }
                        },
                        {"drop": None},
                    )
                )
    return rules


def with_crossborder_rates(tenant: TenantInterface, rules: list[JSON]) -> list[JSON]:
    """The tenant chain's rules with the cross-border rate rules after its first one."""
    extra = crossborder_rate_rules(tenant)
    return [*rules[:1], *extra, *rules[1:]] if extra else rules


def _element_commands(verb: str, expanded: dict[str, _Expanded]) -> list[JSON]:
    cmds: list[JSON] = []
    for ifname in sorted(expanded):
        for kind in SET_KINDS:
            for version in (4, 6):
                boxes = expanded[ifname].boxes[(kind, version)]
                if not boxes:
                    continue
                cmds.append(
                    {
                        verb: {
                            "element": {
                                "family": FAMILY,
                                "table": TABLE,
                                "name": set_name(ifname, kind, version),
                                "elem": [_render_box(b, kind, version) for b in boxes],
                            }
                        }
                    }
                )
    return cmds


# --------------------------------------------------------------------------- inspection


def set_elements(ruleset: JSON) -> dict[str, list[Any]]:
    """Elements per set/map name, from a compiled batch or from ``nft -j list`` output."""
    out: dict[str, list[Any]] = {}
    for item in ruleset.get("nftables", []):
        for verb in ("add", None):
            body = item.get(verb, {}) if verb else item
            for key in ("set", "map"):
                if key in body:
                    out.setdefault(body[key]["name"], []).extend(body[key].get("elem", []))
            if verb and "element" in body:
                element = body["element"]
                out.setdefault(element["name"], []).extend(element["elem"])
    return out


def set_element_counts(ruleset: JSON) -> dict[str, int]:
    return {name: len(elems) for name, elems in set_elements(ruleset).items()}


def _structure(ruleset: JSON) -> list[Any]:
    """The batch without its element commands (what must match for an element-only update)."""
    return [item for item in ruleset.get("nftables", []) if "element" not in item.get("add", {})]


def plan_update(old: JSON | None, new: JSON) -> JSON:
    """The cheapest batch that takes the table from compiled ``old`` to compiled ``new``.

    When the shape is unchanged (same tenants, chains, rules and set declarations), only the
    changed policy elements are deleted and added, in one transaction; otherwise (or when the
    current state is unknown, ``old`` is None) the full replacing batch ``new`` is returned.
    ``old`` must be what is actually applied: an agent that is unsure reapplies ``new``.
    """
    if old is None or _structure(old) != _structure(new):
        return new
    before, after = set_elements(old), set_elements(new)
    cmds: list[JSON] = []
    for verb, source, other in (("delete", before, after), ("add", after, before)):
        for name in sorted(set(source) | set(other)):
            keep = {json.dumps(e, sort_keys=True) for e in other.get(name, [])}
            changed = [e for e in source.get(name, []) if json.dumps(e, sort_keys=True) not in keep]
            if changed:
                cmds.append(
                    {
                        verb: {
                            "element": {
                                "family": FAMILY,
                                "table": TABLE,
                                "name": name,
                                "elem": changed,
                            }
                        }
                    }
                )
    return {"nftables": cmds}


# --------------------------------------------------------------------------- nft


def _nft_argv(netns: str | None, *args: str) -> list[str]:
    argv = ["nft", *args]
    if netns is None:
        return argv
    if not NETNS_RE.match(netns):
        raise FirewallError(f"bad network namespace name {netns!r}")
    return ["ip", "netns", "exec", netns, *argv]


def _run_nft(netns: str | None, args: Sequence[str], stdin: str | None = None) -> str:
    argv = _nft_argv(netns, *args)
    try:
        done = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=NFT_TIMEOUT_SECONDS,
            check=False,
        )
    except FileNotFoundError as exc:
        raise NftError(f"cannot run {argv[0]}: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise NftError(f"nft did not finish within {NFT_TIMEOUT_SECONDS:.0f}s") from exc
    if done.returncode != 0:
        message = done.stderr.strip() or done.stdout.strip() or "nft failed"
        raise NftError(f"nft: {message}", stderr=done.stderr, returncode=done.returncode)
    return done.stdout


def apply_ruleset(ruleset: JSON, netns: str | None = None) -> None:
    """Apply a batch from ``compile_ruleset`` / ``plan_update`` in one atomic transaction."""
    if not ruleset.get("nftables"):
        return
    _run_nft(netns, ["-j", "-f", "-"], json.dumps(ruleset))


def install_ruleset(ruleset: JSON, netns: str | None = None) -> None:
    """Apply a full batch from ``compile_ruleset`` when this process does not know what is
    applied (its first apply): create the table in one transaction, and only if that fails
    (the table is there already, say after an agent restart) replace it as ``apply_ruleset``
    does. The same end state either way; creating is cheaper when the table is absent, since
    a transaction that deletes a table makes the kernel wait out an RCU grace period (about
    12 ms here)."""
    commands = ruleset.get("nftables", [])
    if commands[: len(REPLACING)] != [_table_command(verb) for verb in REPLACING]:
        raise FirewallError("install_ruleset wants a full batch from compile_ruleset")
    creating = {"nftables": [_table_command("create"), *commands[len(REPLACING) :]]}
    try:
        _run_nft(netns, ["-j", "-f", "-"], json.dumps(creating))
    except NftError:
        apply_ruleset(ruleset, netns)


def read_ruleset(netns: str | None = None) -> JSON | None:
    """Our table as ``nft -j list table inet tongdao`` shows it, or None when it is absent."""
    probe = _run_nft(netns, ["-j", "list", "tables", FAMILY])
    tables = json.loads(probe).get("nftables", []) if probe.strip() else []
    if not any(item.get("table", {}).get("name") == TABLE for item in tables):
        return None
    listed: JSON = json.loads(_run_nft(netns, ["-j", "list", "table", FAMILY, TABLE]))
    return listed


def remove_ruleset(netns: str | None = None) -> None:
    """Delete our table if present (idempotent, atomic)."""
    batch = {"nftables": [_table_command("add"), _table_command("delete")]}
    _run_nft(netns, ["-j", "-f", "-"], json.dumps(batch))


# --------------------------------------------------------------------------- quotas
# Limits of tongdao.quotas, in a chain of their own that runs before ``forward`` (so a block or
# a rate holds for established flows too):
#
#     chain quota { hook forward priority filter - 10; policy accept
#         iifname . ip saddr @quota_block4 drop             # a blocked peer's traffic, both ways
#         oifname . ip daddr @quota_block4 drop
#         limit name iifname . ip saddr map @quota_up4 drop  # over its group's rate: dropped
#         limit name oifname . ip daddr map @quota_dn4 drop
#         limit name iifname . ip saddr map @quota_t_up4 drop  # a throttled tenant, on top
#         limit name oifname . ip daddr map @quota_t_dn4 drop  # (only while one is)
#         (the same for ip6) }
#     limit q<i>_up { rate over R bytes/second burst B bytes }   # one pair per limit group:
#     limit q<i>_dn { ... }                                       # a user's devices share it
#     limit t<i>_up, t<i>_dn                       # a throttled tenant's peers share one pair
#
# A rate is a policer (nftables' token bucket on the packet path, no queue): packets over the
# rate plus a burst of BURST_SECONDS of it are dropped, which TCP reads as congestion. Each
# direction has its own bucket: a user limited to 10 Mbit/s may send 10 and receive 10. The
# chain and its objects exist only when some peer is limited.
QUOTA_CHAIN: Final = "quota"
QUOTA_PRIORITY: Final = -10
BURST_SECONDS: Final = 0.05
MIN_BURST_BYTES: Final = 64 * 1024


def quota_limit_name(index: int, direction: str) -> str:
    return f"q{index}_{direction}"


def _quota_element(ifname: str, cidr: str) -> tuple[int, JSON]:
    net = ipaddress.ip_network(cidr, strict=False)
    addr: Any = {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}
    return net.version, {"concat": [ifname, addr]}


def _limit_object(base: JSON, name: str, mbps: int) -> JSON:
    rate = mbps * 125_000  # Mbit/s -> bytes a second
    burst = max(int(rate * BURST_SECONDS), MIN_BURST_BYTES)
    return {
        "add": {
            "limit": {
                **base,
                "name": name,
                "rate": rate,
                "per": "second",
                "rate_unit": "bytes",
                "burst": burst,
                "burst_unit": "bytes",
                "inv": True,
            }
        }
    }


def compile_quota(tenants: Sequence[TenantInterface]) -> list[JSON]:
    """The quota chain, sets, maps and limit objects for the peers' limits (pure; empty when
    no peer is limited).

    Two levels of policers: a peer's own group (``q<i>``, in the maps ``quota_up``/``_dn``)
    and, for a tenant over its cap and throttled, the tenant's (``t<i>``, one pair per tenant
    interface, in ``quota_tup``/``_tdn``, present only then). A packet passes both, so a user
    limited below the throttle stays at their limit and the tenant's peers together stay under
    the throttle."""
    blocked: dict[int, list[JSON]] = {4: [], 6: []}
    levels: tuple[str, str] = ("quota", "quota_t")
    groups: dict[str, dict[tuple[str, str], int]] = {lv: {} for lv in levels}  # -> rate
    members: dict[str, dict[tuple[str, str], list[str]]] = {lv: {} for lv in levels}

    def join(level: str, key: tuple[str, str], rate: int, cidrs: Sequence[str]) -> None:
        groups[level][key] = min(groups[level].get(key, rate), rate)
        members[level].setdefault(key, []).extend(cidrs)

    for tenant in sorted(tenants, key=lambda t: t.ifname):
        for peer in tenant.peers:
            if peer.blocked:
                for cidr in peer.allowed_ips:
                    version, elem = _quota_element(tenant.ifname, cidr)
                    blocked[version].append(elem)
                continue
            if peer.rate_mbps:
                key = (tenant.ifname, peer.limit_group or peer.public_key)
                join("quota", key, peer.rate_mbps, peer.allowed_ips)
            if peer.tenant_rate_mbps:
                join("quota_t", (tenant.ifname, ""), peer.tenant_rate_mbps, peer.allowed_ips)
    if not groups["quota"] and not groups["quota_t"] and not blocked[4] and not blocked[6]:
        return []
    base = {"family": FAMILY, "table": TABLE}
    cmds: list[JSON] = []
    used = [lv for lv in levels if lv == "quota" or groups[lv]]
    maps: dict[tuple[str, str, int], list[Any]] = {
        (lv, d, v): [] for lv in used for d in ("up", "dn") for v in (4, 6)
    }
    for level in used:
        prefix = "q" if level == "quota" else "t"
        for index, key in enumerate(sorted(groups[level])):
            for direction in ("up", "dn"):
                name = f"{prefix}{index}_{direction}"
                cmds.append(_limit_object(base, name, groups[level][key]))
                for cidr in members[level][key]:
                    version, elem = _quota_element(key[0], cidr)
                    maps[(level, direction, version)].append([elem, name])
    for version in (4, 6):
        addr = "ipv4_addr" if version == 4 else "ipv6_addr"
        cmds.append(
            {
                "add": {
                    "set": {
                        **base,
                        "name": f"quota_block{version}",
                        "type": ["ifname", addr],
                        "flags": ["interval"],
                    }
                }
            }
        )
        for level in used:
            for direction in ("up", "dn"):
                cmds.append(
                    {
                        "add": {
                            "map": {
                                **base,
                                "name": f"{level}_{direction}{version}",
                                "type": ["ifname", addr],
                                "map": "limit",
                                "flags": ["interval"],
                            }
                        }
                    }
                )
    for version in (4, 6):
        if blocked[version]:
            cmds.append(
                {
                    "add": {
                        "element": {
                            **base,
                            "name": f"quota_block{version}",
                            "elem": blocked[version],
                        }
                    }
                }
            )
        for level in used:
            for direction in ("up", "dn"):
                elems = maps[(level, direction, version)]
                if elems:
                    cmds.append(
                        {
                            "add": {
                                "element": {
                                    **base,
                                    "name": f"{level}_{direction}{version}",
                                    "elem": elems,
                                }
                            }
                        }
                    )
    cmds.append(
        {
            "add": {
                "chain": {
                    **base,
                    "name": QUOTA_CHAIN,
                    "type": "filter",
                    "hook": "forward",
                    "prio": QUOTA_PRIORITY,
                    "policy": "accept",
                }
            }
        }
    )
    for version, proto in ((4, "ip"), (6, "ip6")):
        up = {"concat": [_meta("iifname"), _payload(proto, "saddr")]}
        down = {"concat": [_meta("oifname"), _payload(proto, "daddr")]}
        cmds += [
            _rule(QUOTA_CHAIN, _match(up, f"@quota_block{version}"), {"drop": None}),
            _rule(QUOTA_CHAIN, _match(down, f"@quota_block{version}"), {"drop": None}),
        ]
        for level in used:
            cmds += [
                _rule(
                    QUOTA_CHAIN,
                    {"limit": {"map": {"key": up, "data": f"@{level}_up{version}"}}},
                    {"drop": None},
                ),
                _rule(
                    QUOTA_CHAIN,
                    {"limit": {"map": {"key": down, "data": f"@{level}_dn{version}"}}},
                    {"drop": None},
                ),
            ]
    return cmds
