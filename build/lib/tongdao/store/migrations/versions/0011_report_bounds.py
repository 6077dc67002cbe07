"""report bounds: the peers sent to each gateway, the last report's period, a PoP's rate

Usage reports are checked against the peers of the states sent to the gateway
(``gateway_peers``), their periods against the previous report's (``gateways.last_period_*``)
and their bytes against the PoP's ``max_rate_mbps`` (issue 10).

Revision ID: 0011_report_bounds
Revises: 0010_sessions_and_sign_in
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tongdao.store.base

revision: str = "0011_report_bounds"
down_revision: str | None = "0010_sessions_and_sign_in"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gateway_peers",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("gateway_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("peer_key", sa.String(length=44), nullable=False),
        sa.Column("peer_kind", sa.String(length=16), nullable=False),
        sa.Column("peer_ref", sa.String(length=64), nullable=False),
        sa.Column("removed_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_gateway_peers_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateway_peers")),
        sa.UniqueConstraint(
            "gateway_id",
            "peer_key",
            "tenant_id",
            "peer_kind",
            "peer_ref",
            name="uq_gateway_peers_identity",
        ),
    )
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "last_period_start", tongdao.store.base.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "last_period_end", tongdao.store.base.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("sent_version", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("pops", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("max_rate_mbps", sa.Integer(), server_default="10000", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("pops", schema=None) as batch_op:
        batch_op.drop_column("max_rate_mbps")
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.drop_column("sent_version")
        batch_op.drop_column("last_period_end")
        batch_op.drop_column("last_period_start")
    op.drop_table("gateway_peers")
