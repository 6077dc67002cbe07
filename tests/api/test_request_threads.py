"""``TONGDAO_REQUEST_THREADS``: how many requests' blocking work runs at once (issue 10).

Sync endpoints and dependencies run in anyio's default thread pool (40 threads unless told);
the app's lifespan caps it, so that under load requests queue first come, first served
instead of all sharing one interpreter lock and the store's write lock (see bench/load.py)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from anyio import to_thread
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from tests.conftest import make_settings
from tongdao.api.app import create_app
from tongdao.api.deps import AnonCtxDep
from tongdao.config import load_settings
from tongdao.errors import ConfigurationError
from tongdao.runtime import Runtime


def _app_with(tmp_path: Path, store_url: str, threads: int) -> tuple[Runtime, TestClient]:
    runtime = Runtime.from_settings(make_settings(tmp_path, store_url, request_threads=threads))
    return runtime, TestClient(create_app(runtime))


def test_the_default_follows_the_store(tmp_path: Path) -> None:
    assert load_settings(env="test", data_dir=tmp_path).resolved_request_threads == 2
    pg = "postgresql+psycopg://tongdao@db.internal/tongdao"
    assert load_settings(env="test", database_url=pg).resolved_request_threads == 4
    assert load_settings(env="test", request_threads=7).resolved_request_threads == 7


@pytest.mark.parametrize("threads", [1, 3])
def test_no_more_sync_requests_run_at_once_than_the_setting(
    tmp_path: Path, store_url: str, threads: int
) -> None:
    runtime, client = _app_with(tmp_path, store_url, threads)
    running = 0
    most = 0
    lock = threading.Lock()

    @client.app.get("/test-only/slow")  # type: ignore[attr-defined,untyped-decorator]
    def slow() -> dict[str, int]:  # a sync endpoint: it runs in the thread pool
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.15)
        with lock:
            running -= 1
        return {"ok": 1}

    try:
        with client, ThreadPoolExecutor(max_workers=8) as pool:
            tokens = client.portal.call(  # type: ignore[union-attr]
                lambda: to_thread.current_default_thread_limiter().total_tokens
            )
            answers = list(pool.map(lambda _: client.get("/test-only/slow"), range(8)))
    finally:
        runtime.db.dispose()
    assert tokens == threads
    assert [a.status_code for a in answers] == [200] * 8
    assert most == threads  # all 8 were sent at once; only `threads` ran at a time


@pytest.mark.parametrize("value", ["0", "257", "many"])
def test_a_bad_count_is_refused_at_start(
    value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TONGDAO_REQUEST_THREADS", value)
    with pytest.raises((ConfigurationError, ValueError), match="request_threads"):
        load_settings(env="test", data_dir=tmp_path)


@pytest.mark.timeout(120)  # before the fix: every request waited out the gate (30 s)
def test_requests_that_read_after_their_commit_all_finish_with_two_threads(
    tmp_path: Path, store_url: str
) -> None:
    """An endpoint that commits and then reads (to answer with the stored object) must not
    hold SQLite's write lock while FastAPI checks its answer in another worker thread: with
    every thread taken by writers queueing for the lock, that thread would never come (the
    demo with two request threads waited for the gate's 30 s timeout)."""
    runtime, client = _app_with(tmp_path, store_url, 2)
    assert runtime.db.is_sqlite
    seen: list[int] = []

    @client.app.post("/test-only/commit-then-read")  # type: ignore[attr-defined,untyped-decorator]
    def commit_then_read(ctx: AnonCtxDep) -> dict[str, int]:
        ctx.session.execute(text("UPDATE audit_events SET id = id WHERE 0"))  # the write lock
        time.sleep(0.02)
        ctx.session.commit()
        value = ctx.session.execute(text("SELECT 1")).scalar_one()  # a read after the commit
        seen.append(value)
        return {"ok": value}

    started = time.monotonic()
    try:
        with client, ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(
                pool.map(lambda _: client.post("/test-only/commit-then-read"), range(16))
            )
    finally:
        runtime.db.dispose()
    assert [a.status_code for a in answers] == [200] * 16
    assert seen == [1] * 16
    assert time.monotonic() - started < 25  # not one gate timeout (30 s)


def test_a_write_after_a_requests_commit_is_refused(tmp_path: Path, store_url: str) -> None:
    """After its commit a request only reads: a second write would race other writers
    without the lock taken up front, so SQLite refuses it (and the connection is writable
    again for the next request)."""
    runtime, client = _app_with(tmp_path, store_url, 2)
    assert runtime.db.is_sqlite

    @client.app.post("/test-only/write-twice")  # type: ignore[attr-defined,untyped-decorator]
    def write_twice(ctx: AnonCtxDep) -> dict[str, str]:
        ctx.session.execute(text("UPDATE audit_events SET id = id WHERE 0"))
        ctx.session.commit()
        try:
            ctx.session.execute(text("UPDATE audit_events SET id = id WHERE 0"))
        except OperationalError as exc:
            return {"refused": str(exc.orig)}
        return {"refused": ""}

    try:
        with client:
            first = client.post("/test-only/write-twice").json()
            again = client.post("/test-only/write-twice").json()
    finally:
        runtime.db.dispose()
    assert "readonly" in first["refused"]
    assert "readonly" in again["refused"]  # the first write of the next request went through
