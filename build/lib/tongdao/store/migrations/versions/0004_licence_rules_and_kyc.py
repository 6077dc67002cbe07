"""licence rules and KYC

Tenants get their vetting record: manual verification of a USCC whose check character fails,
foreign-invested status with its evidence, and the reason for their state (a rejection's).

Revision ID: 0004_licence_rules_and_kyc
Revises: 0003_connectors_and_usage_record
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tongdao.store.base

revision: str = "0004_licence_rules_and_kyc"
down_revision: str | None = "0003_connectors_and_usage_record"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "uscc_verified_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch_op.add_column(sa.Column("uscc_verified_by", sa.Uuid(), nullable=True))
        batch_op.add_column(
            sa.Column("foreign_invested", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "foreign_invested_evidence",
                sa.String(length=200),
                server_default="",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("state_reason", sa.String(length=500), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("state_reason")
        batch_op.drop_column("foreign_invested_evidence")
        batch_op.drop_column("foreign_invested")
        batch_op.drop_column("uscc_verified_by")
        batch_op.drop_column("uscc_verified_at")
