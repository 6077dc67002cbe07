"""cross-border service per tenant: applications, documents, authorisations

``crossborder_applications`` holds a tenant's application and, once a compliance officer
approves it, the authorisation (carrier's reference, link, bandwidth, validity) that gates the
tenant's path abroad; ``crossborder_documents`` the uploaded evidence with its SHA-256.

Revision ID: 0020_cross_border_service
Revises: 0019_quotas
Create Date: 2026-12-06 20:55:57.169505
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import tongdao.store.base

revision: str = "0020_cross_border_service"
down_revision: str | None = "0019_quotas"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "crossborder_applications",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("internal_use_only", sa.Boolean(), nullable=False),
        sa.Column(
            "site_ids",
            sa.JSON(none_as_null=True).with_variant(
                postgresql.JSONB(none_as_null=True, astext_type=sa.Text()), "postgresql"
            ),
            nullable=False,
        ),
        sa.Column("bandwidth_mbps", sa.Integer(), nullable=False),
        sa.Column("headcount", sa.Integer(), nullable=False),
        sa.Column("manager_name", sa.String(length=100), nullable=False),
        sa.Column("manager_phone", sa.String(length=32), nullable=False),
        sa.Column("manager_email", sa.String(length=320), nullable=False),
        sa.Column("term_start", sa.Date(), nullable=False),
        sa.Column("term_end", sa.Date(), nullable=False),
        sa.Column("notes", sa.String(length=500), nullable=False),
        sa.Column("submitted_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("submitted_by", sa.Uuid(), nullable=True),
        sa.Column("decided_by", sa.Uuid(), nullable=True),
        sa.Column("decided_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("approval_ref", sa.String(length=100), nullable=True),
        sa.Column("link_id", sa.Uuid(), nullable=True),
        sa.Column("approved_mbps", sa.Integer(), nullable=True),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_to", sa.Date(), nullable=True),
        sa.Column("opened_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("warned_30_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("warned_7_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expired_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["decided_by"],
            ["users.id"],
            name=op.f("fk_crossborder_applications_decided_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["links.id"],
            name=op.f("fk_crossborder_applications_link_id_links"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["submitted_by"],
            ["users.id"],
            name=op.f("fk_crossborder_applications_submitted_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_crossborder_applications_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crossborder_applications")),
    )
    with op.batch_alter_table("crossborder_applications", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_crossborder_applications_link_id"), ["link_id"], unique=False
        )
        batch_op.create_index(
            "ix_crossborder_applications_state_tenant", ["state", "tenant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_crossborder_applications_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "crossborder_documents",
        sa.Column("application_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("uploaded_by", sa.Uuid(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["application_id"],
            ["crossborder_applications.id"],
            name=op.f("fk_crossborder_documents_application_id_crossborder_applications"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_crossborder_documents_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by"],
            ["users.id"],
            name=op.f("fk_crossborder_documents_uploaded_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crossborder_documents")),
    )
    with op.batch_alter_table("crossborder_documents", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_crossborder_documents_application_id"), ["application_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_crossborder_documents_tenant_id"), ["tenant_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("crossborder_documents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_crossborder_documents_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_crossborder_documents_application_id"))

    op.drop_table("crossborder_documents")
    with op.batch_alter_table("crossborder_applications", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_crossborder_applications_tenant_id"))
        batch_op.drop_index("ix_crossborder_applications_state_tenant")
        batch_op.drop_index(batch_op.f("ix_crossborder_applications_link_id"))

    op.drop_table("crossborder_applications")
