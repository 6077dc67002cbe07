"""The pure nftables compiler: structure, expansion, normalisation, limits, determinism."""

from __future__ import annotations

import ipaddress
import itertools
import json
import random
import uuid
from typing import Any

import pytest

from tongdao.agent import firewall as fw
from tongdao.errors import TongdaoError
from tongdao.gateway.desired import PolicyRule, TenantInterface

TENANT_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")


def tenant(port: int = 51820, *rules: PolicyRule, ifname: str | None = None) -> TenantInterface:
    return TenantInterface(
        tenant_id=TENANT_ID,
        ifname=ifname or f"wgt{port}",
        listen_port=port,
        table=port,
        address_v4="100.64.0.1/24",
        address_v6="fd00::1/64",
        pools=("100.64.0.0/24", "fd00::/64"),
        policy=rules,
    )


def commands(ruleset: dict[str, Any], verb: str, kind: str) -> list[dict[str, Any]]:
    return [item[verb][kind] for item in ruleset["nftables"] if kind in item.get(verb, {})]


def elements(ruleset: dict[str, Any], name: str) -> list[Any]:
    return fw.set_elements(ruleset).get(name, [])


# --------------------------------------------------------------------------- structure


def test_batch_replaces_only_our_table_atomically() -> None:
    ruleset = fw.compile_ruleset([tenant()])
    items = ruleset["nftables"]
    table = {"family": "inet", "name": "tongdao"}
    # add (no-op when present), delete, re-create: one idempotent transaction
    assert items[:3] == [
        {"add": {"table": table}},
        {"delete": {"table": table}},
        {"add": {"table": table}},
    ]
    for item in items:
        ((verb, body),) = item.items()
        assert verb in ("add", "delete")
        ((_, obj),) = body.items()
        assert obj["family"] == "inet"
        assert obj.get("table", obj.get("name")) == "tongdao"
    assert not any("flush" in item for item in items)


def test_base_chains_and_hooks() -> None:
    chains = {c["name"]: c for c in commands(fw.compile_ruleset([tenant()]), "add", "chain")}
    assert chains["forward"]["hook"] == "forward"
    assert chains["forward"]["policy"] == "drop"
    assert chains["forward"]["prio"] == 0
    assert chains["zone_in"]["hook"] == "prerouting"
    assert chains["zone_out"]["hook"] == "output"
    assert chains["zone_in"]["prio"] == chains["zone_out"]["prio"] == -300  # before conntrack
    assert "hook" not in chains["tenant_wgt51820"]
    assert not any(c.get("hook") == "input" for c in chains.values())


def test_forward_dispatches_ours_drops_unknown_tenant_interfaces_then_accepts_foreign() -> None:
    for tenants in ([tenant()], [], [tenant(51820), tenant(51821)]):
        rules = commands(fw.compile_ruleset(tenants), "add", "rule")
        forward = [r["expr"] for r in rules if r["chain"] == "forward"]
        assert forward == [
            # ours first: a known tenant interface's packets jump and never come back
            [{"vmap": {"key": {"meta": {"key": "iifname"}}, "data": "@dispatch"}}],
            # a wgt… interface the table does not know: nothing in, nothing out ("wgt*" is
            # nft's wildcard, a prefix compare; a literal star would be "wgt\\*")
            [
                {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "wgt*"}},
                {"drop": None},
            ],
            [
                {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "wgt*"}},
                {"drop": None},
            ],
            [
                {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "@ifaces"}},
                {"accept": None},
            ],
        ]  # everything else touching our interfaces meets policy drop


def test_unknown_tenant_interface_rules_survive_element_only_updates() -> None:
    """A policy-only change keeps the table's shape (the ``wgt*`` rules included): the update
    is elements only, and a table compiled without the rules (an older agent's) is replaced."""
    a = PolicyRule(src=("100.64.0.2",), dst=("198.18.0.1",))
    b = PolicyRule(src=("100.64.0.3",), dst=("198.18.0.1",))
    old = fw.compile_ruleset([tenant(51820, a)])
    new = fw.compile_ruleset([tenant(51820, b)])
    update = fw.plan_update(old, new)
    assert update["nftables"]
    assert all("element" in body for item in update["nftables"] for body in item.values())
    wildcard = [
        item
        for item in old["nftables"]
        if "rule" in item.get("add", {})
        and any(e.get("match", {}).get("right") == "wgt*" for e in item["add"]["rule"]["expr"])
    ]
    assert len(wildcard) == 2
    legacy = {"nftables": [item for item in old["nftables"] if item not in wildcard]}
    assert fw.plan_update(legacy, new) is new


def test_tenant_chain_order_hairpin_first_then_state_then_policy() -> None:
    rules = commands(fw.compile_ruleset([tenant()]), "add", "rule")
    chain = [r["expr"] for r in rules if r["chain"] == "tenant_wgt51820"]
    assert chain[0] == [
        {"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "wgt51820"}},
        {"drop": None},
    ]
    assert chain[1][0]["match"]["right"] == ["established", "related"]
    assert chain[2] == [
        {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "invalid"}},
        {"drop": None},
    ]
    lookups = [e["match"]["right"] for r in chain[3:] for e in r if "match" in e]
    set_refs = [x for x in lookups if isinstance(x, str) and x.startswith("@")]
    assert set_refs == [
        "@wgt51820_any4",
        "@wgt51820_svc4",
        "@wgt51820_icmp4",
        "@wgt51820_any6",
        "@wgt51820_svc6",
        "@wgt51820_icmp6",
    ]
    assert chain[-1] == [{"drop": None}]
    # a constant number of rules per tenant, however large the policy
    big = tenant(
        51820,
        *[PolicyRule(src=(f"100.64.0.{i}",), dst=("198.18.0.1",)) for i in range(1, 200)],
    )
    big_chain = [
        r
        for r in commands(fw.compile_ruleset([big]), "add", "rule")
        if r["chain"] == "tenant_wgt51820"
    ]
    assert len(big_chain) == len(chain) == 10


def test_sets_are_interval_concatenations() -> None:
    sets = {s["name"]: s for s in commands(fw.compile_ruleset([tenant()]), "add", "set")}
    assert sets["wgt51820_any4"]["type"] == ["ipv4_addr", "ipv4_addr"]
    assert sets["wgt51820_icmp6"]["type"] == ["ipv6_addr", "ipv6_addr"]
    assert sets["wgt51820_svc4"]["type"] == ["ipv4_addr", "ipv4_addr", "inet_proto", "inet_service"]
    assert sets["wgt51820_svc6"]["type"] == ["ipv6_addr", "ipv6_addr", "inet_proto", "inet_service"]
    for kind, version in itertools.product(fw.SET_KINDS, (4, 6)):
        assert sets[f"wgt51820_{kind}{version}"]["flags"] == ["interval"]
    assert sets["ifaces"]["type"] == "ifname"


def test_interfaces_dispatch_and_zones() -> None:
    ruleset = fw.compile_ruleset([tenant(51821), tenant(51820)])
    assert elements(ruleset, "ifaces") == ["wgt51820", "wgt51821"]
    assert elements(ruleset, "dispatch") == [
        ["wgt51820", {"jump": {"target": "tenant_wgt51820"}}],
        ["wgt51821", {"jump": {"target": "tenant_wgt51821"}}],
    ]
    rules = commands(ruleset, "add", "rule")
    for chain, key, port in (("zone_in", "iifname", "dport"), ("zone_out", "oifname", "sport")):
        untracked, rule = [r for r in rules if r["chain"] == chain]
        # The tunnels' own UDP skips connection tracking; the packets inside get their zone.
        assert untracked["expr"] == [
            {
                "match": {
                    "op": "==",
                    "left": {"payload": {"protocol": "udp", "field": port}},
                    "right": {"set": [51820, 51821]},
                }
            },
            {"notrack": None},
            {"accept": None},
        ]
        mangle = rule["expr"][0]["mangle"]
        assert mangle["key"] == {"ct": {"key": "zone"}}
        assert mangle["value"]["map"]["key"] == {"meta": {"key": key}}
        assert mangle["value"]["map"]["data"]["set"] == [["wgt51820", 51820], ["wgt51821", 51821]]


def test_no_tenants_is_a_valid_empty_table() -> None:
    ruleset = fw.compile_ruleset([])
    assert elements(ruleset, "ifaces") == []
    chains = [c["name"] for c in commands(ruleset, "add", "chain")]
    assert chains == ["zone_in", "zone_out", "forward"]
    assert not [r for r in commands(ruleset, "add", "rule") if r["chain"].startswith("zone")]


# --------------------------------------------------------------------------- expansion


def test_no_policy_means_empty_sets() -> None:
    counts = fw.set_element_counts(fw.compile_ruleset([tenant()]))
    assert all(counts[f"wgt51820_{k}{v}"] == 0 for k in fw.SET_KINDS for v in (4, 6))


def test_cartesian_product_split_by_family() -> None:
    rule = PolicyRule(
        src=("100.64.0.3", "100.64.0.4", "fd00::2"),
        dst=("198.18.0.0/24", "fd00:1::/64", "fd00:2::/64"),
        protocol="tcp",
        ports=("443", "8000-8100"),
    )
    ruleset = fw.compile_ruleset([tenant(51820, rule)])
    svc4 = elements(ruleset, "wgt51820_svc4")
    svc6 = elements(ruleset, "wgt51820_svc6")
    # neighbouring /32 sources merge into one range; ports stay separate pieces
    assert svc4 == [
        {
            "concat": [
                {"range": ["100.64.0.3", "100.64.0.4"]},
                {"prefix": {"addr": "198.18.0.0", "len": 24}},
                "tcp",
                443,
            ]
        },
        {
            "concat": [
                {"range": ["100.64.0.3", "100.64.0.4"]},
                {"prefix": {"addr": "198.18.0.0", "len": 24}},
                "tcp",
                {"range": [8000, 8100]},
            ]
        },
    ]
    assert len(svc6) == 4  # 1 src × 2 dst × 2 port pieces
    assert {e["concat"][0] for e in svc6 if isinstance(e["concat"][0], str)} == {"fd00::2"}
    assert elements(ruleset, "wgt51820_any4") == []


def test_mixed_family_rule_without_a_pair_matches_nothing() -> None:
    rule = PolicyRule(src=("100.64.0.2",), dst=("fd00::2",))
    counts = fw.set_element_counts(fw.compile_ruleset([tenant(51820, rule)]))
    assert counts["wgt51820_any4"] == counts["wgt51820_any6"] == 0


@pytest.mark.parametrize(
    ("protocol", "ports", "expected"),
    [
        ("udp", ("53",), ["udp", 53]),
        ("tcp", ("8000-8100",), ["tcp", {"range": [8000, 8100]}]),
        ("tcp", (), ["tcp", {"range": [0, 65535]}]),
        ("udp", ("0-65535",), ["udp", {"range": [0, 65535]}]),
        ("tcp", ("22-22",), ["tcp", 22]),
    ],
)
def test_ports(protocol: Any, ports: tuple[str, ...], expected: list[Any]) -> None:
    rule = PolicyRule(src=("100.64.0.2",), dst=("198.18.0.9",), protocol=protocol, ports=ports)
    (element,) = elements(fw.compile_ruleset([tenant(51820, rule)]), "wgt51820_svc4")
    assert element == {"concat": ["100.64.0.2", "198.18.0.9", *expected]}


def test_icmp_and_any_go_to_their_own_sets() -> None:
    rules = (
        PolicyRule(src=("100.64.0.2",), dst=("198.18.0.9",), protocol="icmp"),
        PolicyRule(src=("fd00::2",), dst=("fd00:9::/48",), protocol="any"),
    )
    ruleset = fw.compile_ruleset([tenant(51820, *rules)])
    assert elements(ruleset, "wgt51820_icmp4") == [{"concat": ["100.64.0.2", "198.18.0.9"]}]
    assert elements(ruleset, "wgt51820_any6") == [
        {"concat": ["fd00::2", {"prefix": {"addr": "fd00:9::", "len": 48}}]}
    ]
    assert elements(ruleset, "wgt51820_svc4") == elements(ruleset, "wgt51820_any4") == []


def test_overlaps_are_normalised_into_disjoint_elements() -> None:
    rules = (
        PolicyRule(src=("192.0.2.0/24",), dst=("198.51.100.1",), protocol="tcp", ports=("1-100",)),
        PolicyRule(src=("192.0.2.5",), dst=("198.51.100.1",), protocol="tcp", ports=("50-200",)),
        PolicyRule(src=("192.0.2.5",), dst=("198.51.100.1",), protocol="tcp", ports=("50-200",)),
    )
    svc4 = elements(fw.compile_ruleset([tenant(51820, *rules)]), "wgt51820_svc4")
    assert svc4 == [
        {
            "concat": [
                {"range": ["192.0.2.0", "192.0.2.4"]},
                "198.51.100.1",
                "tcp",
                {"range": [1, 100]},
            ]
        },
        {"concat": ["192.0.2.5", "198.51.100.1", "tcp", {"range": [1, 200]}]},
        {
            "concat": [
                {"range": ["192.0.2.6", "192.0.2.255"]},
                "198.51.100.1",
                "tcp",
                {"range": [1, 100]},
            ]
        },
    ]


def test_contained_rule_is_absorbed_and_halves_merge_into_a_prefix() -> None:
    rules = (
        PolicyRule(src=("100.64.0.0/25",), dst=("198.18.0.0/16",)),
        PolicyRule(src=("100.64.0.128/25",), dst=("198.18.0.0/16",)),
        PolicyRule(src=("100.64.0.7",), dst=("198.18.3.0/24",)),
    )
    assert elements(fw.compile_ruleset([tenant(51820, *rules)]), "wgt51820_any4") == [
        {
            "concat": [
                {"prefix": {"addr": "100.64.0.0", "len": 24}},
                {"prefix": {"addr": "198.18.0.0", "len": 16}},
            ]
        }
    ]


def _boxes_of(element: dict[str, Any]) -> list[tuple[int, int]]:
    out = []
    for part in element["concat"]:
        if isinstance(part, dict) and "prefix" in part:
            net = ipaddress.ip_network(f"{part['prefix']['addr']}/{part['prefix']['len']}")
            out.append((int(net.network_address), int(net.broadcast_address)))
        elif isinstance(part, dict) and "range" in part:
            low, high = part["range"]
            if isinstance(low, str):
                low, high = int(ipaddress.ip_address(low)), int(ipaddress.ip_address(high))
            out.append((low, high))
        elif isinstance(part, str) and part in ("tcp", "udp"):
            number = fw.PROTO_NUMBERS[part]
            out.append((number, number))
        elif isinstance(part, str):
            value = int(ipaddress.ip_address(part))
            out.append((value, value))
        else:
            out.append((part, part))
    return out


def test_normalisation_preserves_membership_and_disjointness() -> None:
    rng = random.Random(20240601)
    srcs = [
        "100.64.0.0/28",
        "100.64.0.0/30",
        "100.64.0.4",
        "100.64.0.9",
        "100.64.0.8/29",
        "100.64.0.15",
    ]
    dsts = ["198.18.0.0/29", "198.18.0.2", "198.18.0.4/30", "198.18.0.7"]
    portsets = [("1-10",), ("5",), ("8-20", "30"), ("25-30",), ()]
    rules = [
        PolicyRule(
            src=tuple(rng.sample(srcs, rng.randint(1, 2))),
            dst=tuple(rng.sample(dsts, rng.randint(1, 2))),
            protocol=rng.choice(["tcp", "udp"]),
            ports=rng.choice(portsets),
        )
        for _ in range(25)
    ]
    svc4 = elements(fw.compile_ruleset([tenant(51820, *rules)]), "wgt51820_svc4")
    boxes = [_boxes_of(e) for e in svc4]

    def covered(point: tuple[int, ...]) -> int:
        return sum(
            all(lo <= v <= hi for v, (lo, hi) in zip(point, box, strict=True)) for box in boxes
        )

    def allowed(point: tuple[int, ...]) -> bool:
        src, dst, proto, port = point
        for rule in rules:
            if fw.PROTO_NUMBERS[rule.protocol] != proto:
                continue
            ranges = [
                tuple(map(int, p.split("-"))) if "-" in p else (int(p), int(p)) for p in rule.ports
            ]
            if not any(lo <= port <= hi for lo, hi in (ranges or [(0, 65535)])):
                continue
            in_src = any(ipaddress.ip_address(src) in ipaddress.ip_network(s) for s in rule.src)
            in_dst = any(ipaddress.ip_address(dst) in ipaddress.ip_network(d) for d in rule.dst)
            if in_src and in_dst:
                return True
        return False

    base_s, base_d = (
        int(ipaddress.ip_address("100.64.0.0")),
        int(ipaddress.ip_address("198.18.0.0")),
    )
    for s, d, proto, port in itertools.product(
        range(18), range(9), (6, 17), (0, 1, 5, 9, 10, 11, 20, 21, 25, 30, 31, 65535)
    ):
        point = (base_s + s, base_d + d, proto, port)
        hits = covered(point)
        assert hits <= 1, point  # disjoint: the kernel refuses overlapping elements
        assert (hits == 1) == allowed(point), point


# --------------------------------------------------------------------------- determinism


def test_same_input_same_json_whatever_the_order() -> None:
    rules = [
        PolicyRule(
            src=(f"100.64.{i}.0/24", "fd00::/64"),
            dst=("198.18.0.0/15",),
            protocol="tcp",
            ports=(str(1000 + i),),
        )
        for i in range(30)
    ] + [PolicyRule(src=("100.64.0.0/10",), dst=("203.0.113.0/24",), protocol="icmp")]
    first = fw.compile_ruleset([tenant(51820, *rules), tenant(51821, *rules[:3])])
    again = fw.compile_ruleset([tenant(51820, *rules), tenant(51821, *rules[:3])])
    shuffled = list(rules)
    random.Random(7).shuffle(shuffled)
    reordered = fw.compile_ruleset([tenant(51821, *reversed(rules[:3])), tenant(51820, *shuffled)])
    assert json.dumps(first) == json.dumps(again) == json.dumps(reordered)


# --------------------------------------------------------------------------- errors and limits


def test_errors_are_typed_tongdao_errors() -> None:
    assert issubclass(fw.FirewallLimitError, fw.FirewallCompileError)
    assert issubclass(fw.FirewallCompileError, TongdaoError)
    assert issubclass(fw.NftError, TongdaoError)


@pytest.mark.parametrize(
    "rule",
    [
        PolicyRule(src=("100.64.0.0/33",), dst=("198.18.0.1",)),
        PolicyRule(src=("100.64.0.1/24",), dst=("198.18.0.1",)),  # host bits set
        PolicyRule(src=("not-an-address",), dst=("198.18.0.1",)),
        PolicyRule(src=("100.64.0.1",), dst=("198.18.0.1",), protocol="tcp", ports=("70000",)),
        PolicyRule(src=("100.64.0.1",), dst=("198.18.0.1",), protocol="tcp", ports=("90-80",)),
        PolicyRule(src=("100.64.0.1",), dst=("198.18.0.1",), protocol="tcp", ports=("http",)),
        PolicyRule(src=("100.64.0.1",), dst=("198.18.0.1",), protocol="any", ports=("80",)),
        PolicyRule(src=("100.64.0.1",), dst=("198.18.0.1",), protocol="icmp", ports=("80",)),
    ],
)
def test_bad_rules_are_refused(rule: PolicyRule) -> None:
    with pytest.raises(fw.FirewallCompileError, match=r"wgt51820 policy\[0\]"):
        fw.compile_ruleset([tenant(51820, rule)])


@pytest.mark.parametrize("ifname", ["wgt*", "wg t", "@wgt1", "1wgt", "", "wgt-1", "a" * 16])
def test_bad_interface_names_are_refused(ifname: str) -> None:
    bad = tenant(51820).model_copy(update={"ifname": ifname})
    with pytest.raises(fw.FirewallCompileError, match="interface name"):
        fw.compile_ruleset([bad])


def test_duplicate_interfaces_or_ports_are_refused() -> None:
    with pytest.raises(fw.FirewallCompileError, match="twice"):
        fw.compile_ruleset([tenant(51820), tenant(51820)])
    with pytest.raises(fw.FirewallCompileError, match="twice"):
        fw.compile_ruleset([tenant(51820), tenant(51820, ifname="wgtother")])


def test_element_limit() -> None:
    srcs = tuple(f"100.64.{i // 128}.{2 * (i % 128)}" for i in range(400))  # not adjacent
    dsts = tuple(f"198.18.{i // 128}.{2 * (i % 128)}" for i in range(300))
    too_many = PolicyRule(src=srcs, dst=dsts, protocol="tcp", ports=("1", "3"))  # 240,000
    with pytest.raises(fw.FirewallLimitError, match=str(fw.MAX_ELEMENTS_PER_TENANT)):
        fw.compile_ruleset([tenant(51820, too_many)])
    fits = PolicyRule(src=srcs[:10], dst=dsts[:10], protocol="tcp", ports=("1", "3"))
    assert fw.set_element_counts(fw.compile_ruleset([tenant(51820, fits)]))["wgt51820_svc4"] == 200


def test_thousand_rules_compile() -> None:
    rules = [
        PolicyRule(
            src=(f"100.64.{i // 256}.{i % 256}", f"fd00:64::{i:x}"),
            dst=(f"198.18.{i // 256}.0/24", f"fd00:18:{i:x}::/64"),
            protocol=("tcp", "udp", "any", "icmp")[i % 4],
            ports=(str(1000 + i), f"{20000 + i}-{20010 + i}") if i % 4 < 2 else (),
        )
        for i in range(1000)
    ]
    counts = fw.set_element_counts(fw.compile_ruleset([tenant(51820, *rules)]))
    assert counts["wgt51820_any4"] == counts["wgt51820_icmp6"] == 250
    assert counts["wgt51820_svc4"] == counts["wgt51820_svc6"] == 1000


# --------------------------------------------------------------------------- incremental


def test_plan_update_emits_only_element_changes_when_shape_is_unchanged() -> None:
    a = PolicyRule(src=("100.64.0.2",), dst=("198.18.0.1",), protocol="tcp", ports=("443",))
    b = PolicyRule(src=("100.64.0.3",), dst=("198.18.0.1",), protocol="tcp", ports=("443",))
    c = PolicyRule(src=("100.64.0.9",), dst=("198.18.0.1",), protocol="icmp")
    old = fw.compile_ruleset([tenant(51820, a)])
    new = fw.compile_ruleset([tenant(51820, b, c)])
    update = fw.plan_update(old, new)
    assert update["nftables"] == [
        {
            "delete": {
                "element": {
                    "family": "inet",
                    "table": "tongdao",
                    "name": "wgt51820_svc4",
                    "elem": [{"concat": ["100.64.0.2", "198.18.0.1", "tcp", 443]}],
                }
            }
        },
        {
            "add": {
                "element": {
                    "family": "inet",
                    "table": "tongdao",
                    "name": "wgt51820_icmp4",
                    "elem": [{"concat": ["100.64.0.9", "198.18.0.1"]}],
                }
            }
        },
        {
            "add": {
                "element": {
                    "family": "inet",
                    "table": "tongdao",
                    "name": "wgt51820_svc4",
                    "elem": [{"concat": ["100.64.0.3", "198.18.0.1", "tcp", 443]}],
                }
            }
        },
    ]
    assert fw.plan_update(new, new) == {"nftables": []}


def test_plan_update_falls_back_to_full_replace() -> None:
    old = fw.compile_ruleset([tenant(51820)])
    new = fw.compile_ruleset([tenant(51820), tenant(51821)])
    assert fw.plan_update(old, new) is new
    assert fw.plan_update(None, new) is new
