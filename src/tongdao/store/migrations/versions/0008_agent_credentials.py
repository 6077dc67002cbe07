"""agent credentials

Revision ID: 0008_agent_credentials
Revises: 0007_audit_chain_and_export
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0008_agent_credentials"
down_revision: str | None = "0007_audit_chain_and_export"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
