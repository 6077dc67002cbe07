"""Cross-border bytes are reported by the gateways at both ends of a registered link: the
domestic end (the PoP in China) measures and bills them, the overseas end's counts are kept
for reconciliation only (tongdao.gateway.ledger, "Two ends of one link")."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from tests.api.test_gateway import (
    activate,
    activate_site,
    device,
    enrol,
    make_pop,
    make_site,
    state,
)
from tests.api.test_usage import REPORTS
from tests.conftest import both_stores
from tests.support.billing import add_plan, subscribe
from tests.support.crossborder import authorise_abroad
from tests.support.privacy import consent_abroad, publish_notice
from tests.support.world import World
from tongdao.billing.money import shanghai_today
from tongdao.billing.service import bill_tenant, gigabytes
from tongdao.gateway.ledger_routes import month_totals
from tongdao.quotas.service import month_to_date
from tongdao.testing.keys import public_key

UP = 3_000_000  # the employee's device in China sends this to the HQ abroad
DOWN = 5_000_000  # and the HQ sends this back


@dataclass
class Link:
    bj: str
    fra: str
    link: str
    gw_bj: dict[str, str]
    gw_fra: dict[str, str]
    dev: dict[str, Any]
    site: dict[str, Any]


def linked(world: World) -> Link:
    """Tenant A: a device homed at a PoP in Beijing, its HQ site abroad behind a PoP in
    Frankfurt, the two PoPs on a registered link the tenant is authorised on; both gateways
    have their desired states (so their reports' peers count)."""
    bj = make_pop(world, "bj")
    fra = make_pop(world, "fra", region="DE-FRA", host="203.0.113.20")
    gw_bj, gw_fra = enrol(world, bj), enrol(world, fra)
    activate(world, world.a.id)
    dev = device(world)
    site = make_site(world, ["198.18.7.0/24"], pop_id=fra, connector_public_key=public_key())
    activate_site(world, site)
    for gw in (gw_bj, gw_fra):
        state(world, gw)
        resp = world.client.put(
            f"/api/v1/gateway/interfaces/{world.a.id}",
            json={"public_key": public_key()},
            headers=gw,
        )
        assert resp.status_code == 204, resp.text
    resp = world.client.post(
        "/api/v1/links",
        json={
            "name": "bj-fra",
            "pop_a_id": bj,
            "pop_b_id": fra,
            "circuit_ref": "CU-1",
            "approval_ref": "工信部国际〔2026〕7号",
            "capacity_mbps": 100,
        },
        headers=world.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    link = str(resp.json()["id"])
    authorise_abroad(world, [site["id"]], link)
    publish_notice(world.client, world.admin.headers)
    consent_abroad(world.client, world.a.id, world.a.employee.user_id, world.a.employee.headers)
    return Link(bj, fra, link, gw_bj, gw_fra, dev, site)


def _row(
    world: World, key: str, kind: str, ref: str, rx: int, tx: int, xrx: int = 0, xtx: int = 0
) -> dict[str, Any]:
    return {
        "tenant_id": str(world.a.id),
        "peer_key": key,
        "peer_kind": kind,
        "peer_ref": ref,
        "rx_bytes": rx,
        "tx_bytes": tx,
        "cross_border_rx_bytes": xrx,
        "cross_border_tx_bytes": xtx,
    }


def transfer(world: World, ln: Link, end: datetime, seq: int = 1) -> None:
    """What the two gateways report for one transfer: UP bytes from the device to the HQ,
    DOWN bytes back. Beijing sees the device (rx UP, tx DOWN, all of it over the link) and
    its transit peer Frankfurt; Frankfurt sees the HQ's connector (tx UP, rx DOWN, all of
    it over the link) and its transit peer Beijing."""
    peers = {p.kind: p for p in state(world, ln.gw_bj).tenants[0].peers}
    far = {p.kind: p for p in state(world, ln.gw_fra).tenants[0].peers}
    reports = (
        (
            ln.gw_bj,
            [
                _row(world, peers["device"].public_key, "device", ln.dev["id"], UP, DOWN, UP, DOWN),
                _row(world, peers["pop"].public_key, "pop", ln.fra, DOWN, UP),
            ],
        ),
        (
            ln.gw_fra,
            [
                _row(world, far["site"].public_key, "site", ln.site["id"], DOWN, UP, DOWN, UP),
                _row(world, far["pop"].public_key, "pop", ln.bj, UP, DOWN),
            ],
        ),
    )
    for gw, rows in reports:
        body = {
            "seq": seq,
            "period_start": (end - timedelta(seconds=30)).isoformat(),
            "period_end": end.isoformat(),
            "peers": rows,
        }
        answer = world.client.post(REPORTS, json=body, headers=gw).json()
        assert (answer["stored"], answer["dropped"]) == (2, 0), answer


@both_stores
def test_one_transfer_is_billed_once_at_the_domestic_end(world: World) -> None:
    ln = linked(world)
    end = datetime.now(UTC) - timedelta(minutes=1)
    transfer(world, ln, end)
    month = shanghai_today(end).replace(day=1)
    once = UP + DOWN
    # The usage API: the tenant's series and its raw totals count the transfer once ...
    got = world.client.get(
        f"/api/v1/tenants/{world.a.id}/usage/series",
        params={"granularity": "month"},
        headers=world.a.admin.headers,
    ).json()
    assert (got["rx_bytes"], got["tx_bytes"]) == (UP, DOWN)
    assert (got["cross_border_rx_bytes"], got["cross_border_tx_bytes"]) == (UP, DOWN)
    raw = world.client.get(
        f"/api/v1/tenants/{world.a.id}/usage",
        params={"since": (end - timedelta(hours=1)).isoformat(), "until": end.isoformat()},
        headers=world.a.admin.headers,
    ).json()
    assert raw["rx_bytes"] + raw["tx_bytes"] == once
    # ... attributed at the domestic end to the device (and its owner) that sent it; the HQ
    # site's series holds none of it (the HQ moved nothing that stayed abroad).
    dev = world.client.get(
        f"/api/v1/tenants/{world.a.id}/devices/{ln.dev['id']}/usage/series",
        params={"granularity": "month"},
        headers=world.a.admin.headers,
    ).json()
    assert (dev["cross_border_rx_bytes"], dev["cross_border_tx_bytes"]) == (UP, DOWN)
    hq = world.client.get(
        f"/api/v1/tenants/{world.a.id}/sites/{ln.site['id']}/usage/series",
        params={"granularity": "month"},
        headers=world.a.admin.headers,
    ).json()
    assert [hq[k] for k in ("rx_bytes", "tx_bytes", "cross_border_rx_bytes")] == [0, 0, 0]
    with world.runtime.db.session() as session:
        # Billing's and quotas' figures: once.
        totals = month_totals(session, world.a.id, month)
        assert totals["cross_border_rx_bytes"] + totals["cross_border_tx_bytes"] == once
        assert totals["rx_bytes"] + totals["tx_bytes"] == once
        text = f"{month:%Y-%m}"
        assert month_to_date(session, world.a.id, month=text) == once
        assert month_to_date(session, world.a.id, world.a.employee.user_id, month=text) == once
    # The invoice: one cross-border line of the transfer's GB, once.
    plan = add_plan(world.runtime, "XB", cross_border_price_per_gb="100.00")
    subscribe(world.runtime, world.a.id, plan, month)
    with world.runtime.db.session() as session:
        invoice = bill_tenant(session, world.a.id, month)
        assert invoice is not None
        lines = {line.kind: line for line in invoice.lines}
        assert lines["cross_border"].quantity == gigabytes(once)
        session.rollback()


@both_stores
def test_the_overseas_end_is_kept_for_reconciliation(world: World) -> None:
    ln = linked(world)
    end = datetime.now(UTC) - timedelta(minutes=1)
    transfer(world, ln, end)
    day = shanghai_today(end)
    url = f"/api/v1/links/{ln.link}/usage/reconciliation"
    params = {"since": (day - timedelta(days=1)).isoformat(), "until": day.isoformat()}
    resp = world.client.get(url, params=params, headers=world.admin.headers)
    assert resp.status_code == 200, resp.text
    got = resp.json()
    assert (got["domestic_pop_id"], got["overseas_pop_id"]) == (ln.bj, ln.fra)
    (row,) = got["rows"]
    assert row["day"] == day.isoformat() and row["tenant_id"] == str(world.a.id)
    assert (row["domestic_outbound_bytes"], row["domestic_inbound_bytes"]) == (UP, DOWN)
    assert (row["overseas_outbound_bytes"], row["overseas_inbound_bytes"]) == (UP, DOWN)
    assert (row["outbound_difference"], row["inbound_difference"]) == (0, 0)
    # Operator staff read it; a tenant does not (the link is the operator's).
    for role in ("billing_clerk", "auditor", "compliance_officer"):
        headers = world.operators[role].headers
        assert world.client.get(url, params=params, headers=headers).status_code == 200
    assert world.client.get(url, headers=world.a.admin.headers).status_code == 403
    missing = f"/api/v1/links/{uuid.uuid4()}/usage/reconciliation"
    assert world.client.get(missing, headers=world.admin.headers).status_code == 404
    bad = world.client.get(
        url, params={"since": "2026-12-02", "until": "2026-12-01"}, headers=world.admin.headers
    )
    assert bad.status_code == 422 and "since" in bad.json()["error"]["fields"], bad.text
    # CSV: the same rows.
    csv = world.client.get(url, params={**params, "format": "csv"}, headers=world.admin.headers)
    assert csv.status_code == 200 and csv.text.splitlines()[1].startswith(day.isoformat())


@both_stores
def test_a_quota_counts_the_transfer_once(world: World) -> None:
    """A tenant cap of 12 MB, a transfer of 8 MB: reached only with the second transfer
    (counting both ends, 16 MB, reached it with the first). A user's cap counted once
    already: it counts the user's devices, and the HQ site abroad is nobody's."""
    ln = linked(world)
    resp = world.client.put(
        f"/api/v1/tenants/{world.a.id}/limits",
        json={"tenant_cap_mb": 12},
        headers=world.admin.headers,
    )
    assert resp.status_code == 200, resp.text
    end = datetime.now(UTC) - timedelta(minutes=2)
    transfer(world, ln, end)
    assert _events(world) == []
    transfer(world, ln, end + timedelta(seconds=30), seq=2)
    assert _events(world) == [80, 100]


def _events(world: World) -> list[int]:
    from tongdao.quotas.models import QuotaEvent

    with world.runtime.db.session(write=False) as session:
        return sorted(
            int(e.level)
            for e in session.scalars(select(QuotaEvent).where(QuotaEvent.subject == "tenant"))
        )


@both_stores
def test_the_upgrade_corrects_the_ledger_rows_written_before(world: World, store_url: str) -> None:
    """Revision 0031 moves the overseas ends' cross-border bytes already in the ledger out of
    it (a store taken back to 0025, where they were counted in, and upgraded again)."""
    from tongdao.store import migrate

    ln = linked(world)
    end = datetime.now(UTC) - timedelta(minutes=1)
    transfer(world, ln, end)
    month = shanghai_today(end).replace(day=1)
    world.runtime.db.dispose()
    migrate.downgrade(store_url, "0025_scim")
    with world.runtime.db.session(write=False) as session:
        totals = month_totals(session, world.a.id, month)
    assert totals["cross_border_rx_bytes"] + totals["cross_border_tx_bytes"] == 2 * (UP + DOWN)
    world.runtime.db.dispose()
    migrate.upgrade(store_url)
    with world.runtime.db.session(write=False) as session:
        totals = month_totals(session, world.a.id, month)
        assert (totals["cross_border_rx_bytes"], totals["cross_border_tx_bytes"]) == (UP, DOWN)
        assert (totals["rx_bytes"], totals["tx_bytes"]) == (UP, DOWN)
    resp = world.client.get(
        f"/api/v1/links/{ln.link}/usage/reconciliation", headers=world.admin.headers
    )
    (row,) = resp.json()["rows"]
    assert (row["overseas_outbound_bytes"], row["overseas_inbound_bytes"]) == (UP, DOWN)
