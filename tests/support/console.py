"""Signed-in console clients for tests: a session cookie per person, CSRF tokens from pages."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response

from tests.support.world import Actor, World
from tongdao.audit.recorder import SYSTEM, set_actor
from tongdao.auth.principal import ALL_SCOPES
from tongdao.auth.service import issue_token
from tongdao.runtime import Ctx, Runtime
from tongdao.tenancy.models import User
from tongdao.web.console import SESSION_COOKIE

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
BASE_URL = "http://127.0.0.1"


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def anonymous(app: FastAPI) -> TestClient:
    return TestClient(app, base_url=BASE_URL, follow_redirects=False)


def session_secret(runtime: Runtime, user_id: uuid.UUID) -> str:
    """A console session for a user, issued as sign-in issues it (no password needed)."""
    with runtime.db.session() as session:
        set_actor(session, SYSTEM)
        user = session.get(User, user_id)
        assert user is not None
        _token, secret = issue_token(
            Ctx(session=session, runtime=runtime),
            user,
            kind="session",
            name="login",
            scopes=ALL_SCOPES,
            ttl=timedelta(hours=1),
        )
        session.commit()
    return secret


class ConsoleClient:
    """A browser-like client signed in as one person."""

    def __init__(self, app: FastAPI, runtime: Runtime, user_id: uuid.UUID) -> None:
        self.http = anonymous(app)
        self.http.cookies.set(SESSION_COOKIE, session_secret(runtime, user_id))
        self._csrf: str | None = None

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.http.get(path, **kwargs)

    @property
    def csrf(self) -> str:
        if self._csrf is None:
            self._csrf = csrf_of(self.http.get("/console/home").text)
        return self._csrf

    def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Response:
        """Post a form as the page would (with this session's CSRF token)."""
        return self.http.post(path, data={"csrf_token": self.csrf, **(data or {})}, **kwargs)


def as_person(world: World, actor: Actor) -> ConsoleClient:
    app: FastAPI = world.client.app  # type: ignore[assignment]
    return ConsoleClient(app, world.runtime, actor.user_id)
