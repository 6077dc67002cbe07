"""Fixtures every browser test module shares: one Chromium per module, and the app served
by uvicorn on a free loopback port (a module that needs more, such as seeded data or the
world's already-started app, defines its own ``live``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from playwright.sync_api import Browser

from tests.support.browser import chromium, serve


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def live(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        yield url
