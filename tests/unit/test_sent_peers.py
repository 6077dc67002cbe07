"""Which peers a newly sent state adds and drops (tongdao.gateway.sent.changes): the merge walk
over compiled (ordered) peers agrees with plain set arithmetic, also on unordered input."""

from __future__ import annotations

import random
import uuid

from tongdao.gateway.desired import DesiredState, Peer, TenantInterface, peer_order
from tongdao.gateway.sent import changes, identities
from tongdao.testing.keys import public_key

KINDS = ("device", "site", "pop")


def _peer(kind: str | None = None) -> Peer:
    return Peer(
        public_key=public_key(),
        kind=kind or random.choice(KINDS),  # type: ignore[arg-type]
        ref=str(uuid.uuid4()),
        allowed_ips=("100.64.0.2/32",),
    )


def _state(
    version: int, by_tenant: dict[uuid.UUID, list[Peer]], ordered: bool = True
) -> DesiredState:
    tenants = tuple(
        TenantInterface(
            tenant_id=tenant,
            ifname=f"wgt{51820 + i}",
            listen_port=51820 + i,
            table=51820 + i,
            address_v4="100.64.0.1/22",
            address_v6="fd00::1/64",
            pools=("100.64.0.0/22", "fd00::/64"),
            peers=tuple(sorted(peers, key=peer_order) if ordered else peers),
        )
        for i, (tenant, peers) in enumerate(by_tenant.items())
    )
    return DesiredState(version=version, pop_id=uuid.UUID(int=1), tenants=tenants)


def test_changes_match_set_arithmetic() -> None:
    rng = random.Random(7)
    random.seed(7)
    tenants = [uuid.uuid4() for _ in range(3)]
    peers = {t: [_peer() for _ in range(40)] for t in tenants}
    before = _state(1, peers)
    for round_ in range(30):
        after_peers = {t: list(ps) for t, ps in peers.items() if rng.random() > 0.1}
        for ps in after_peers.values():
            for _ in range(rng.randrange(4)):
                if ps:
                    ps.pop(rng.randrange(len(ps)))
            ps.extend(_peer() for _ in range(rng.randrange(4)))
            if ps and rng.random() < 0.3:  # same key, another reference
                old = ps.pop(0)
                ps.append(old.model_copy(update={"ref": str(uuid.uuid4())}))
        if rng.random() < 0.2:
            after_peers[uuid.uuid4()] = [_peer() for _ in range(3)]
        for ordered in (True, False):
            after = _state(round_ + 2, after_peers, ordered)
            base = before if ordered else _state(1, {t: ps[::-1] for t, ps in peers.items()}, False)
            added, gone = changes(base, after)
            assert added == set(identities(after) - identities(before)), round_
            assert gone == set(identities(before) - identities(after)), round_
        peers, before = after_peers, _state(round_ + 2, after_peers)


def test_an_unchanged_state_is_no_change() -> None:
    peers = {uuid.uuid4(): [_peer("device") for _ in range(100)]}
    state = _state(1, peers)
    assert changes(state, state) == (set(), set())
    assert changes(state, _state(2, peers)) == (set(), set())
