"""Console posts at once, with fewer request threads than posts, on SQLite (issue 10).

The console's sign-in check runs in a dependency, in one worker thread, and the page's work
in another. Had the check begun the post's write transaction, it would have taken SQLite's
write lock in the dependency's thread: with every thread taken by posts waiting for that
lock, the holder's page would never get a thread until the busy timeout (then 503). The check
reads in a transaction of its own (``tongdao.api.deps.reads_apart``)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.support.console import csrf_of, session_secret
from tests.support.world import OPERATOR_ROLES, World
from tongdao.config import Settings
from tongdao.tenancy.models import User
from tongdao.web.console import SESSION_COOKIE


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    """The world's app with two request threads (fewer than the posts below)."""
    return make_settings(tmp_path, store_url, request_threads=2)


def test_more_console_posts_than_request_threads_all_finish(world: World) -> None:
    runtime = world.runtime
    threads = runtime.settings.resolved_request_threads
    assert runtime.db.is_sqlite and threads == 2
    people = [world.actor(role) for role in OPERATOR_ROLES] + [
        world.actor(role, tenant) for role in ("tenant_admin", "employee") for tenant in "ab"
    ]
    assert len(people) > 2 * threads
    forms: list[tuple[Any, dict[str, str], dict[str, str]]] = []
    for person in people:
        headers = {"Cookie": f"{SESSION_COOKIE}={session_secret(runtime, person.user_id)}"}
        page = world.client.get("/console/home", headers=headers)
        assert page.status_code == 200, page.text
        forms.append((person, headers, {"csrf_token": csrf_of(page.text), "language": "zh_CN"}))

    answers: dict[str, int] = {}
    barrier = threading.Barrier(len(forms))

    def post(person: Any, headers: dict[str, str], data: dict[str, str]) -> None:
        barrier.wait(timeout=10)
        resp = world.client.post(
            "/console/language", data=data, headers=headers, follow_redirects=False
        )
        answers[str(person.user_id)] = resp.status_code

    workers = [threading.Thread(target=post, args=form) for form in forms]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert answers == {str(person.user_id): 303 for person, _, _ in forms}
    with runtime.db.session(write=False) as session:
        for person, _, _ in forms:
            user = session.get(User, person.user_id)
            assert user is not None and user.language == "zh_CN", person.role
