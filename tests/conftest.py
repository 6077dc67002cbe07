"""Fixtures shared by every tier.

* ``store_url``: a fresh, migrated database per test. SQLite by default; parametrize with
  ``@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)`` (or use
  ``both_stores``) to run on the real PostgreSQL that the session starts too.
* ``runtime`` / ``app`` / ``client``: the control plane on that store, in process.
* ``world``: an operator with one user per operator role, and tenants A and B, each with a
  tenant admin and an employee, all holding tokens.
* ``smtp``: a real SMTP server (aiosmtpd) on loopback that keeps what it receives.

``TONGDAO_TEST_REQUIRE_ALL=1`` (set by ``make test``) turns a missing PostgreSQL or Chromium
into a failure instead of a skip.
"""

from __future__ import annotations

import base64
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings

from tests.support.oidc_provider import OidcProvider, make_template
from tests.support.smtp import SmtpServer
from tests.support.world import World
from tongdao.api.app import create_app
from tongdao.config import Settings, load_settings
from tongdao.runtime import Runtime
from tongdao.store import migrate
from tongdao.testing.postgres import PostgresCluster, find_bindir

# Property tests check results, not speed (speed is for bench/): no per-example deadline, which
# a loaded machine overran (200 ms) on correct code.
hypothesis_settings.register_profile("tongdao", deadline=None)
hypothesis_settings.load_profile("tongdao")

REQUIRE_ALL = os.environ.get("TONGDAO_TEST_REQUIRE_ALL") == "1"
TEST_DATA_KEY = base64.b64encode(bytes(range(32))).decode()
PG_TEMPLATE = "tongdao_template"


def need(what: str) -> None:
    """Skip for a missing prerequisite, or fail when the full suite was asked for."""
    if REQUIRE_ALL:
        pytest.fail(f"{what} is required by the full test run (make test installs it)")
    pytest.skip(f"{what} is not available")


# Tests that share the host's global resources run one after another on one xdist worker:
# network namespaces and wireguard-go (its UAPI sockets in /var/run/wireguard are shared by
# every namespace, so two tests' interfaces of the same name would collide), nftables on the
# host, processes found by name, the virtualenv that ``make run`` installs into. Everything
# else is spread over the workers (``make test`` runs ``-n 2``).
SERIAL_GROUP = "host"
SERIAL_PATHS = ("tests/agent/", "tests/dataplane/", "tests/e2e/", "tests/browser/test_journey.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    strays = [
        item.nodeid
        for item in items
        if item.get_closest_marker("root") is not None and not item.nodeid.startswith(SERIAL_PATHS)
    ]
    if strays:
        raise pytest.UsageError(f"root tests outside SERIAL_PATHS (tests/conftest.py): {strays}")


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scopes by test, except that the host-wide tests are one scope (one worker, in
    order). Written here rather than with ``xdist_group`` marks, which pytest 9.2's node ids
    no longer carry to the scheduler."""
    from xdist.scheduler import LoadScopeScheduling

    class HostSerialScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return SERIAL_GROUP if nodeid.startswith(SERIAL_PATHS) else nodeid

    return HostSerialScheduling(config, log)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    if find_bindir() is None:
        need("PostgreSQL")
    cluster = PostgresCluster(port=54000 + os.getpid() % 1000)
    cluster.start()
    try:
        url = cluster.create_database(PG_TEMPLATE)
        migrate.upgrade(url)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "tongdao.sqlite3"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def store_url(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path
) -> Iterator[str]:
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        target = tmp_path / "tongdao.sqlite3"
        shutil.copyfile(sqlite_template, target)
        yield f"sqlite:///{target}"
        return
    assert kind == "postgresql", kind
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    name = f"t_{uuid.uuid4().hex[:16]}"
    url = cluster.create_database(name, template=PG_TEMPLATE)
    try:
        yield url
    finally:
        cluster.drop_database(name)


both_stores = pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)


def make_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    """Test settings: the test data key and a cheap password hash (``overrides`` win)."""
    fields: dict[str, Any] = {
        "env": "test",
        "data_dir": data_dir,
        "database_url": database_url,
        "data_key": TEST_DATA_KEY,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8,
        # No scheduler thread in the app under test: a test runs the jobs it is about itself
        # (with its fake clock), and none runs behind another test's back.
        "jobs_interval_seconds": 0,
    }
    return load_settings(**(fields | overrides))


@pytest.fixture
def settings(tmp_path: Path, store_url: str) -> Settings:
    return make_settings(tmp_path, store_url)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime.from_settings(settings)
    try:
        yield rt
    finally:
        rt.db.dispose()


@pytest.fixture
def app(runtime: Runtime) -> FastAPI:
    return create_app(runtime)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def world(runtime: Runtime, client: TestClient) -> World:
    return World.build(runtime, client)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def oidc_provider_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_template(tmp_path_factory.mktemp("oidc-idp"))


@pytest.fixture
def oidc_providers(
    tmp_path: Path, oidc_provider_template: Path
) -> Iterator[Callable[..., OidcProvider]]:
    """Starts real OpenID Providers (django-oidc-provider, each its own process); stops them."""
    started: list[OidcProvider] = []

    def start(**options: Any) -> OidcProvider:
        directory = tmp_path / f"oidc-idp-{len(started)}"
        provider = OidcProvider(directory, oidc_provider_template, **options)
        started.append(provider)
        provider.start()
        return provider

    try:
        yield start
    finally:
        for provider in started:
            provider.stop()


@pytest.fixture
def oidc_provider(
    oidc_providers: Callable[..., OidcProvider],
) -> OidcProvider:
    return oidc_providers()
