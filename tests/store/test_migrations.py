"""Migrations are code: they agree with the models and reverse cleanly, on both stores."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect

from tests.conftest import both_stores
from tongdao.store import migrate


@both_stores
def test_models_and_migrations_agree(store_url: str) -> None:
    assert migrate.differences(store_url) == []


@both_stores
def test_downgrade_to_base_and_back(store_url: str) -> None:
    migrate.downgrade(store_url, "base")
    engine = create_engine(store_url)
    try:
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    migrate.upgrade(store_url)
    assert migrate.differences(store_url) == []


def test_readyz_reports_schema(client: object) -> None:
    from fastapi.testclient import TestClient

    assert isinstance(client, TestClient)
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json()["schema"] == migrate.head_revision()
    assert client.get("/healthz").json()["status"] == "ok"


def test_readyz_fails_on_an_old_schema(store_url: str, client: object) -> None:
    from fastapi.testclient import TestClient

    assert isinstance(client, TestClient)
    migrate.downgrade(store_url, "base")
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert "schema" in resp.json()["reason"]


def test_revision_ids_fit_alembic_version_column() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    for rev in script.walk_revisions():
        assert len(rev.revision) <= 32, rev.revision  # alembic_version.version_num
