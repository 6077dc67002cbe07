"""A gateway's repeated reports, with fewer request threads than reports, on SQLite (issue 10).

A report that is a duplicate (its seq already stored) used to answer without ending its
write transaction, which on SQLite holds the write lock; FastAPI then checks the answer in
another worker thread. With every thread taken by requests queueing for the lock, that thread
never came until the lock's timeout. Found by review after the demo's deadlock (a read after a
commit) was fixed; see ``tongdao.store.engine``, "one write per request"."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.api.test_usage_bounds import post, report, serving
from tests.conftest import make_settings
from tests.support.world import World
from tongdao.config import Settings


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    """The world's app with two request threads (fewer than the reports below)."""
    return make_settings(tmp_path, store_url, request_threads=2)


@pytest.mark.timeout(120)  # before the fix: the requests waited out the write gate (30 s)
def test_duplicate_reports_beside_writers_all_finish_with_two_threads(world: World) -> None:
    assert world.runtime.db.is_sqlite
    assert world.runtime.settings.resolved_request_threads == 2
    _bj, gw, _dev = serving(world)
    assert post(world, gw, report(1, []))["accepted"] is True
    answers: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(12)

    def duplicate() -> None:
        barrier.wait(timeout=10)
        resp = world.client.post("/api/v1/gateway/reports", json=report(1, []), headers=gw)
        with lock:
            answers.append(resp.status_code if resp.json().get("duplicate") else -1)

    def writer(n: int) -> None:
        barrier.wait(timeout=10)
        resp = world.client.post(
            f"/api/v1/tenants/{world.a.id}/groups",
            json={"name": f"group {n}"},
            headers=world.a.admin.headers,
        )
        with lock:
            answers.append(resp.status_code)

    started = time.monotonic()
    workers = [threading.Thread(target=duplicate) for _ in range(8)]
    workers += [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=100)
    assert sorted(answers) == [200] * 8 + [201] * 4
    assert time.monotonic() - started < 25  # not one wait for the gate's 30 s
