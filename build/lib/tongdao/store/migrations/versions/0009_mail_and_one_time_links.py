"""mail and one-time links: SMTP settings, the mail outbox, one-time links, reset requests

Revision ID: 0009_mail_and_one_time_links
Revises: 0008_agent_credentials
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tongdao.store.base

revision: str = "0009_mail_and_one_time_links"
down_revision: str | None = "0008_agent_credentials"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> tongdao.store.base.UTCDateTime:
    return tongdao.store.base.UTCDateTime(timezone=True)


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "mail_settings",
        sa.Column("host", sa.String(length=253), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("security", sa.String(length=16), nullable=False),
        sa.Column("username", sa.String(length=320), nullable=False),
        sa.Column("password_sealed", sa.String(length=1000), nullable=True),
        sa.Column("sender", sa.String(length=320), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_settings")),
    )
    op.create_table(
        "mail_messages",
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("body_sealed", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", _utc(), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_messages")),
    )
    op.create_index("ix_mail_messages_state_not_before", "mail_messages", ["state", "not_before"])
    op.create_table(
        "one_time_links",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("expires_at", _utc(), nullable=False),
        sa.Column("used_at", _utc(), nullable=True),
        sa.Column("revoked_at", _utc(), nullable=True),
        sa.Column("created_by", sa.Uuid(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_one_time_links_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_one_time_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_one_time_links_token_hash")),
    )
    op.create_index(op.f("ix_one_time_links_user_id"), "one_time_links", ["user_id"])
    op.create_table(
        "password_reset_requests",
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=False),
        sa.Column("at", _utc(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_reset_requests")),
    )
    op.create_index(
        "ix_password_reset_requests_email_at", "password_reset_requests", ["email", "at"]
    )
    op.create_index(
        "ix_password_reset_requests_ip_at", "password_reset_requests", ["source_ip", "at"]
    )


def downgrade() -> None:
    op.drop_index("ix_password_reset_requests_ip_at", table_name="password_reset_requests")
    op.drop_index("ix_password_reset_requests_email_at", table_name="password_reset_requests")
    op.drop_table("password_reset_requests")
    op.drop_index(op.f("ix_one_time_links_user_id"), table_name="one_time_links")
    op.drop_table("one_time_links")
    op.drop_index("ix_mail_messages_state_not_before", table_name="mail_messages")
    op.drop_table("mail_messages")
    op.drop_table("mail_settings")
