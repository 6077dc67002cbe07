"""Review of s23-smalls (the two ends of a cross-border link): attacks that found defects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.api.test_crossborder_ends import DOWN, UP, linked, transfer
from tests.conftest import both_stores
from tests.support.world import World


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
