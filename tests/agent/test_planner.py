"""The gateway planner: (desired, actual) → the smallest set of changes."""

from __future__ import annotations

import uuid

from tongdao.agent.engine import FakeEngine, PeerConfig, generate_private_key, public_key_of
from tongdao.agent.planner import plan
from tongdao.gateway.desired import DesiredState, Peer, TenantInterface
from tongdao.testing.keys import public_key

TENANT = uuid.uuid4()


def tenant(peers: tuple[Peer, ...], port: int = 51820) -> TenantInterface:
    return TenantInterface(
        tenant_id=TENANT,
        ifname=f"wgt{port}",
        listen_port=port,
        table=port,
        address_v4="100.64.0.1/22",
        address_v6="fd00:1:2::1/64",
        pools=("100.64.0.0/22", "fd00:1:2::/48"),
        peers=peers,
    )


def device(n: int, key: str | None = None) -> Peer:
    return Peer(
        public_key=key or public_key(),
        kind="device",
        ref=str(n),
        allowed_ips=(f"100.64.0.{n}/32", f"fd00:1:2::{n:x}/128"),
    )


def converge(engine: FakeEngine, desired: DesiredState, keys: dict[str, str]) -> None:
    """What the applier does with the engine part of a plan."""
    actual = {
        t.ifname: (engine.get(t.ifname) if t.ifname in engine.list_interfaces() else None)
        for t in desired.tenants
    }
    for step in plan(desired, actual, {n: public_key_of(k) for n, k in keys.items()}).interfaces:
        if step.create:
            engine.ensure_interface(step.ifname)
        if step.configure_key or step.configure_port:
            engine.configure(
                step.ifname, private_key=keys[step.ifname], listen_port=step.tenant.listen_port
            )
        if step.changes_peers:
            engine.set_peers(step.ifname, step.upserts, step.removals)


def test_new_interface_gets_key_port_and_every_peer() -> None:
    peers = (device(2), device(3))
    desired = DesiredState(version=1, pop_id=uuid.uuid4(), tenants=(tenant(peers),))
    (step,) = plan(desired, {}, {"wgt51820": public_key()}).interfaces
    assert step.create and step.configure_key and step.configure_port
    assert {p.public_key for p in step.upserts} == {p.public_key for p in peers}
    assert step.removals == ()
    assert "100.64.0.0/22" in step.routes


def test_converged_interface_plans_nothing() -> None:
    engine = FakeEngine()
    keys = {"wgt51820": generate_private_key()}
    desired = DesiredState(
        version=1, pop_id=uuid.uuid4(), tenants=(tenant((device(2), device(3))),)
    )
    converge(engine, desired, keys)
    actual = {"wgt51820": engine.get("wgt51820")}
    (step,) = plan(desired, actual, {"wgt51820": public_key_of(keys["wgt51820"])}).interfaces
    assert not (step.create or step.configure_key or step.configure_port or step.changes_peers)


def test_one_change_touches_one_peer() -> None:
    engine = FakeEngine()
    keys = {"wgt51820": generate_private_key()}
    peers = tuple(device(n) for n in range(2, 102))
    v1 = DesiredState(version=1, pop_id=uuid.uuid4(), tenants=(tenant(peers),))
    converge(engine, v1, keys)
    changed = peers[10].model_copy(update={"allowed_ips": ("100.64.0.200/32",)})
    v2 = v1.model_copy(
        update={"tenants": (tenant((*peers[:10], changed, *peers[11:50], device(150))),)}
    )
    actual = {"wgt51820": engine.get("wgt51820")}
    (step,) = plan(v2, actual, {"wgt51820": public_key_of(keys["wgt51820"])}).interfaces
    # in the desired state's order
    assert [p.public_key for p in step.upserts] == [
        changed.public_key,
        v2.tenants[0].peers[-1].public_key,
    ]
    assert len(step.removals) == 50
    # only the peer that is not there yet may leave WireGuard's defaults unwritten
    assert {p.public_key: p.new for p in step.upserts} == {
        changed.public_key: False,
        v2.tenants[0].peers[-1].public_key: True,
    }
    converge(engine, v2, keys)
    state = engine.get("wgt51820")
    assert state.peers[changed.public_key].allowed_ips == ("100.64.0.200/32",)
    assert len(state.peers) == 51


def test_lost_key_is_set_again_and_unwanted_interfaces_go() -> None:
    engine = FakeEngine()
    keys = {"wgt51820": generate_private_key()}
    desired = DesiredState(version=1, pop_id=uuid.uuid4(), tenants=(tenant((device(2),)),))
    converge(engine, desired, keys)
    engine.configure("wgt51820", private_key=generate_private_key())  # someone else's key
    actual = {"wgt51820": engine.get("wgt51820"), "wgt51821": None, "eth0": None}
    result = plan(desired, actual, {"wgt51820": public_key_of(keys["wgt51820"])})
    assert result.interfaces[0].configure_key
    assert result.delete == ("wgt51821",)  # never an interface that is not ours by name
    assert result.rules == {"wgt51820": 51820}


def test_endpoint_and_keepalive_changes_are_sent() -> None:
    pop_peer = Peer(
        public_key=public_key(),
        kind="pop",
        ref="x",
        allowed_ips=("198.18.0.0/24",),
        endpoint="203.0.113.20:51820",
        keepalive=25,
    )
    engine = FakeEngine()
    keys = {"wgt51820": generate_private_key()}
    desired = DesiredState(version=1, pop_id=uuid.uuid4(), tenants=(tenant((pop_peer,)),))
    converge(engine, desired, keys)
    moved = pop_peer.model_copy(update={"endpoint": "203.0.113.21:51820"})
    v2 = desired.model_copy(update={"tenants": (tenant((moved,)),)})
    (step,) = plan(
        v2, {"wgt51820": engine.get("wgt51820")}, {"wgt51820": public_key_of(keys["wgt51820"])}
    ).interfaces
    assert step.upserts == (PeerConfig.from_desired(moved),)


def test_keepalive_turned_off_on_a_peer_that_had_one() -> None:
    engine = FakeEngine()
    keys = {"wgt51820": generate_private_key()}
    site = device(2).model_copy(update={"keepalive": 25})
    v1 = DesiredState(version=1, pop_id=uuid.uuid4(), tenants=(tenant((site,)),))
    converge(engine, v1, keys)
    assert engine.get("wgt51820").peers[site.public_key].keepalive == 25
    v2 = v1.model_copy(
        update={"tenants": (tenant((site.model_copy(update={"keepalive": None}),)),)}
    )
    converge(engine, v2, keys)
    assert engine.get("wgt51820").peers[site.public_key].keepalive is None
