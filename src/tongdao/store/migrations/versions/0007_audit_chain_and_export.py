"""audit chain and export

Revision ID: 0007_audit_chain_and_export
Revises: 0006_declared_networks
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0007_audit_chain_and_export"
down_revision: str | None = "0006_declared_networks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
