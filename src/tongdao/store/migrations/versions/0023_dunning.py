"""dunning: reminders sent for overdue invoices, suspensions for non-payment

Revision ID: 0023_dunning
Revises: 0022_cross_border_mbps_price
Create Date: 2026-12-07 02:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tongdao.store.base

revision: str = "0023_dunning"
down_revision: str | None = "0022_cross_border_mbps_price"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TIME = tongdao.store.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "billing_reminders",
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("outstanding", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("sent_at", _TIME, nullable=False),
        sa.Column("recipients", sa.Integer(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["billing_invoices.id"],
            name=op.f("fk_billing_reminders_invoice_id_billing_invoices"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_reminders_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_reminders")),
        sa.UniqueConstraint(
            "invoice_id", "step", name=op.f("uq_billing_reminders_invoice_id_step")
        ),
    )
    with op.batch_alter_table("billing_reminders", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_reminders_invoice_id"), ["invoice_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_reminders_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "billing_suspensions",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("overdue_total", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("was_active", sa.Boolean(), nullable=False),
        sa.Column("suspended_at", _TIME, nullable=False),
        sa.Column("suspended_by", sa.String(length=200), nullable=False),
        sa.Column("lifted_at", _TIME, nullable=True),
        sa.Column("lifted_by", sa.String(length=200), nullable=False),
        sa.Column("lift_reason", sa.String(length=500), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_suspensions_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_suspensions")),
    )
    with op.batch_alter_table("billing_suspensions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_suspensions_tenant_id"), ["tenant_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("billing_suspensions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_suspensions_tenant_id"))
    op.drop_table("billing_suspensions")
    with op.batch_alter_table("billing_reminders", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_reminders_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_billing_reminders_invoice_id"))
    op.drop_table("billing_reminders")
