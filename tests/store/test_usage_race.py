"""Concurrent reports of one gateway share one allowance per peer, on SQLite and PostgreSQL:
the gateway's row is locked before the peers' credits are read, so ten reports racing for the
same period (new seqs, the same peer, each claiming the whole allowance) credit it once.

Each report is its own HTTP request to a real uvicorn on loopback, released together by a
barrier.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.api.test_usage_bounds import REPORTS, dev_row, post, report, serving, usage
from tests.conftest import both_stores
from tests.store.test_enrolment_race import CLIENTS, TIMEOUT, _together
from tests.support.live import serve
from tests.support.world import World
from tongdao.runtime import Runtime


@pytest.fixture
def server_url(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        yield url


@both_stores
def test_racing_reports_of_one_period_credit_a_peer_once(
    world: World, runtime: Runtime, server_url: str
) -> None:
    _bj, gw, dev = serving(world, max_rate_mbps=8)  # 1,000,000 bytes a second
    end = datetime.now(UTC) - timedelta(minutes=1)
    assert post(world, gw, report(1, [dev_row(world, dev, 1)], end=end))["stored"] == 1
    # The next 30 s, contiguous: 30 s + 60 s of slack = 90,000,000 bytes, once.
    body = report(0, [dev_row(world, dev, 90_000_000)], end=end + timedelta(seconds=30))

    def send(n: int) -> httpx.Response:
        with httpx.Client(base_url=server_url, timeout=TIMEOUT, headers=gw) as client:
            return client.post(REPORTS, json={**body, "seq": 2 + n})

    answers = _together(send)
    assert [a.status_code for a in answers] == [200] * CLIENTS, [a.text for a in answers]
    stored: list[dict[str, Any]] = [a.json() for a in answers]
    assert sum(a["stored"] for a in stored) == 1
    assert usage(world, world.a.id)["rx_bytes"] == 90_000_001
