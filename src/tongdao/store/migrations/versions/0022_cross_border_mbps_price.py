"""cross-border priced per committed Mbit/s: the plan's basis and price per Mbit/s per month

Revision ID: 0022_cross_border_mbps_price
Revises: 0021_compliance_watch
Create Date: 2026-12-06 22:25:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022_cross_border_mbps_price"
down_revision: str | None = "0021_compliance_watch"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing plans keep pricing cross-border per GB.
    with op.batch_alter_table("billing_plans", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "cross_border_basis", sa.String(length=8), nullable=False, server_default="gb"
            )
        )
        batch_op.add_column(
            sa.Column(
                "cross_border_price_per_mbps",
                sa.Numeric(precision=14, scale=2),
                nullable=False,
                server_default="0.00",
            )
        )
    with op.batch_alter_table("billing_plans", schema=None) as batch_op:
        batch_op.alter_column("cross_border_basis", server_default=None)
        batch_op.alter_column("cross_border_price_per_mbps", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("billing_plans", schema=None) as batch_op:
        batch_op.drop_column("cross_border_price_per_mbps")
        batch_op.drop_column("cross_border_basis")
