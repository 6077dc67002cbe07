"""identity and consent: privacy notices, consents, users.erased_at

Revision ID: 0005_identity_and_consent
Revises: 0004_licence_rules_and_kyc
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tongdao.store.base

revision: str = "0005_identity_and_consent"
down_revision: str | None = "0004_licence_rules_and_kyc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "privacy_notices",
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("transfer_abroad_text", sa.Text(), nullable=False),
        sa.Column("reconsent_required", sa.Boolean(), nullable=False),
        sa.Column("published_by", sa.Uuid(), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_notices")),
        sa.UniqueConstraint("seq", name=op.f("uq_privacy_notices_seq")),
        sa.UniqueConstraint("version", name=op.f("uq_privacy_notices_version")),
    )
    op.create_table(
        "consents",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("notice_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("evidence", sa.String(length=200), nullable=True),
        sa.Column("given_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Uuid(), nullable=True),
        sa.Column("revoked_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.Uuid(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["notice_id"],
            ["privacy_notices.id"],
            name=op.f("fk_consents_notice_id_privacy_notices"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_consents_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_consents_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consents")),
    )
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_consents_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index("ix_consents_user_id_kind", ["user_id", "kind"], unique=False)

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("erased_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True)
        )
    # Rule identity.real_name: a device of a user whose identity is not verified waits.
    op.execute(
        "UPDATE devices SET state = 'pending' WHERE state = 'active' AND user_id IN "
        "(SELECT id FROM users WHERE identity_verified_at IS NULL)"
    )


def downgrade() -> None:
    # The older schema knows no pending devices: they are disabled there.
    op.execute("UPDATE devices SET state = 'disabled' WHERE state = 'pending'")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("erased_at")
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_index("ix_consents_user_id_kind")
        batch_op.drop_index(batch_op.f("ix_consents_tenant_id"))
    op.drop_table("consents")
    op.drop_table("privacy_notices")
