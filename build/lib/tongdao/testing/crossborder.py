"""The two PoPs and the registered link every cross-border topology uses (the demo and the
namespace tests): ``cn-bj-1`` in Beijing and ``de-fra-1`` in Frankfurt, created through the
public API by an operator admin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ApiCall = Callable[..., Any]  # (method, path, json=...) -> the decoded response body

BJ_ENDPOINT = "198.51.100.1"
FRA_ENDPOINT = "203.0.113.2"
PORTS_PER_POP = 5


def create_pops(admin: ApiCall, base: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``cn-bj-1`` with ports ``base``..``base+4``, ``de-fra-1`` with the next five."""
    pops = [
        admin(
            "POST",
            "/pops",
            json={
                "name": name,
                "region": region,
                "country": region[:2],
                "endpoint_host": host,
                "port_min": base + offset,
                "port_max": base + offset + PORTS_PER_POP - 1,
            },
        )
        for name, region, host, offset in (
            ("cn-bj-1", "CN-BJ", BJ_ENDPOINT, 0),
            ("de-fra-1", "DE-FRA", FRA_ENDPOINT, PORTS_PER_POP),
        )
    ]
    return pops[0], pops[1]


def link_pops(
    admin: ApiCall, bj: dict[str, Any], fra: dict[str, Any], circuit_ref: str, approval_ref: str
) -> dict[str, Any]:
    """The registered cross-border link ``bj-fra`` with its circuit and approval references."""
    link: dict[str, Any] = admin(
        "POST",
        "/links",
        json={
            "name": "bj-fra",
            "pop_a_id": bj["id"],
            "pop_b_id": fra["id"],
            "circuit_ref": circuit_ref,
            "approval_ref": approval_ref,
            "capacity_mbps": 100,
        },
    )
    return link
