"""Pure address arithmetic: carving tenant pools out of the overlay ranges."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

OVERLAY_V4 = ipaddress.IPv4Network("100.64.0.0/10")
OVERLAY_V6 = ipaddress.IPv6Network("fd00::/8")
TENANT_V6_PREFIXLEN = 48
HOST_V6_PREFIXLEN = 64  # devices and gateways take addresses from the /48's first /64


def first_fit(parent: IPNetwork, prefixlen: int, used: Iterable[IPNetwork]) -> IPNetwork | None:
    """The lowest aligned ``/prefixlen`` inside ``parent`` that overlaps nothing in ``used``."""
    if prefixlen < parent.prefixlen or prefixlen > parent.max_prefixlen:
        raise ValueError(f"/{prefixlen} does not fit in {parent}")
    size = 1 << (parent.max_prefixlen - prefixlen)
    start = int(parent.network_address)
    end = start + parent.num_addresses
    spans = sorted(
        (int(u.network_address), int(u.network_address) + u.num_addresses)
        for u in used
        if u.version == parent.version and u.overlaps(parent)
    )
    candidate = start
    for used_start, used_end in spans:
        if used_end <= candidate:
            continue
        if used_start >= candidate + size:
            break
        candidate = start + -(-(used_end - start) // size) * size  # align up past the block
    if candidate + size > end:
        return None
    return ipaddress.ip_network((candidate, prefixlen))


def v6_host_subnet(pool: ipaddress.IPv6Network) -> ipaddress.IPv6Network:
    return next(pool.subnets(new_prefix=HOST_V6_PREFIXLEN))
