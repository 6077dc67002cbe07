"""ingest: usage reports' updates without index churn

Every usage report updates a row per peer in ``open_connections``, ``usage_credits`` and the
hour's ``usage_hourly``. On PostgreSQL, rows on a full page cannot be updated in place (HOT):
each update writes new index entries too. This leaves room in their pages (fillfactor) and
drops the index on ``open_connections.last_active_at``, which every update had to maintain
(the sweep of quiet gateways now finds them by ``gateways.last_seen_at``).

Revision ID: 0028_ingest_hot
Revises: 0026_webauthn
Create Date: 2026-12-07 05:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0028_ingest_hot"
down_revision: str | None = "0026_webauthn"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The same values as tongdao.store.partitions.FILLFACTOR and the tables below (percent).
_UPDATED = {"open_connections": 50, "usage_credits": 50}
_HOURLY = 70


def _hourly_partitions() -> list[str]:
    rows = op.get_bind().execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'usage_hourly'"
        )
    )
    return [str(name) for name in rows.scalars()]


def upgrade() -> None:
    with op.batch_alter_table("open_connections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_open_connections_last_active_at"))
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, percent in _UPDATED.items():
        op.execute(f"ALTER TABLE {table} SET (fillfactor = {percent})")
    for name in _hourly_partitions():
        op.execute(f"ALTER TABLE {name} SET (fillfactor = {_HOURLY})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in _hourly_partitions():
            op.execute(f"ALTER TABLE {name} RESET (fillfactor)")
        for table in _UPDATED:
            op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
    with op.batch_alter_table("open_connections", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_open_connections_last_active_at"), ["last_active_at"], unique=False
        )
