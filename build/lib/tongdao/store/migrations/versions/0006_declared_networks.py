"""declared networks

Site prefixes become declarations a compliance officer decides (``prefix_declarations``);
``sites.prefixes`` stays the routed set, the approved declarations. The operator's exceptions
to network.no_default_or_public live in ``prefix_allowances``. A link's approval reference may
be missing (a domestic link, or a cross-border one recorded disabled until approved).

Existing sites' prefixes were routed already: they become approved declarations, marked as
carried over. Downgrading drops the declarations and allowances (sites keep their routed,
approved prefixes) and records an empty approval reference where none was given.

Revision ID: 0006_declared_networks
Revises: 0005_identity_and_consent
Create Date: 2026-11-22 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import tongdao.store.base
from tongdao.clock import utcnow
from tongdao.ids import new_id

revision: str = "0006_declared_networks"
down_revision: str | None = "0005_identity_and_consent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CARRIED_OVER = "routed before declarations were reviewed; carried over by migration 0006"


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "prefix_allowances",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("cidr", sa.String(length=43), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_prefix_allowances_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prefix_allowances")),
        sa.UniqueConstraint("tenant_id", "cidr", name=op.f("uq_prefix_allowances_tenant_id_cidr")),
    )
    with op.batch_alter_table("prefix_allowances", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_prefix_allowances_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "prefix_declarations",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("site_id", sa.Uuid(), nullable=False),
        sa.Column("cidr", sa.String(length=43), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.Uuid(), nullable=True),
        sa.Column("decided_at", tongdao.store.base.UTCDateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["decided_by"],
            ["users.id"],
            name=op.f("fk_prefix_declarations_decided_by_users"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_prefix_declarations_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_prefix_declarations_tenant_id_tenants"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prefix_declarations")),
        sa.UniqueConstraint("site_id", "cidr", name=op.f("uq_prefix_declarations_site_id_cidr")),
    )
    with op.batch_alter_table("prefix_declarations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_prefix_declarations_state_tenant", ["state", "tenant_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_prefix_declarations_tenant_id"), ["tenant_id"], unique=False
        )

    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.alter_column("approval_ref", existing_type=sa.String(length=100), nullable=True)

    # What was routed stays routed: each site's prefixes become approved declarations.
    sites = sa.table(
        "sites",
        sa.column("id", sa.Uuid()),
        sa.column("tenant_id", sa.Uuid()),
        sa.column("country", sa.String()),
        sa.column("purpose", sa.String()),
        sa.column("prefixes", tongdao.store.base.JSONType),
    )
    declarations = sa.table(
        "prefix_declarations",
        sa.column("id", sa.Uuid()),
        sa.column("created_at", tongdao.store.base.UTCDateTime(timezone=True)),
        sa.column("updated_at", tongdao.store.base.UTCDateTime(timezone=True)),
        sa.column("tenant_id", sa.Uuid()),
        sa.column("site_id", sa.Uuid()),
        sa.column("cidr", sa.String()),
        sa.column("purpose", sa.String()),
        sa.column("country", sa.String()),
        sa.column("state", sa.String()),
        sa.column("decided_by", sa.Uuid()),
        sa.column("decided_at", tongdao.store.base.UTCDateTime(timezone=True)),
        sa.column("reason", sa.String()),
    )
    conn = op.get_bind()
    now = utcnow()
    rows = []
    for site_id, tenant_id, country, purpose, prefixes in conn.execute(
        sa.select(sites.c.id, sites.c.tenant_id, sites.c.country, sites.c.purpose, sites.c.prefixes)
    ):
        for cidr in dict.fromkeys(prefixes or []):
            rows.append(
                {
                    "id": new_id(),
                    "created_at": now,
                    "updated_at": now,
                    "tenant_id": tenant_id,
                    "site_id": site_id,
                    "cidr": cidr,
                    "purpose": purpose,
                    "country": country,
                    "state": "approved",
                    "decided_by": None,
                    "decided_at": now,
                    "reason": CARRIED_OVER,
                }
            )
    if rows:
        conn.execute(declarations.insert(), rows)


def downgrade() -> None:
    links = sa.table("links", sa.column("approval_ref", sa.String()))
    op.get_bind().execute(
        links.update().where(links.c.approval_ref.is_(None)).values(approval_ref="")
    )
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.alter_column("approval_ref", existing_type=sa.String(length=100), nullable=False)

    with op.batch_alter_table("prefix_declarations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prefix_declarations_tenant_id"))
        batch_op.drop_index("ix_prefix_declarations_state_tenant")
    op.drop_table("prefix_declarations")

    with op.batch_alter_table("prefix_allowances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prefix_allowances_tenant_id"))
    op.drop_table("prefix_allowances")
