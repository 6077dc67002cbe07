"""cross-border bytes counted at the domestic end; the overseas end's kept apart; SSO begins
by address

``usage_overseas_hourly`` holds the cross-border bytes that gateways of PoPs abroad (the
overseas ends of links) reported for tenant peers, for reconciliation only
(tongdao.gateway.xbends). The ledger rows those gateways wrote before this revision are
corrected the same way the server now writes new ones: their cross-border part moves to the
new table and is taken out of their rx / tx, so the month of the upgrade counts it once. The
raw ``usage_records`` are left as reported; invoices already made are not changed (a
correction is a credit note). Downgrade puts the bytes back into ``usage_tenant_hourly`` (what
billing and tenant caps read); the per-peer ``usage_hourly`` rows keep the domestic part.

``sso_logins.source_ip``: the address that began a single sign-on, which the begin throttle
counts (tongdao.sso.throttle); sign-ins in flight from before have none (they expire in
minutes).

Revision ID: 0031_xbends
Revises: 0025_scim
Create Date: 2026-12-07 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tongdao.store.base
from tongdao.network.service import HOME_COUNTRY

revision: str = "0031_xbends"
down_revision: str | None = "0025_scim"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Ledger rows an overseas end wrote with a cross-border part (:home: the home country).
_COPY = (
    "INSERT INTO usage_overseas_hourly (tenant_id, hour, gateway_id, peer_kind, pop_id, "
    "cross_border_rx_bytes, cross_border_tx_bytes) "
    "SELECT tenant_id, hour, gateway_id, peer_kind, pop_id, cross_border_rx_bytes, "
    "cross_border_tx_bytes FROM usage_tenant_hourly WHERE peer_kind IN ('device', 'site') "
    "AND (cross_border_rx_bytes > 0 OR cross_border_tx_bytes > 0) "
    "AND gateway_id IN (SELECT g.id FROM gateways g JOIN pops p ON p.id = g.pop_id "
    "WHERE p.country <> :home)"
)
_TAKE_OUT = (
    "UPDATE usage_tenant_hourly"
    " SET rx_bytes = rx_bytes - cross_border_rx_bytes, "
    "tx_bytes = tx_bytes - cross_border_tx_bytes, "
    "cross_border_rx_bytes = 0, cross_border_tx_bytes = 0 "
    "WHERE peer_kind IN ('device', 'site') "
    "AND (cross_border_rx_bytes > 0 OR cross_border_tx_bytes > 0) "
    "AND gateway_id IN (SELECT g.id FROM gateways g JOIN pops p ON p.id = g.pop_id "
    "WHERE p.country <> :home)"
)
_TAKE_OUT_PEERS = (
    "UPDATE usage_hourly"
    " SET rx_bytes = rx_bytes - cross_border_rx_bytes, "
    "tx_bytes = tx_bytes - cross_border_tx_bytes, "
    "cross_border_rx_bytes = 0, cross_border_tx_bytes = 0 "
    "WHERE peer_kind IN ('device', 'site') "
    "AND (cross_border_rx_bytes > 0 OR cross_border_tx_bytes > 0) "
    "AND gateway_id IN (SELECT g.id FROM gateways g JOIN pops p ON p.id = g.pop_id "
    "WHERE p.country <> :home)"
)
_PUT_BACK = (
    "UPDATE usage_tenant_hourly SET "
    "rx_bytes = rx_bytes + (SELECT o.cross_border_rx_bytes FROM usage_overseas_hourly o "
    "WHERE o.tenant_id = usage_tenant_hourly.tenant_id AND o.hour = usage_tenant_hourly.hour "
    "AND o.gateway_id = usage_tenant_hourly.gateway_id "
    "AND o.peer_kind = usage_tenant_hourly.peer_kind), "
    "tx_bytes = tx_bytes + (SELECT o.cross_border_tx_bytes FROM usage_overseas_hourly o "
    "WHERE o.tenant_id = usage_tenant_hourly.tenant_id AND o.hour = usage_tenant_hourly.hour "
    "AND o.gateway_id = usage_tenant_hourly.gateway_id "
    "AND o.peer_kind = usage_tenant_hourly.peer_kind), "
    "cross_border_rx_bytes = (SELECT o.cross_border_rx_bytes FROM usage_overseas_hourly o "
    "WHERE o.tenant_id = usage_tenant_hourly.tenant_id AND o.hour = usage_tenant_hourly.hour "
    "AND o.gateway_id = usage_tenant_hourly.gateway_id "
    "AND o.peer_kind = usage_tenant_hourly.peer_kind), "
    "cross_border_tx_bytes = (SELECT o.cross_border_tx_bytes FROM usage_overseas_hourly o "
    "WHERE o.tenant_id = usage_tenant_hourly.tenant_id AND o.hour = usage_tenant_hourly.hour "
    "AND o.gateway_id = usage_tenant_hourly.gateway_id "
    "AND o.peer_kind = usage_tenant_hourly.peer_kind) "
    "WHERE EXISTS (SELECT 1 FROM usage_overseas_hourly o "
    "WHERE o.tenant_id = usage_tenant_hourly.tenant_id AND o.hour = usage_tenant_hourly.hour "
    "AND o.gateway_id = usage_tenant_hourly.gateway_id "
    "AND o.peer_kind = usage_tenant_hourly.peer_kind)"
)


def upgrade() -> None:
    op.create_table(
        "usage_overseas_hourly",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("hour", tongdao.store.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("gateway_id", sa.Uuid(), nullable=False),
        sa.Column("peer_kind", sa.String(length=16), nullable=False),
        sa.Column("pop_id", sa.Uuid(), nullable=True),
        sa.Column("cross_border_rx_bytes", sa.BigInteger(), nullable=False),
        sa.Column("cross_border_tx_bytes", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "hour", "gateway_id", "peer_kind", name=op.f("pk_usage_overseas_hourly")
        ),
    )
    op.create_index(
        "ix_usage_overseas_hourly_pop_hour", "usage_overseas_hourly", ["pop_id", "hour"]
    )
    with op.batch_alter_table("sso_logins", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_ip", sa.String(length=64), nullable=True))
        batch_op.create_index(
            "ix_sso_logins_source_ip_expires", ["source_ip", "expires_at"], unique=False
        )
    home = {"home": HOME_COUNTRY}
    op.execute(sa.text(_COPY).bindparams(**home))
    op.execute(sa.text(_TAKE_OUT).bindparams(**home))
    op.execute(sa.text(_TAKE_OUT_PEERS).bindparams(**home))


def downgrade() -> None:
    with op.batch_alter_table("sso_logins", schema=None) as batch_op:
        batch_op.drop_index("ix_sso_logins_source_ip_expires")
        batch_op.drop_column("source_ip")
    op.execute(_PUT_BACK)
    op.drop_index("ix_usage_overseas_hourly_pop_hour", table_name="usage_overseas_hourly")
    op.drop_table("usage_overseas_hourly")
