"""The cross-border rate of a tenant in the gateway's nftables (tongdao.agent.firewall): two
rules per rate-limited peer PoP (to it, from it), right after the chain's first rule."""

from __future__ import annotations

import uuid

from tongdao.agent.firewall import compile_ruleset, crossborder_rate_rules, tenant_chain
from tongdao.gateway.desired import Peer, TenantInterface


def tenant(rate: int | None) -> TenantInterface:
    return TenantInterface(
        tenant_id=uuid.uuid4(),
        ifname="wgt51820",
        listen_port=51820,
        table=51820,
        address_v4="100.64.0.1/22",
        address_v6="fd00::1/64",
        pools=("100.64.0.0/22", "fd00::/64"),
        peers=(
            Peer(public_key="d", kind="device", ref="dev", allowed_ips=("100.64.0.5/32",)),
            Peer(
                public_key="p",
                kind="pop",
                ref="fra",
                allowed_ips=("198.18.7.0/24", "fd00:77::/64"),
                link_rate_mbps=rate,
            ),
        ),
    )


def _limits(ruleset: dict) -> list[tuple[str, str, int]]:  # type: ignore[type-arg]
    out = []
    for cmd in ruleset["nftables"]:
        rule = cmd.get("add", {}).get("rule")
        if rule is None:
            continue
        limit = next((e["limit"] for e in rule["expr"] if "limit" in e), None)
        if limit is not None:
            match = rule["expr"][0]["match"]["left"]["payload"]
            out.append((match["protocol"], match["field"], limit["rate"]))
    return out


def test_an_approved_rate_limits_the_peer_both_ways_in_bytes() -> None:
    ruleset = compile_ruleset([tenant(20)])
    assert _limits(ruleset) == [
        ("ip", "daddr", 2_500_000),
        ("ip", "saddr", 2_500_000),
        ("ip6", "daddr", 2_500_000),
        ("ip6", "saddr", 2_500_000),
    ]
    chain = [
        c["add"]["rule"]["expr"]
        for c in ruleset["nftables"]
        if c.get("add", {}).get("rule", {}).get("chain") == tenant_chain("wgt51820")
    ]
    # First the interface check, then the limits, before established flows are accepted.
    assert "drop" in chain[0][-1] and "limit" in chain[1][1]
    assert all("limit" in rule[1] for rule in chain[1:5])
    assert "accept" in chain[5][-1]


def test_no_rate_no_rules() -> None:
    assert crossborder_rate_rules(tenant(None)) == []
    assert _limits(compile_ruleset([tenant(None)])) == []
