"""agent credentials

One lifecycle for every agent credential (PoP gateways and site connectors): a connector's
row carries its site's tenant (so its enrolment and revocation show in that tenant's audit
log and its admin can list it), and a revoked credential says why (``revoked`` by a person,
``replaced`` by a later enrolment of the same PoP or site). A connector remembers the WireGuard
key it published as its site's, so that retiring its credential withdraws that key.

Existing connectors get their site's tenant; which of them published their site's key is not
known, so keys published before this version are not withdrawn. Credentials that are live stay
live: several live credentials of one PoP or site (possible before this version) are left for
the operator to list and revoke, since the store cannot tell which host still runs.

Revision ID: 0008_agent_credentials
Revises: 0007_audit_chain_and_export
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_agent_credentials"
down_revision: str | None = "0007_audit_chain_and_export"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tenant_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("revoked_reason", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("published_key", sa.String(length=44), nullable=True))
        batch_op.create_index(batch_op.f("ix_gateways_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_gateways_tenant_id_tenants"),
            "tenants",
            ["tenant_id"],
            ["id"],
            ondelete="CASCADE",
        )
    gateways = sa.table(
        "gateways",
        sa.column("site_id", sa.Uuid()),
        sa.column("tenant_id", sa.Uuid()),
        sa.column("revoked_at", sa.DateTime()),
        sa.column("revoked_reason", sa.String()),
    )
    sites = sa.table("sites", sa.column("id", sa.Uuid()), sa.column("tenant_id", sa.Uuid()))
    op.execute(
        gateways.update()
        .where(gateways.c.site_id.is_not(None))
        .values(
            tenant_id=sa.select(sites.c.tenant_id)
            .where(sites.c.id == gateways.c.site_id)
            .scalar_subquery()
        )
    )
    op.execute(
        gateways.update()
        .where(gateways.c.revoked_at.is_not(None))
        .values(revoked_reason=sa.literal("revoked"))
    )


def downgrade() -> None:
    with op.batch_alter_table("gateways", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_gateways_tenant_id_tenants"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_gateways_tenant_id"))
        batch_op.drop_column("published_key")
        batch_op.drop_column("revoked_reason")
        batch_op.drop_column("tenant_id")
