"""sessions and sign-in

Revision ID: 0010_sessions_and_sign_in
Revises: 0009_mail_and_one_time_links
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0010_sessions_and_sign_in"
down_revision: str | None = "0009_mail_and_one_time_links"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
