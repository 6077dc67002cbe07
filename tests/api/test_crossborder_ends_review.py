"""Review of s23-smalls (the two ends of a cross-border link): attacks that found defects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.api.test_crossborder_ends import DOWN, UP, linked, transfer
from tests.api.test_gateway import activate, activate_site, enrol, make_pop, make_site, state
from tests.api.test_usage import REPORTS
from tests.conftest import both_stores
from tests.support.world import World
from tongdao.testing.keys import public_key


@both_stores
def test_a_pop_with_reports_does_not_move_across_the_border(world: World) -> None:
    """The overseas end is decided by the PoP's country when a report is stored (the ledger)
    but when the raw records are read (a tenant's usage): moving a PoP that has reported
    across the border would count its past cross-border bytes again in the tenant's raw
    totals, not in its ledger. So such a move is refused, keyed on the field."""
    ln = linked(world)
    end = datetime.now(UTC) - timedelta(minutes=1)
    transfer(world, ln, end)
    url = f"/api/v1/tenants/{world.a.id}/usage"
    params = {
        "since": (end - timedelta(hours=1)).isoformat(),
        "until": end.isoformat(),
        "group_by": "day",
    }
    before = world.client.get(url, params=params, headers=world.a.admin.headers).json()
    assert before["rx_bytes"] + before["tx_bytes"] == UP + DOWN
    for pop, country, region in ((ln.fra, "CN", "CN-SH"), (ln.bj, "JP", "JP-TYO")):
        resp = world.client.patch(
            f"/api/v1/pops/{pop}",
            json={"country": country, "region": region},
            headers=world.admin.headers,
        )
        assert resp.status_code in (409, 422), resp.text
        assert "country" in resp.json()["error"]["fields"], resp.text
    after = world.client.get(url, params=params, headers=world.a.admin.headers).json()
    assert after["rx_bytes"] + after["tx_bytes"] == UP + DOWN


@both_stores
def test_a_pop_abroad_without_a_link_claims_no_cross_border_bytes(world: World) -> None:
    """A gateway abroad whose PoP has no link to a PoP in China carries no cross-border
    bytes: a row claiming some is dropped (``invalid``), not stored with its bytes taken out
    of the tenant's ledger and totals (which let a buggy or malicious agent abroad make any
    tenant traffic unbilled by calling it cross-border)."""
    fra = make_pop(world, "fra", region="DE-FRA", host="203.0.113.20")
    gw = enrol(world, fra)
    activate(world, world.a.id)
    site = make_site(world, ["198.18.7.0/24"], pop_id=fra, connector_public_key=public_key())
    activate_site(world, site)
    state(world, gw)
    far = {p.kind: p for p in state(world, gw).tenants[0].peers}
    end = datetime.now(UTC) - timedelta(minutes=1)
    row = {
        "tenant_id": str(world.a.id),
        "peer_key": far["site"].public_key,
        "peer_kind": "site",
        "peer_ref": site["id"],
        "rx_bytes": DOWN,
        "tx_bytes": UP,
        "cross_border_rx_bytes": DOWN,
        "cross_border_tx_bytes": UP,
    }
    body = {
        "seq": 1,
        "period_start": (end - timedelta(seconds=30)).isoformat(),
        "period_end": end.isoformat(),
        "peers": [row],
    }
    answer = world.client.post(REPORTS, json=body, headers=gw).json()
    assert (answer["stored"], answer["dropped_reasons"]) == (0, {"invalid": 1}), answer
    # The same bytes, none claimed cross-border: stored and counted for the tenant.
    plain = {**row, "cross_border_rx_bytes": 0, "cross_border_tx_bytes": 0}
    answer = world.client.post(
        REPORTS,
        json={
            **body,
            "seq": 2,
            "period_start": end.isoformat(),
            "period_end": (end + timedelta(seconds=30)).isoformat(),
            "peers": [plain],
        },
        headers=gw,
    ).json()
    assert answer["stored"] == 1, answer
