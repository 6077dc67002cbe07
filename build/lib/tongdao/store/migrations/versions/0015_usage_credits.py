"""usage credits: one allowance per peer and gateway over time; dropped-row events held back

A gateway's reports could replay a period with a new seq, or claim the last five minutes
again and again, each crediting a full allowance. ``usage_credits`` keeps, per (gateway,
tenant, peer key), how far its credited bytes have used the PoP's rate and the period last
credited; ``gateways.dropped_event_at`` / ``dropped_held`` let ``usage_rows_dropped`` audit
events be written at most once per gateway per interval, counting the rest in the next.

Revision ID: 0015_usage_credits
Revises: 0014_privacy_guards
Create Date: 2026-12-06 08:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tongdao.store.base

revision: str = "0015_usage_credits"
down_revision: str | None = "0014_privacy_guards"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_credits",
        sa.Column("gateway_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("peer_key", sa.String(length=44), nullable=False),
        sa.Column("credited_until", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("period_start", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("period_end", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_usage_credits_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "gateway_id", "tenant_id", "peer_key", name=op.f("pk_usage_credits")
        ),
    )
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "dropped_event_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(
            sa.Column(
                "dropped_held",
                sa.JSON(none_as_null=True).with_variant(
                    postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
                ),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.drop_column("dropped_held")
        batch_op.drop_column("dropped_event_at")
    op.drop_table("usage_credits")
