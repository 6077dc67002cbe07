"""billing: plans, subscriptions, invoices and lines, credit notes, payments, number series; job leases

``billing_number_series`` holds one row per gapless series (invoice, credit_note): a number is
taken in the transaction that writes its document. ``job_leases`` lets one server replica of
several run a scheduled job (tongdao.jobs.lease).

Revision ID: 0017_billing
Revises: 0016_user_language
Create Date: 2026-12-06 15:33:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tongdao.store.base

revision: str = "0017_billing"
down_revision: str | None = "0016_user_language"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "billing_number_series",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("last_value", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_billing_number_series")),
    )
    op.create_table(
        "billing_plans",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("name_zh", sa.String(length=100), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("vat_rate", sa.Numeric(precision=5, scale=4), nullable=False),
        sa.Column("base_fee", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("seat_price", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("seat_basis", sa.String(length=16), nullable=False),
        sa.Column("site_price", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("included_traffic_gb", sa.Integer(), nullable=False),
        sa.Column("traffic_price_per_gb", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("cross_border_price_per_gb", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("payment_terms_days", sa.Integer(), nullable=False),
        sa.Column("base_tax_code", sa.String(length=19), nullable=False),
        sa.Column("seat_tax_code", sa.String(length=19), nullable=False),
        sa.Column("site_tax_code", sa.String(length=19), nullable=False),
        sa.Column("traffic_tax_code", sa.String(length=19), nullable=False),
        sa.Column("cross_border_tax_code", sa.String(length=19), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_plans")),
        sa.UniqueConstraint("name", name=op.f("uq_billing_plans_name")),
    )
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_done", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_job_leases")),
    )
    op.create_table(
        "billing_invoices",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("dedupe_key", sa.String(length=80), nullable=False),
        sa.Column("month", sa.String(length=7), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("corrects_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("subtotal", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("vat", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("total", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("amount_paid", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("buyer_name", sa.String(length=200), nullable=False),
        sa.Column("buyer_tax_id", sa.String(length=18), nullable=False),
        sa.Column("buyer_address_phone", sa.String(length=300), nullable=False),
        sa.Column("buyer_bank", sa.String(length=200), nullable=False),
        sa.Column("buyer_account", sa.String(length=64), nullable=False),
        sa.Column("seller_name", sa.String(length=200), nullable=False),
        sa.Column("seller_tax_id", sa.String(length=18), nullable=False),
        sa.Column("seller_address_phone", sa.String(length=300), nullable=False),
        sa.Column("issued_on", sa.Date(), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("payment_terms_days", sa.Integer(), nullable=False),
        sa.Column("fapiao_number", sa.String(length=20), nullable=True),
        sa.Column("voided_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["corrects_id"],
            ["billing_invoices.id"],
            name=op.f("fk_billing_invoices_corrects_id_billing_invoices"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_invoices_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_invoices")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_billing_invoices_dedupe_key")),
        sa.UniqueConstraint("kind", "number", name=op.f("uq_billing_invoices_kind_number")),
    )
    with op.batch_alter_table("billing_invoices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_billing_invoices_state"), ["state"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_billing_invoices_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "billing_subscriptions",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("plan_id", sa.Uuid(), nullable=True),
        sa.Column("starts_on", sa.Date(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["billing_plans.id"],
            name=op.f("fk_billing_subscriptions_plan_id_billing_plans"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_subscriptions_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_subscriptions")),
        sa.UniqueConstraint(
            "tenant_id", "starts_on", name=op.f("uq_billing_subscriptions_tenant_id_starts_on")
        ),
    )
    with op.batch_alter_table("billing_subscriptions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_subscriptions_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "billing_invoice_lines",
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("tax_code", sa.String(length=19), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("quantity", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("vat_rate", sa.Numeric(precision=5, scale=4), nullable=False),
        sa.Column("vat", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("usage_key", sa.String(length=64), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["billing_invoices.id"],
            name=op.f("fk_billing_invoice_lines_invoice_id_billing_invoices"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_invoice_lines_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_invoice_lines")),
    )
    with op.batch_alter_table("billing_invoice_lines", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_invoice_lines_invoice_id"), ["invoice_id"], unique=False
        )

    op.create_table(
        "billing_payments",
        sa.Column("invoice_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["billing_invoices.id"],
            name=op.f("fk_billing_payments_invoice_id_billing_invoices"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_billing_payments_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_payments")),
    )
    with op.batch_alter_table("billing_payments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_billing_payments_invoice_id"), ["invoice_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_billing_payments_tenant_id"), ["tenant_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("billing_payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_payments_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_billing_payments_invoice_id"))

    op.drop_table("billing_payments")
    with op.batch_alter_table("billing_invoice_lines", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_invoice_lines_invoice_id"))

    op.drop_table("billing_invoice_lines")
    with op.batch_alter_table("billing_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_subscriptions_tenant_id"))

    op.drop_table("billing_subscriptions")
    with op.batch_alter_table("billing_invoices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_billing_invoices_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_billing_invoices_state"))

    op.drop_table("billing_invoices")
    op.drop_table("job_leases")
    op.drop_table("billing_plans")
    op.drop_table("billing_number_series")
