"""The quota part of the compiled firewall (pure): only when a peer is limited, one pair of
limit objects per limit group (a user's devices share it), blocked peers in their own set,
and a device added to a limited user is an element-only update."""

from __future__ import annotations

import json
import uuid

from tongdao.agent import firewall as fw
from tongdao.gateway.desired import Peer, TenantInterface
from tongdao.testing.keys import public_key


def tenant(*peers: Peer) -> TenantInterface:
    return TenantInterface(
        tenant_id=uuid.UUID(int=1),
        ifname="wgt51820",
        listen_port=51820,
        table=51820,
        address_v4="100.64.0.1/22",
        address_v6="fd00:1::1/64",
        pools=("100.64.0.0/22", "fd00:1::/48"),
        peers=peers,
    )


def device(n: int, **limits: object) -> Peer:
    return Peer(
        public_key=public_key(),
        kind="device",
        ref=str(uuid.UUID(int=n)),
        allowed_ips=(f"100.64.0.{n}/32", f"fd00:1::{n}/128"),
        **limits,  # type: ignore[arg-type]
    )


def objects(batch: dict[str, object], kind: str) -> list[dict[str, object]]:
    items = batch["nftables"]
    assert isinstance(items, list)
    return [i["add"][kind] for i in items if kind in i.get("add", {})]


def test_no_limited_peer_no_quota_chain() -> None:
    batch = fw.compile_ruleset([tenant(device(2), device(3))])
    assert fw.QUOTA_CHAIN not in {c["name"] for c in objects(batch, "chain")}
    assert objects(batch, "limit") == []


def test_a_users_devices_share_one_limit_per_direction_and_blocked_peers_are_dropped() -> None:
    batch = fw.compile_ruleset(
        [
            tenant(
                device(2, rate_mbps=20, limit_group="u1"),
                device(3, rate_mbps=20, limit_group="u1"),
                device(4, rate_mbps=5, limit_group="u2"),
                device(5, blocked=True),
                device(6),
            )
        ]
    )
    limits = {o["name"]: o for o in objects(batch, "limit")}
    assert sorted(limits) == ["q0_dn", "q0_up", "q1_dn", "q1_up"]
    assert limits["q0_up"]["rate"] == 20 * 125_000 and limits["q0_up"]["inv"] is True
    assert limits["q1_dn"]["rate"] == 5 * 125_000
    elements = fw.set_elements(batch)
    up4 = {e[0]["concat"][1]["prefix"]["addr"]: e[1] for e in elements["quota_up4"]}
    assert up4 == {"100.64.0.2": "q0_up", "100.64.0.3": "q0_up", "100.64.0.4": "q1_up"}
    blocked = [e["concat"] for e in elements["quota_block4"]]
    assert blocked == [["wgt51820", {"prefix": {"addr": "100.64.0.5", "len": 32}}]]
    assert [e["concat"][1]["prefix"]["addr"] for e in elements["quota_block6"]] == ["fd00:1::5"]
    chain = next(c for c in objects(batch, "chain") if c["name"] == fw.QUOTA_CHAIN)
    assert (chain["hook"], chain["prio"]) == ("forward", fw.QUOTA_PRIORITY)


def test_a_new_device_of_a_limited_user_is_an_element_update() -> None:
    one = device(2, rate_mbps=20, limit_group="u1")
    before = fw.compile_ruleset([tenant(one)])
    after = fw.compile_ruleset([tenant(one, device(3, rate_mbps=20, limit_group="u1"))])
    update = fw.plan_update(before, after)
    assert all("element" in next(iter(c.values())) for c in update["nftables"])
    assert update["nftables"]


def test_a_throttled_tenant_adds_a_shared_policer_on_top_of_each_users_own() -> None:
    batch = fw.compile_ruleset(
        [
            tenant(
                device(2, rate_mbps=10, limit_group="u1", tenant_rate_mbps=20),
                device(3, rate_mbps=50, limit_group="u2", tenant_rate_mbps=20),
                device(4, tenant_rate_mbps=20),
            )
        ]
    )
    limits = {o["name"]: o["rate"] for o in objects(batch, "limit")}
    assert limits == {
        "q0_up": 10 * 125_000,
        "q0_dn": 10 * 125_000,
        "q1_up": 50 * 125_000,
        "q1_dn": 50 * 125_000,
        "t0_up": 20 * 125_000,
        "t0_dn": 20 * 125_000,
    }
    elements = fw.set_elements(batch)
    own = {e[0]["concat"][1]["prefix"]["addr"]: e[1] for e in elements["quota_up4"]}
    assert own == {"100.64.0.2": "q0_up", "100.64.0.3": "q1_up"}
    shared = {e[0]["concat"][1]["prefix"]["addr"]: e[1] for e in elements["quota_t_dn6"]}
    assert shared == {"fd00:1::2": "t0_dn", "fd00:1::3": "t0_dn", "fd00:1::4": "t0_dn"}
    # Both policers are on the packet path: the user's first, then the tenant's.
    rules = [json.dumps(i["add"]["rule"]) for i in batch["nftables"] if "rule" in i.get("add", {})]
    quota = [r for r in rules if f'"chain": "{fw.QUOTA_CHAIN}"' in r]
    maps = [m for r in quota for m in ("@quota_up4", "@quota_t_up4") if f'"{m}"' in r]
    assert maps == ["@quota_up4", "@quota_t_up4"]


def test_without_a_throttle_the_ruleset_has_no_tenant_policer() -> None:
    batch = fw.compile_ruleset([tenant(device(2, rate_mbps=10, limit_group="u1"))])
    assert not any(name.startswith("quota_t_") for name in fw.set_elements(batch))
    assert [o["name"] for o in objects(batch, "limit")] == ["q0_up", "q0_dn"]
