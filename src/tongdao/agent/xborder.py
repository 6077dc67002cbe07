"""Cross-border byte counters on a PoP gateway, for the usage ledger.

Per tenant peer (device or site), the bytes it sent to and received from a registered
cross-border link peer (a peer PoP on the other side of the border, ``Peer.cross_border``),
counted by nftables on the forwarded inner packets:

    table inet tongdao_xb {
        set xb4 { type ifname . ipv4_addr; flags interval }         # what lives behind the
        set xb6 { ... }                                             # link peers, per interface
        map rx4 { type ifname . ipv4_addr : counter; flags interval }   # a peer's addresses →
        map tx4 { ... }  (and rx6, tx6)                                 # its two counters
        counter x.<ifname>.<key hex>.rx { }  counter x.<ifname>.<key hex>.tx { }
        chain count { hook forward priority filter + 10; policy accept
            iifname . ip daddr @xb4 counter name iifname . ip saddr map @rx4
            oifname . ip saddr @xb4 counter name oifname . ip daddr map @tx4
            (the same for ip6) }
    }

The chain runs after the tenant firewall (priority 0) and the quota chain: a packet the
policy or a quota drops is not counted (``accept`` there ends that chain only).
While no tenant has a cross-border link peer the table keeps no ``count`` chain at all, so
forwarded packets meet no hook of it.

It is a table of its own, changed in place and never replaced: an apply flushes and refills
the chain, sets and maps and adds or deletes only the counters of peers that came or went, in
one transaction, so a counter keeps its value across applies *and across agent restarts*
(the table outlives the agent, like its WireGuard interfaces). The reporter turns the
cumulative counters into deltas as it does the engine's (a counter that went down started
again from zero: a host reboot), so nothing is lost or counted twice.

``cross_border_rx_bytes`` (received by the gateway from the peer and routed to the link) and
``cross_border_tx_bytes`` (from the link to the peer) count inner IP packets: less than the
WireGuard bytes of the same packets (``rx_bytes`` / ``tx_bytes``), and the reporter caps each
at its direction's total in a report (the two are read a moment apart).
"""

from __future__ import annotations

import base64
import ipaddress
import json
from collections.abc import Sequence
from typing import Any, Final

from tongdao.agent.firewall import NftError, _run_nft
from tongdao.gateway.desired import TenantInterface

FAMILY: Final = "inet"
TABLE: Final = "tongdao_xb"
CHAIN: Final = "count"
PRIORITY: Final = 10
DIRECTIONS: Final = ("rx", "tx")

JSON = dict[str, Any]
PeerId = tuple[str, str]  # interface, peer public key


def counter_name(ifname: str, public_key: str, direction: str) -> str:
    return f"x.{ifname}.{base64.b64decode(public_key).hex()}.{direction}"


def parse_name(name: str) -> tuple[PeerId, str] | None:
    parts = name.split(".")
    if len(parts) != 4 or parts[0] != "x" or parts[3] not in DIRECTIONS:
        return None
    try:
        key = base64.b64encode(bytes.fromhex(parts[2])).decode()
    except ValueError:
        return None
    return (parts[1], key), parts[3]


def _element(ifname: str, cidr: str) -> tuple[int, JSON]:
    net = ipaddress.ip_network(cidr, strict=False)
    return net.version, {
        "concat": [ifname, {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}]
    }


def wanted_counters(tenants: Sequence[TenantInterface]) -> dict[PeerId, tuple[str, ...]]:
    """The peers counted (tenant peers of interfaces with a cross-border link peer), with
    their allowed IPs."""
    out: dict[PeerId, tuple[str, ...]] = {}
    for tenant in tenants:
        if not any(p.cross_border for p in tenant.peers):
            continue
        for peer in tenant.peers:
            if peer.kind in ("device", "site"):
                out[(tenant.ifname, peer.public_key)] = peer.allowed_ips
    return out


def signature(tenants: Sequence[TenantInterface]) -> object:
    """What the counter table depends on (an apply is skipped while it is unchanged)."""
    return tuple(
        (t.ifname, p.public_key, p.kind, p.cross_border, p.allowed_ips)
        for t in tenants
        if any(q.cross_border for q in t.peers)
        for p in t.peers
    )


def compile_counters(tenants: Sequence[TenantInterface], existing: set[str]) -> JSON:
    """One batch taking the table to ``tenants``' counters; ``existing``: counter names in
    the table now (kept, with their values)."""
    base = {"family": FAMILY, "table": TABLE}
    cmds: list[JSON] = [{"add": {"table": {"family": FAMILY, "name": TABLE}}}]
    cmds.append(
        {
            "add": {
                "chain": {
                    **base,
                    "name": CHAIN,
                    "type": "filter",
                    "hook": "forward",
                    "prio": PRIORITY,
                    "policy": "accept",
                }
            }
        }
    )
    cmds.append({"flush": {"chain": {**base, "name": CHAIN}}})
    counting = any(p.cross_border for t in tenants for p in t.peers)
    if not counting:
        # Nothing to count: no chain on the forward hook at all (an empty chain would still
        # be a hook every forwarded packet goes through; measured, the chain and its four
        # lookups cost the PoP's engine about 3-4% more CPU per GB carried). The counters
        # (none are wanted) and the sets go as below; the chain comes back with a link peer.
        cmds.append({"delete": {"chain": {**base, "name": CHAIN}}})
    for version in (4, 6):
        addr = "ipv4_addr" if version == 4 else "ipv6_addr"
        sets = [(f"xb{version}", None)] + [(f"{d}{version}", "counter") for d in DIRECTIONS]
        for name, data in sets:
            body: JSON = {**base, "name": name, "type": ["ifname", addr], "flags": ["interval"]}
            kind = "set" if data is None else "map"
            if data is not None:
                body["map"] = data
            cmds.append({"add": {kind: body}})
            cmds.append({"flush": {kind: {**base, "name": name}}})
    linked: dict[int, list[JSON]] = {4: [], 6: []}
    for tenant in tenants:
        for peer in tenant.peers:
            if peer.cross_border:
                for cidr in peer.allowed_ips:
                    version, elem = _element(tenant.ifname, cidr)
                    linked[version].append(elem)
    wanted = wanted_counters(tenants)
    names = {counter_name(ifname, key, d) for (ifname, key) in wanted for d in DIRECTIONS}
    for name in sorted(names - existing):
        cmds.append({"add": {"counter": {**base, "name": name}}})
    maps: dict[tuple[str, int], list[Any]] = {(d, v): [] for d in DIRECTIONS for v in (4, 6)}
    for (ifname, key), cidrs in sorted(wanted.items()):
        for cidr in cidrs:
            for direction in DIRECTIONS:
                version, elem = _element(ifname, cidr)
                maps[(direction, version)].append([elem, counter_name(ifname, key, direction)])
    for version in (4, 6):
        if linked[version]:
            cmds.append(
                {"add": {"element": {**base, "name": f"xb{version}", "elem": linked[version]}}}
            )
        for direction in DIRECTIONS:
            if maps[(direction, version)]:
                cmds.append(
                    {
                        "add": {
                            "element": {
                                **base,
                                "name": f"{direction}{version}",
                                "elem": maps[(direction, version)],
                            }
                        }
                    }
                )
    for version, proto in ((4, "ip"), (6, "ip6")) if counting else ():
        for direction, iface, peer_side, link_side in (
            ("rx", "iifname", "saddr", "daddr"),
            ("tx", "oifname", "daddr", "saddr"),
        ):
            cmds.append(
                {
                    "add": {
                        "rule": {
                            **base,
                            "chain": CHAIN,
                            "expr": [
                                {
                                    "match": {
                                        "op": "==",
                                        "left": {
                                            "concat": [
                                                {"meta": {"key": iface}},
                                                {
                                                    "payload": {
                                                        "protocol": proto,
                                                        "field": link_side,
                                                    }
                                                },
                                            ]
                                        },
                                        "right": f"@xb{version}",
                                    }
                                },
                                {
                                    "counter": {
                                        "map": {
                                            "key": {
                                                "concat": [
                                                    {"meta": {"key": iface}},
                                                    {
                                                        "payload": {
                                                            "protocol": proto,
                                                            "field": peer_side,
                                                        }
                                                    },
                                                ]
                                            },
                                            "data": f"@{direction}{version}",
                                        }
                                    }
                                },
                            ],
                        }
                    }
                }
            )
    for name in sorted(existing - names):  # unreferenced now that the maps were flushed
        cmds.append({"delete": {"counter": {**base, "name": name}}})
    return {"nftables": cmds}


def read_counters(netns: str | None = None) -> dict[PeerId, tuple[int, int]]:
    """Cumulative (rx, tx) bytes per counted peer; empty when the table is absent."""
    try:
        out = _run_nft(netns, ["-j", "list", "counters", "table", FAMILY, TABLE])
    except NftError:
        return {}
    found: dict[PeerId, list[int]] = {}
    for item in json.loads(out).get("nftables", []) if out.strip() else []:
        counter = item.get("counter")
        if not counter:
            continue
        parsed = parse_name(str(counter.get("name", "")))
        if parsed is None:
            continue
        peer, direction = parsed
        found.setdefault(peer, [0, 0])[DIRECTIONS.index(direction)] = int(counter["bytes"])
    return {peer: (rx, tx) for peer, (rx, tx) in found.items()}


def apply_counters(tenants: Sequence[TenantInterface], netns: str | None = None) -> None:
    """Take the counter table to ``tenants`` in one transaction, keeping existing counters."""
    existing = {counter_name(i, k, d) for (i, k) in read_counters(netns) for d in DIRECTIONS}
    _run_nft(netns, ["-j", "-f", "-"], json.dumps(compile_counters(tenants, existing)))


def remove_counters(netns: str | None = None) -> None:
    batch = {
        "nftables": [
            {"add": {"table": {"family": FAMILY, "name": TABLE}}},
            {"delete": {"table": {"family": FAMILY, "name": TABLE}}},
        ]
    }
    _run_nft(netns, ["-j", "-f", "-"], json.dumps(batch))
