"""Alembic, driven from code: upgrade to head, compare models with migrations, revisions."""

from __future__ import annotations

from importlib import resources
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine

import tongdao.store.models  # noqa: F401  (registers every table on the metadata)
from tongdao.store import partitions
from tongdao.store.base import Base
from tongdao.store.engine import ensure_sqlite_dir


def alembic_config(url: str) -> Config:
    location = resources.files("tongdao.store") / "migrations"
    cfg = Config()
    cfg.set_main_option("script_location", str(location))
    cfg.set_main_option("file_template", "%%(rev)s")  # rev ids are descriptive already
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _not_a_partition(name: str | None, kind: str, _parent: Any) -> bool:
    """Monthly partitions are made at run time (tongdao.store.partitions), not models."""
    return not (kind == "table" and partitions.is_partition(name))


def differences(url: str) -> list[Any]:
    """What ``alembic check`` would complain about: model changes no migration makes."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": _not_a_partition}
            )
            return list(compare_metadata(ctx, Base.metadata))
    finally:
        engine.dispose()
