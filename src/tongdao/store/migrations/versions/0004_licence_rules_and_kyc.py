"""licence rules and KYC

Revision ID: 0004_licence_rules_and_kyc
Revises: 0003_connectors_and_usage_record
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0004_licence_rules_and_kyc"
down_revision: str | None = "0003_connectors_and_usage_record"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
