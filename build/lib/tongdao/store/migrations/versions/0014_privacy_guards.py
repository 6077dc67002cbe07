"""privacy guards: how and from where each consent was given

Revision ID: 0014_privacy_guards
Revises: 0012_input_hardening
Create Date: 2026-12-06 07:20:00

Issue 10: a consent as "self" comes only from the person's own signed-in session; every
consent keeps the credential of the request that gave or recorded it (``session`` or
``api_token``) and its source address. Consents recorded before this revision have neither
(null: not known).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_privacy_guards"
down_revision: str | None = "0012_input_hardening"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("given_via", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("source_ip", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consents", schema=None) as batch_op:
        batch_op.drop_column("source_ip")
        batch_op.drop_column("given_via")
