"""sessions and sign-in

Session metadata (source address, user agent), login failures that stop counting against an
account (``cleared_at``), and the last accepted TOTP step per user (replay protection).

Revision ID: 0010_sessions_and_sign_in
Revises: 0009_mail_and_one_time_links
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tongdao.store.base

revision: str = "0010_sessions_and_sign_in"
down_revision: str | None = "0009_mail_and_one_time_links"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_ip", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("user_agent", sa.String(length=200), nullable=True))
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("cleared_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.create_index(
            "ix_login_attempts_email_ip_at", ["email", "source_ip", "at"], unique=False
        )
    op.create_table(
        "totp_steps",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_totp_steps_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_totp_steps")),
    )


def downgrade() -> None:
    op.drop_table("totp_steps")
    with op.batch_alter_table("login_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_login_attempts_email_ip_at")
        batch_op.drop_column("cleared_at")
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("user_agent")
        batch_op.drop_column("source_ip")
