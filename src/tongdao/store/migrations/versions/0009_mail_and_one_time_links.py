"""mail and one-time links

Revision ID: 0009_mail_and_one_time_links
Revises: 0008_agent_credentials
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0009_mail_and_one_time_links"
down_revision: str | None = "0008_agent_credentials"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
