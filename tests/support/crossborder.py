"""Cross-border authorisation for tests that need a tenant carried abroad (rule
crossborder.tenant_authorised): its admin applies with the documents, the compliance officer
approves it on the link, valid from today for a year."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.support.world import Actor, World
from tongdao.billing.money import shanghai_today
from tongdao.testing import crossborder

API = "/api/v1"


def _call(world: World, actor: Actor) -> Any:
    def do(method: str, path: str, **kw: Any) -> Any:
        resp = world.client.request(method, API + path, headers=actor.headers, **kw)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json() if resp.content else None

    return do


def _upload(world: World, actor: Actor) -> Any:
    def up(path: str, kind: str, content: bytes, content_type: str) -> Any:
        resp = world.client.post(
            API + path,
            params={"kind": kind},
            content=content,
            headers={**actor.headers, "Content-Type": content_type},
        )
        assert resp.status_code == 201, resp.text
        return resp.json()

    return up


def authorise_abroad(
    world: World, site_ids: list[str], link_id: str, *, tenant: str = "a", mbps: int = 10
) -> dict[str, Any]:
    """The tenant's approved authorisation on the link (its application, approved)."""
    fixture = world.a if tenant == "a" else world.b
    app = crossborder.apply(
        _call(world, fixture.admin),
        _upload(world, fixture.admin),
        str(fixture.id),
        site_ids,
        mbps,
    )
    today = shanghai_today(world.runtime.clock())
    return crossborder.approve(
        _call(world, world.operators["compliance_officer"]),
        app["id"],
        link_id,
        mbps,
        today.isoformat(),
        (today + timedelta(days=365)).isoformat(),
    )
