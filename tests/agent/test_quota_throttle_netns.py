"""A throttled tenant's policer on a real kernel: the compiled quota chain with both levels
(each user's own limit, then the tenant's shared throttle) loads into nftables in a namespace
this test makes, and the independent ``nft`` CLI lists both limit maps on the packet path
with every peer's addresses."""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.agent.test_quota_firewall import device, tenant
from tests.conftest import need
from tongdao.agent import firewall as fw

pytestmark = pytest.mark.root


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=20).stdout


@pytest.fixture
def netns() -> Iterator[str]:
    if shutil.which("nft") is None or shutil.which("ip") is None:
        need("nft and ip")
    name = f"td-qt-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", name)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, timeout=20)


def test_the_kernel_holds_a_user_limit_and_the_tenant_throttle_both(netns: str) -> None:
    batch = fw.compile_ruleset(
        [
            tenant(
                device(2, rate_mbps=10, limit_group="u1", tenant_rate_mbps=20),
                device(3, tenant_rate_mbps=20),
            )
        ]
    )
    fw.apply_ruleset(batch, netns=netns)
    listed: dict[str, Any] = json.loads(
        sh("ip", "netns", "exec", netns, "nft", "-j", "list", "ruleset")
    )
    items = listed["nftables"]
    limits = {i["limit"]["name"]: i["limit"] for i in items if "limit" in i}
    assert limits["q0_up"]["rate"] == 10 * 125_000 and limits["q0_up"]["inv"] is True
    assert limits["t0_dn"]["rate"] == 20 * 125_000 and limits["t0_dn"]["inv"] is True
    maps = {i["map"]["name"]: i["map"] for i in items if "map" in i}

    def addrs(name: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in maps[name].get("elem", []):
            addr = key["concat"][1]
            out[addr["prefix"]["addr"] if isinstance(addr, dict) else addr] = value
        return out

    assert addrs("quota_up4") == {"100.64.0.2": "q0_up"}
    assert addrs("quota_t_up4") == {"100.64.0.2": "t0_up", "100.64.0.3": "t0_up"}
    assert addrs("quota_t_dn6") == {"fd00:1::2": "t0_dn", "fd00:1::3": "t0_dn"}
    rules = [
        json.dumps(i["rule"]["expr"])
        for i in items
        if "rule" in i and i["rule"]["chain"] == fw.QUOTA_CHAIN
    ]
    used = [m for r in rules for m in ("quota_up4", "quota_t_up4") if f'"@{m}"' in r]
    assert used == ["quota_up4", "quota_t_up4"]
