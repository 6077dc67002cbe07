"""Desired-state deltas (diff on the server, merge in the agent) and the applier planning one
change against memory instead of reading every peer back from the engine."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tongdao.agent import firewall, host
from tongdao.agent.engine import DeviceState, FakeEngine, key_to_hex
from tongdao.agent.gateway import Applier
from tongdao.agent.state import StateDir
from tongdao.gateway.desired import (
    DeltaMismatch,
    DesiredDelta,
    DesiredState,
    Peer,
    PolicyRule,
    TenantInterface,
    diff,
    merge,
    peer_order,
)
from tongdao.testing.keys import public_key

POP = uuid.UUID(int=7)
KEYS = [public_key() for _ in range(12)]
TENANTS = [uuid.UUID(int=100 + i) for i in range(3)]


def peer(i: int, variant: int = 0) -> Peer:
    kind = ("device", "device", "site", "pop")[i % 4]
    allowed = (f"100.64.{i}.{1 + variant}/32", f"fd00::{i:x}:{variant + 1:x}/128")
    return Peer(
        public_key=KEYS[i],
        kind=kind,  # type: ignore[arg-type]
        ref=str(uuid.UUID(int=1000 + i)),
        allowed_ips=allowed,
        endpoint="198.51.100.9:51820" if kind == "pop" else None,
        keepalive=25 if kind == "pop" else None,
    )


def tenant(t: int, peers: dict[int, int], port_shift: int = 0, rules: int = 0) -> TenantInterface:
    port = 51820 + 10 * t + port_shift
    return TenantInterface(
        tenant_id=TENANTS[t],
        ifname=f"wgt{port}",
        listen_port=port,
        table=port,
        address_v4=f"100.{64 + t}.0.1/22",
        address_v6=f"fd00:{t}::1/64",
        pools=(f"100.{64 + t}.0.0/22", f"fd00:{t}::/48"),
        public_key=None,
        peers=tuple(sorted((peer(i, v) for i, v in peers.items()), key=peer_order)),
        policy=tuple(
            PolicyRule(
                src=("100.64.0.0/22",), dst=("198.18.0.0/24",), protocol="tcp", ports=("443",)
            )
            for _ in range(rules)
        ),
    )


# A tenant: which peers (index -> variant of its addresses), a port shift, a rule count.
tenant_shape = st.tuples(
    st.dictionaries(st.integers(0, len(KEYS) - 1), st.integers(0, 2), max_size=len(KEYS)),
    st.integers(0, 1),
    st.integers(0, 2),
)
state_shape = st.dictionaries(st.integers(0, len(TENANTS) - 1), tenant_shape, max_size=3)


def build(version: int, shape: dict[int, tuple[dict[int, int], int, int]]) -> DesiredState:
    tenants = tuple(
        tenant(t, peers, shift, rules) for t, (peers, shift, rules) in sorted(shape.items())
    )
    return DesiredState(version=version, pop_id=POP, tenants=tenants)


@settings(max_examples=300, derandomize=True)
@given(state_shape, state_shape)
def test_merge_of_diff_is_the_new_state(
    before: dict[int, tuple[dict[int, int], int, int]],
    after: dict[int, tuple[dict[int, int], int, int]],
) -> None:
    base, new = build(4, before), build(9, after)
    delta = diff(base, new)
    wire = DesiredDelta.model_validate_json(delta.model_dump_json())  # as sent
    assert merge(base, wire) == new
    # Only what changed travels: a tenant identical in both states is not in the delta.
    old = {t.ifname: t for t in base.tenants}
    for tenant_now in new.tenants:
        sent = tenant_now.ifname in {c.interface.ifname for c in delta.changes}
        assert sent == (old.get(tenant_now.ifname) != tenant_now)


def test_one_peer_added_is_one_upsert() -> None:
    base = build(1, {0: (dict.fromkeys(range(10), 0), 0, 1)})
    new = build(2, {0: (dict.fromkeys(range(11), 0), 0, 1)})
    delta = diff(base, new)
    assert [len(c.upserts) for c in delta.changes] == [1]
    assert delta.changes[0].upserts[0].public_key == KEYS[10]
    assert delta.changes[0].removals == ()
    assert delta.changes[0].peer_count == 11
    assert diff(new, new).changes == ()


def test_deltas_that_do_not_fit_are_refused() -> None:
    base = build(1, {0: ({1: 0, 2: 0}, 0, 0)})
    new = build(2, {0: ({1: 0, 3: 0}, 0, 0)})
    delta = diff(base, new)
    with pytest.raises(DeltaMismatch, match="does not apply"):
        merge(build(5, {0: ({1: 0, 2: 0}, 0, 0)}), delta)
    drifted = build(1, {0: ({2: 0}, 0, 0)})  # the agent's base lost a peer somehow
    with pytest.raises(DeltaMismatch, match="peers after the merge"):
        merge(drifted, delta)
    grown = diff(build(1, {0: ({1: 0}, 0, 0)}), build(2, {0: ({1: 0}, 0, 0), 1: ({}, 0, 0)}))
    with pytest.raises(DeltaMismatch, match="neither in the base"):
        merge(build(1, {}), grown)  # tenant 0 unchanged, but this base never had it


# --- the applier against memory --------------------------------------------------------------
class CountingEngine(FakeEngine):
    def __init__(self) -> None:
        super().__init__()
        self.gets = 0

    def get(self, ifname: str) -> DeviceState:
        self.gets += 1
        return super().get(ifname)


@pytest.fixture
def applier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Applier:
    """The applier on an in-memory engine; the host commands (ip, sysctl, nft) are recorded
    by the real-path tests in tests/dataplane, here they are no-ops."""
    for name in (
        "link_up",
        "ensure_addresses",
        "ensure_table",
        "ensure_rules",
        "enable_forwarding",
        "flush_table",
    ):
        monkeypatch.setattr(host, name, lambda *a, **k: None)
    monkeypatch.setattr(firewall, "apply_ruleset", lambda *a, **k: None)
    return Applier(CountingEngine(), StateDir(tmp_path / "state"))


def peers_on(engine: FakeEngine, ifname: str) -> set[str]:
    return set(engine.devices[ifname].peers)


def test_a_change_is_planned_against_memory(applier: Applier) -> None:
    engine = applier.engine
    assert isinstance(engine, CountingEngine)
    applier.apply(build(1, {0: ({0: 0, 1: 0}, 0, 0)}))
    assert engine.gets == 1  # the first apply of a process reads the truth
    engine.requests.clear()
    applier.apply(build(2, {0: ({0: 0, 1: 1, 4: 0}, 0, 0)}))
    assert engine.gets == 1  # no read-back for a change
    sets = [body for _, body in engine.requests if body.startswith(b"set=1")]
    assert len(sets) == 1
    assert sets[0].count(b"public_key=") == 2  # peer 1 moved, peer 4 new; peer 0 untouched
    assert peers_on(engine, "wgt51820") == {key_to_hex(KEYS[i]) for i in (0, 1, 4)}


def test_drift_is_repaired_by_a_full_read(applier: Applier) -> None:
    engine = applier.engine
    assert isinstance(engine, CountingEngine)
    state = build(1, {0: ({0: 0, 1: 0}, 0, 0)})
    applier.apply(state)
    engine.devices["wgt51820"].peers.clear()  # someone ran `wg set ... remove` by hand
    applier.apply(state)
    assert peers_on(engine, "wgt51820") == set()  # memory says all is well
    applier.apply(state, reread=True)
    assert engine.gets == 2
    assert peers_on(engine, "wgt51820") == {key_to_hex(KEYS[i]) for i in (0, 1)}


def test_a_failed_apply_forgets_what_it_knew(
    applier: Applier, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = applier.engine
    assert isinstance(engine, CountingEngine)
    applier.apply(build(1, {0: ({0: 0}, 0, 0)}))

    def boom(*_a: object, **_k: object) -> None:
        raise OSError("ip: boom")

    monkeypatch.setattr(host, "ensure_table", boom)
    with pytest.raises(OSError, match="boom"):
        applier.apply(build(2, {0: ({0: 0, 2: 0}, 0, 0)}))
    monkeypatch.setattr(host, "ensure_table", lambda *a, **k: None)
    applier.apply(build(2, {0: ({0: 0, 2: 0}, 0, 0)}))
    assert engine.gets == 2  # read back in full after the failure
    assert peers_on(engine, "wgt51820") == {key_to_hex(KEYS[i]) for i in (0, 2)}


def test_a_merged_state_plans_only_what_the_delta_changed(applier: Applier) -> None:
    """The unchanged peers of a merged state are the very objects applied before, and are
    not compared again; a changed or new one (a new object) is, and is set."""
    engine = applier.engine
    assert isinstance(engine, FakeEngine)
    base = build(1, {0: ({0: 0, 1: 0, 2: 0}, 0, 0)})
    applier.apply(base)
    nxt = merge(base, diff(base, build(2, {0: ({0: 0, 1: 1, 4: 0}, 0, 0)})))
    assert nxt.tenants[0].peers[0] is base.tenants[0].peers[0]  # peer 0, unchanged
    engine.requests.clear()
    applier.apply(nxt)
    [body] = [body for _, body in engine.requests if body.startswith(b"set=1")]
    assert body.count(b"public_key=") == 3  # peer 1 moved, peer 4 new, peer 2 removed
    assert body.count(b"remove=true") == 1
    last = merge(nxt, diff(nxt, build(3, {0: ({0: 2, 1: 1, 4: 0}, 0, 0)})))
    engine.requests.clear()
    applier.apply(last)
    [body] = [body for _, body in engine.requests if body.startswith(b"set=1")]
    assert body.count(b"public_key=") == 1
    assert key_to_hex(KEYS[0]).encode() in body
    assert engine.devices["wgt51820"].peers[key_to_hex(KEYS[0])].allowed_ips == [
        "100.64.0.3/32",
        "fd00::3/128",  # peer(0, 2) as the engine shows it
    ]
