"""input hardening

Revision ID: 0012_input_hardening
Revises: 0011_report_bounds
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0012_input_hardening"
down_revision: str | None = "0011_report_bounds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
