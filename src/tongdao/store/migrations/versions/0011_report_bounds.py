"""report bounds

Revision ID: 0011_report_bounds
Revises: 0010_sessions_and_sign_in
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0011_report_bounds"
down_revision: str | None = "0010_sessions_and_sign_in"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
