"""declared networks

Revision ID: 0006_declared_networks
Revises: 0005_identity_and_consent
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0006_declared_networks"
down_revision: str | None = "0005_identity_and_consent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
