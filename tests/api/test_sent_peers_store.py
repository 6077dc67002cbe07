"""The peers recorded as sent to an agent, on both stores: a full diff (another replica
answered in between), an incremental one (this process sent the state before), a peer that
comes back, and the expiry of peers removed long ago."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from tests.api.test_gateway import enrol, make_pop
from tests.conftest import both_stores
from tests.support.world import World
from tongdao.gateway import sent
from tongdao.gateway.desired import DesiredState, Peer, TenantInterface, peer_order
from tongdao.gateway.models import Gateway, GatewayPeer
from tongdao.runtime import Runtime
from tongdao.testing.keys import public_key


def _state(version: int, tenant: uuid.UUID, peers: list[Peer]) -> DesiredState:
    iface = TenantInterface(
        tenant_id=tenant,
        ifname="wgt51820",
        listen_port=51820,
        table=51820,
        address_v4="100.64.0.1/22",
        address_v6="fd00::1/64",
        pools=("100.64.0.0/22", "fd00::/64"),
        peers=tuple(sorted(peers, key=peer_order)),
    )
    return DesiredState(version=version, pop_id=uuid.UUID(int=1), tenants=(iface,))


def _peer() -> Peer:
    return Peer(public_key=public_key(), kind="device", ref=str(uuid.uuid4()), allowed_ips=())


@both_stores
def test_recorded_peers_follow_the_states_sent(world: World, runtime: Runtime) -> None:
    enrol(world, make_pop(world, "bj"))
    with runtime.db.session(write=False) as session:
        gateway_id = session.scalars(select(Gateway.id)).one()
    tenant = world.a.id
    a, b, c = _peer(), _peer(), _peer()
    t0 = datetime.now(UTC)

    def record(state: DesiredState, at: datetime, before: DesiredState | None = None) -> None:
        with runtime.db.session() as session:
            sent.record(session, gateway_id, state, at, before)
            session.commit()

    def rows() -> dict[str, datetime | None]:
        with runtime.db.session(write=False) as session:
            return dict(session.execute(select(GatewayPeer.peer_key, GatewayPeer.removed_at)).all())

    def known(at: datetime) -> set[str]:
        with runtime.db.session(write=False) as session:
            version = session.scalar(select(Gateway.sent_version))
            read = sent.reportable_peers(session, gateway_id, None, at)  # from the store
            kept = sent.reportable_peers(session, gateway_id, version, at)  # this process's copy
        assert sent.KNOWN.get(gateway_id, version) is not None
        out = {p.public_key for p in (a, b, c) if (tenant, p.public_key, p.kind, p.ref) in read}
        assert out == {
            p.public_key for p in (a, b, c) if (tenant, p.public_key, p.kind, p.ref) in kept
        }
        return out

    s1 = _state(1, tenant, [a, b])
    record(s1, t0)
    assert rows() == {a.public_key: None, b.public_key: None}
    # Another replica sent version 2 (b gone, c new): read in full.
    s2 = _state(2, tenant, [a, c])
    record(s2, t0 + timedelta(minutes=1))
    got = rows()
    assert got[a.public_key] is None and got[c.public_key] is None
    assert got[b.public_key] == t0 + timedelta(minutes=1)
    assert known(t0 + timedelta(minutes=30)) == {a.public_key, b.public_key, c.public_key}
    assert known(t0 + sent.RECENTLY_REMOVED + timedelta(minutes=2)) == {a.public_key, c.public_key}
    # This process sent version 2: version 3 is written as the difference (b back, a gone).
    s3 = _state(3, tenant, [b, c])
    record(s3, t0 + timedelta(minutes=2), before=s2)
    got = rows()
    assert (got[b.public_key], got[c.public_key]) == (None, None)
    assert got[a.public_key] == t0 + timedelta(minutes=2)
    # The same version again changes nothing; a peer removed long ago is deleted.
    record(s3, t0 + timedelta(hours=5), before=s2)
    assert rows()[a.public_key] == t0 + timedelta(minutes=2)
    s4 = _state(4, tenant, [c])
    record(s4, t0 + timedelta(hours=5), before=s3)
    assert rows() == {b.public_key: t0 + timedelta(hours=5), c.public_key: None}
    # A peer whose reference changed under the same key: the old pairing is removed.
    c2 = c.model_copy(update={"ref": str(uuid.uuid4())})
    record(_state(5, tenant, [c2]), t0 + timedelta(hours=6), before=s4)
    with runtime.db.session(write=False) as session:
        pairs = dict(session.execute(select(GatewayPeer.peer_ref, GatewayPeer.removed_at)).all())
    assert pairs[c2.ref] is None and pairs[c.ref] == t0 + timedelta(hours=6)
