"""Stopping the gateway agent: the loop ends before its HTTP client is closed.

A real control plane (uvicorn on loopback) and the agent's real HTTP client; the data plane is
the in-memory engine with the host commands as no-ops (their real path is tested in
tests/dataplane). Each test stops the agent at one point of its loop, caught on the server
side by a thin ASGI wrapper, and checks that the agent thread ends without an exception
(``RuntimeError: Cannot send a request, as the client has been closed`` was one), that
what was in progress finished, and that the client was closed after the loop.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.support.live import serve
from tests.support.world import World
from tongdao.agent import firewall, host
from tongdao.agent.engine import FakeEngine
from tongdao.agent.gateway import ControlPlane, GatewayAgent


class Watch:
    """ASGI wrapper: notes each request by (method, path), optionally delays it."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.started: dict[tuple[str, str], int] = {}
        self.delay: dict[tuple[str, str], float] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            key = (scope["method"], scope["path"])
            with self.lock:
                self.started[key] = self.started.get(key, 0) + 1
            delay = self.delay.get(key, 0.0)
            if delay:
                await asyncio.sleep(delay)
        await self.app(scope, receive, send)

    def count(self, method: str, path: str) -> int:
        with self.lock:
            return self.started.get((method, path), 0)


POLL = ("GET", "/api/v1/gateway/desired-state")
ACK = ("POST", "/api/v1/gateway/ack")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@dataclass
class Run:
    url: str
    watch: Watch
    agent: GatewayAgent
    pop_id: str
    admin: dict[str, str]
    errors: list[BaseException] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        def target() -> None:
            try:
                self.agent.run()
            except BaseException as exc:  # what would otherwise die with the thread
                self.errors.append(exc)

        self.thread = threading.Thread(target=target, name="agent-under-test", daemon=True)
        self.thread.start()

    def stop(self, within: float) -> float:
        """Stop the agent; the seconds until its thread ended (fails past ``within``)."""
        assert self.thread is not None
        began = time.monotonic()
        self.agent.stop()
        self.thread.join(within + 5)
        took = time.monotonic() - began
        assert not self.thread.is_alive(), "the agent did not stop"
        assert took < within, f"the agent took {took:.1f} s to stop"
        return took

    def applied_version(self) -> int:
        resp = httpx.get(
            f"{self.url}/api/v1/pops/{self.pop_id}/gateways", headers=self.admin, timeout=10
        )
        assert resp.status_code == 200, resp.text
        return int(resp.json()["data"][0]["applied_version"])


@pytest.fixture
def run(
    world: World, app: FastAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Run]:
    for name in ("link_up", "ensure_addresses", "ensure_table", "ensure_rules"):
        monkeypatch.setattr(host, name, lambda *a, **k: None)
    for name in ("enable_forwarding", "flush_table"):
        monkeypatch.setattr(host, name, lambda *a, **k: None)
    monkeypatch.setattr(firewall, "install_ruleset", lambda *a, **k: None)
    monkeypatch.setattr(firewall, "apply_ruleset", lambda *a, **k: None)
    watch = Watch(app)
    admin = world.admin.headers
    with serve(watch) as url:  # type: ignore[arg-type]
        pop = httpx.post(
            f"{url}/api/v1/pops",
            headers=admin,
            timeout=30,
            json={
                "name": "bj-stop",
                "region": "CN-BJ",
                "country": "CN",
                "endpoint_host": "198.51.100.1",
                "port_min": 51820,
                "port_max": 51829,
            },
        )
        assert pop.status_code == 201, pop.text
        pop_id = pop.json()["id"]
        token = httpx.post(
            f"{url}/api/v1/pops/{pop_id}/enrolments", json={}, headers=admin, timeout=30
        ).json()["token"]
        agent = GatewayAgent(url, tmp_path / "gw", token=token, engine=FakeEngine(), poll_wait=20)
        state = Run(url, watch, agent, pop_id, admin)
        try:
            yield state
        finally:
            agent.stop()
            if state.thread is not None:
                state.thread.join(30)


def closed(agent: GatewayAgent) -> bool:
    return agent.control is not None and agent.control.http.is_closed


def test_stop_interrupts_a_long_poll_at_once(run: Run) -> None:
    run.start()
    wait_until(lambda: run.watch.count(*ACK) == 1, 20, "the first ack")
    wait_until(lambda: run.watch.count(*POLL) == 2, 20, "the next long poll")
    time.sleep(0.2)  # the poll is parked on the server (it holds up to 20 s)
    took = run.stop(within=3.0)
    assert run.errors == []
    assert closed(run.agent)
    assert run.watch.count(*POLL) == 2  # no poll after the stop
    print(f"stopped {took * 1000:.0f} ms into a 20 s long poll")


def test_stop_during_an_apply_lets_it_ack_with_an_open_client(run: Run) -> None:
    applying, release = threading.Event(), threading.Event()
    original = run.agent.applier.apply

    def slow_apply(desired: Any, **options: Any) -> None:
        applying.set()
        release.wait(10)
        original(desired, **options)

    run.agent.applier.apply = slow_apply  # type: ignore[method-assign]
    run.start()
    assert applying.wait(20), "the agent never applied"
    stopper = threading.Thread(target=run.stop, args=(10.0,))
    stopper.start()
    wait_until(run.agent.stop_event.is_set, 5, "the stop request")
    assert not closed(run.agent)  # the loop is mid-step: its client stays open
    release.set()
    stopper.join(15)
    assert run.errors == []  # before: RuntimeError, the ack on a closed client
    assert run.watch.count(*ACK) == 1
    assert run.applied_version() == run.agent.version
    assert closed(run.agent)
    assert run.watch.count(*POLL) == 1


def test_stop_while_an_ack_is_in_flight_lets_it_finish(run: Run) -> None:
    run.watch.delay[ACK] = 1.0
    run.start()
    wait_until(lambda: run.watch.count(*ACK) == 1, 20, "the ack to reach the server")
    run.stop(within=5.0)
    assert run.errors == []
    assert run.applied_version() == run.agent.version  # the ack was answered and stored
    assert closed(run.agent)
    assert run.watch.count(*POLL) == 1


def test_interrupt_ends_a_request_in_flight_and_the_next_ones(run: Run) -> None:
    """The mechanism itself: httpx's ``close()`` does not end a request in flight (it waits
    for the server), ``ControlPlane.interrupt()`` does; and it sticks, so a request that had
    not reached its socket yet (a stop landing just as a poll begins) fails as well, without
    reaching the server."""
    run.watch.delay[("GET", "/healthz")] = 3.0
    control = ControlPlane(run.url)
    outcome: list[BaseException | int] = []

    def slow() -> None:
        try:
            outcome.append(control.http.get("/healthz").status_code)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    try:
        thread = threading.Thread(target=slow)
        thread.start()
        wait_until(lambda: run.watch.count("GET", "/healthz") == 1, 10, "the request")
        began = time.monotonic()
        control.interrupt()
        thread.join(10)
        assert time.monotonic() - began < 1.0
        assert len(outcome) == 1 and isinstance(outcome[0], httpx.TransportError)
        with pytest.raises(httpx.TransportError, match="interrupted"):
            control.http.get("/api/v1/openapi.json")
        assert run.watch.count("GET", "/api/v1/openapi.json") == 0
    finally:
        control.close()


def test_a_signal_on_the_loops_own_thread_stops_it(run: Run) -> None:
    """``tongdao gateway run`` stops from its SIGTERM handler, which runs on the loop's own
    thread (the main one), possibly inside the loop's lock: it must neither deadlock nor
    miss the poll. Here a timer signal stops the agent running on the test's main thread."""
    stopped_at: list[float] = []

    def handler(_signum: int, _frame: object) -> None:
        stopped_at.append(time.monotonic())
        run.agent.stop()

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        # a second into the run: after the first ack, in the next long poll (up to 20 s)
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        began = time.monotonic()
        run.agent.run()
        ended = time.monotonic()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert len(stopped_at) == 1
    assert ended - stopped_at[0] < 2.0, f"stopped {ended - stopped_at[0]:.1f} s after the signal"
    assert ended - began < 5.0
    assert run.watch.count(*ACK) == 1
    assert closed(run.agent)
