"""identity and consent

Revision ID: 0005_identity_and_consent
Revises: 0004_licence_rules_and_kyc
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0005_identity_and_consent"
down_revision: str | None = "0004_licence_rules_and_kyc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
