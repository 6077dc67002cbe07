"""usage ledger: cross-border bytes on usage records, hourly rollups; monthly partitions on PG

``usage_records`` gains ``cross_border_rx_bytes`` / ``cross_border_tx_bytes`` and its seq
dedupe key takes ``period_end`` (the partition key; every row of a report shares it).
``usage_hourly`` (per peer) and ``usage_tenant_hourly`` (per tenant, gateway and peer kind)
hold the ledger. On PostgreSQL ``usage_records`` and ``usage_hourly`` are ``PARTITION BY
RANGE`` by Asia/Shanghai month (tongdao.store.partitions): the existing records are copied
into the partitioned table; SQLite keeps plain tables. The reports stored before this
revision are rolled up into the ledger here, as the server rolls up new ones
(tongdao.gateway.ledger), so the month of the upgrade bills and counts them too.

Revision ID: 0018_usage_ledger
Revises: 0017_billing
Create Date: 2026-12-06 21:00:00
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

import tongdao.store.base
from tongdao.billing import money
from tongdao.store import partitions

revision: str = "0018_usage_ledger"
down_revision: str | None = "0017_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BYTES = ("rx_bytes", "tx_bytes", "cross_border_rx_bytes", "cross_border_tx_bytes")


def _months_around_now() -> list[date]:
    this = money.shanghai_today(datetime.now(UTC)).replace(day=1)
    months = [money.previous_month(this), this]
    for _ in range(3):
        months.append(money.next_month(months[-1]))
    return months


def _ledger_tables(pg: bool) -> None:
    tstz = tongdao.store.base.UTCDateTime(timezone=True)
    hourly_pk = ("tenant_id", "peer_ref", "hour", "peer_kind", "gateway_id")
    op.create_table(
        "usage_hourly",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("peer_ref", sa.String(length=64), nullable=False),
        sa.Column("hour", tstz, nullable=False),
        sa.Column("peer_kind", sa.String(length=16), nullable=False),
        sa.Column("gateway_id", sa.Uuid(), nullable=False),
        sa.Column("pop_id", sa.Uuid(), nullable=True),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _BYTES),
        sa.PrimaryKeyConstraint(*hourly_pk, name=op.f("pk_usage_hourly")),
        postgresql_partition_by="RANGE (hour)" if pg else None,
    )
    op.create_index("ix_usage_hourly_owner_hour", "usage_hourly", ["owner_id", "hour"])
    op.create_table(
        "usage_tenant_hourly",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("hour", tstz, nullable=False),
        sa.Column("gateway_id", sa.Uuid(), nullable=False),
        sa.Column("peer_kind", sa.String(length=16), nullable=False),
        sa.Column("pop_id", sa.Uuid(), nullable=True),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _BYTES),
        sa.PrimaryKeyConstraint(
            "tenant_id", "hour", "gateway_id", "peer_kind", name=op.f("pk_usage_tenant_hourly")
        ),
    )
    op.create_index("ix_usage_tenant_hourly_pop_hour", "usage_tenant_hourly", ["pop_id", "hour"])


def _records_sqlite() -> None:
    with op.batch_alter_table("usage_records", schema=None) as batch_op:
        for name in ("cross_border_rx_bytes", "cross_border_tx_bytes"):
            batch_op.add_column(
                sa.Column(name, sa.BigInteger(), server_default="0", nullable=False)
            )
        batch_op.drop_constraint("uq_usage_records_gateway_id_seq_peer_key", type_="unique")
        batch_op.create_unique_constraint(
            "uq_usage_records_seq", ["gateway_id", "seq", "peer_key", "period_end"]
        )


def _records_postgresql(months: list[date]) -> None:
    """Recreate ``usage_records`` partitioned by ``period_end``, keeping its rows and id
    sequence (the primary key takes the partition key too: ``(id, period_end)``)."""
    ex = op.execute
    ex("ALTER TABLE usage_records RENAME TO usage_records_plain")
    ex("ALTER INDEX ix_usage_records_tenant_time RENAME TO ix_usage_records_plain_tenant_time")
    ex("ALTER TABLE usage_records_plain RENAME CONSTRAINT pk_usage_records "
       "TO pk_usage_records_plain")  # fmt: skip
    ex("ALTER TABLE usage_records_plain RENAME CONSTRAINT "
       "uq_usage_records_gateway_id_seq_peer_key TO uq_usage_records_plain_seq")  # fmt: skip
    ex("ALTER TABLE usage_records_plain RENAME CONSTRAINT "
       "fk_usage_records_gateway_id_gateways TO fk_usage_records_plain_gateway")  # fmt: skip
    ex("ALTER SEQUENCE usage_records_id_seq OWNED BY NONE")
    ex("""
        CREATE TABLE usage_records (
            id BIGINT NOT NULL DEFAULT nextval('usage_records_id_seq'),
            gateway_id UUID NOT NULL,
            seq BIGINT NOT NULL,
            tenant_id UUID NOT NULL,
            peer_key VARCHAR(44) NOT NULL,
            peer_kind VARCHAR(16) NOT NULL,
            peer_ref VARCHAR(64) NOT NULL,
            rx_bytes BIGINT NOT NULL,
            tx_bytes BIGINT NOT NULL,
            cross_border_rx_bytes BIGINT NOT NULL DEFAULT '0',
            cross_border_tx_bytes BIGINT NOT NULL DEFAULT '0',
            last_handshake TIMESTAMP WITH TIME ZONE,
            endpoint VARCHAR(64),
            period_start TIMESTAMP WITH TIME ZONE NOT NULL,
            period_end TIMESTAMP WITH TIME ZONE NOT NULL,
            CONSTRAINT pk_usage_records PRIMARY KEY (id, period_end),
            CONSTRAINT uq_usage_records_seq UNIQUE (gateway_id, seq, peer_key, period_end),
            CONSTRAINT fk_usage_records_gateway_id_gateways FOREIGN KEY (gateway_id)
                REFERENCES gateways (id) ON DELETE CASCADE
        ) PARTITION BY RANGE (period_end)
    """)
    ex("CREATE INDEX ix_usage_records_tenant_time ON usage_records (tenant_id, period_end)")
    ex("ALTER SEQUENCE usage_records_id_seq OWNED BY usage_records.id")
    conn = op.get_bind()
    partitions.create_partitioned(conn, "usage_records", months)
    ex("""
        INSERT INTO usage_records (id, gateway_id, seq, tenant_id, peer_key, peer_kind,
            peer_ref, rx_bytes, tx_bytes, last_handshake, endpoint, period_start, period_end)
        SELECT id, gateway_id, seq, tenant_id, peer_key, peer_kind, peer_ref, rx_bytes,
            tx_bytes, last_handshake, endpoint, period_start, period_end
        FROM usage_records_plain
    """)
    ex("DROP TABLE usage_records_plain")


def _backfill_ledger() -> None:
    """Roll the reports already stored into the ledger, hour by hour in period order (memory
    bounded by one hour's peers): each row's bytes to the hour ``(h, h + 1 h]`` holding its
    period end, a device's to its owner now, with the gateway's PoP (a site connector: its
    site's), as :func:`tongdao.gateway.ledger.roll_up` does for new reports."""
    conn = op.get_bind()
    uid = sa.Uuid()
    tstz = tongdao.store.base.UTCDateTime(timezone=True)
    records = sa.table(
        "usage_records",
        sa.column("tenant_id", uid),
        sa.column("gateway_id", uid),
        sa.column("peer_kind", sa.String()),
        sa.column("peer_ref", sa.String()),
        sa.column("rx_bytes", sa.BigInteger()),
        sa.column("tx_bytes", sa.BigInteger()),
        sa.column("period_end", tstz),
    )
    gateways = sa.table("gateways", sa.column("id", uid), sa.column("pop_id", uid),
                        sa.column("site_id", uid))  # fmt: skip
    sites = sa.table("sites", sa.column("id", uid), sa.column("pop_id", uid))
    devices = sa.table("devices", sa.column("id", uid), sa.column("user_id", uid))
    site_pop = dict(conn.execute(sa.select(sites.c.id, sites.c.pop_id)).all())
    pop_of = {
        g: (p if p is not None or s is None else site_pop.get(s))
        for g, p, s in conn.execute(
            sa.select(gateways.c.id, gateways.c.pop_id, gateways.c.site_id)
        ).all()
    }
    owner = {str(d): u for d, u in conn.execute(sa.select(devices.c.id, devices.c.user_id))}
    hourly = sa.table(
        "usage_hourly",
        *(sa.column(n, uid) for n in ("tenant_id", "gateway_id", "pop_id", "owner_id")),
        sa.column("peer_ref", sa.String()),
        sa.column("peer_kind", sa.String()),
        sa.column("hour", tstz),
        *(sa.column(n, sa.BigInteger()) for n in _BYTES),
    )
    per_tenant = sa.table(
        "usage_tenant_hourly",
        *(sa.column(n, uid) for n in ("tenant_id", "gateway_id", "pop_id")),
        sa.column("peer_kind", sa.String()),
        sa.column("hour", tstz),
        *(sa.column(n, sa.BigInteger()) for n in _BYTES),
    )
    peers: dict[tuple[Any, ...], list[int]] = {}
    kinds: dict[tuple[Any, ...], list[int]] = {}

    def flush(hour: datetime | None) -> None:
        if hour is None:
            return
        zeros = {"cross_border_rx_bytes": 0, "cross_border_tx_bytes": 0}
        rows = [
            {"tenant_id": t, "peer_ref": ref, "peer_kind": kind, "gateway_id": g,
             "pop_id": pop_of.get(g), "owner_id": owner.get(ref) if kind == "device" else None,
             "hour": hour, "rx_bytes": rx, "tx_bytes": tx, **zeros}
            for (t, ref, kind, g), (rx, tx) in peers.items()
        ]  # fmt: skip
        for i in range(0, len(rows), 1000):
            conn.execute(hourly.insert(), rows[i : i + 1000])
        sums = [
            {"tenant_id": t, "peer_kind": kind, "gateway_id": g, "pop_id": pop_of.get(g),
             "hour": hour, "rx_bytes": rx, "tx_bytes": tx, **zeros}
            for (t, kind, g), (rx, tx) in kinds.items()
        ]  # fmt: skip
        for i in range(0, len(sums), 1000):
            conn.execute(per_tenant.insert(), sums[i : i + 1000])
        peers.clear()
        kinds.clear()

    current: datetime | None = None
    stmt = sa.select(
        records.c.tenant_id, records.c.gateway_id, records.c.peer_kind, records.c.peer_ref,
        records.c.rx_bytes, records.c.tx_bytes, records.c.period_end,
    ).order_by(records.c.period_end)  # fmt: skip
    for t, g, kind, ref, rx, tx, end in conn.execute(stmt.execution_options(yield_per=5000)):
        last = end.astimezone(UTC) - timedelta(microseconds=1)
        hour = last.replace(minute=0, second=0, microsecond=0)
        if hour != current:
            flush(current)
            current = hour
        peer = peers.setdefault((t, ref, kind, g), [0, 0])
        peer[0] += rx
        peer[1] += tx
        total = kinds.setdefault((t, kind, g), [0, 0])
        total[0] += rx
        total[1] += tx
    flush(current)


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    if pg:
        months = _months_around_now()
        _records_postgresql(months)
        _ledger_tables(pg=True)
        partitions.create_partitioned(op.get_bind(), "usage_hourly", months)
    else:
        _records_sqlite()
        _ledger_tables(pg=False)
    _backfill_ledger()


def downgrade() -> None:
    op.drop_index("ix_usage_tenant_hourly_pop_hour", table_name="usage_tenant_hourly")
    op.drop_table("usage_tenant_hourly")
    op.drop_index("ix_usage_hourly_owner_hour", table_name="usage_hourly")
    op.drop_table("usage_hourly")  # PostgreSQL: its partitions go with it
    if op.get_bind().dialect.name == "postgresql":
        ex = op.execute
        ex("ALTER TABLE usage_records RENAME TO usage_records_parted")
        ex("ALTER INDEX ix_usage_records_tenant_time RENAME TO ix_usage_records_parted_time")
        ex("ALTER TABLE usage_records_parted RENAME CONSTRAINT pk_usage_records "
           "TO pk_usage_records_parted")  # fmt: skip
        ex("ALTER TABLE usage_records_parted RENAME CONSTRAINT uq_usage_records_seq "
           "TO uq_usage_records_parted_seq")  # fmt: skip
        ex("ALTER SEQUENCE usage_records_id_seq OWNED BY NONE")
        ex("""
            CREATE TABLE usage_records (
                id BIGINT NOT NULL DEFAULT nextval('usage_records_id_seq'),
                gateway_id UUID NOT NULL,
                seq BIGINT NOT NULL,
                tenant_id UUID NOT NULL,
                peer_key VARCHAR(44) NOT NULL,
                peer_kind VARCHAR(16) NOT NULL,
                peer_ref VARCHAR(64) NOT NULL,
                rx_bytes BIGINT NOT NULL,
                tx_bytes BIGINT NOT NULL,
                last_handshake TIMESTAMP WITH TIME ZONE,
                endpoint VARCHAR(64),
                period_start TIMESTAMP WITH TIME ZONE NOT NULL,
                period_end TIMESTAMP WITH TIME ZONE NOT NULL,
                CONSTRAINT pk_usage_records PRIMARY KEY (id),
                CONSTRAINT uq_usage_records_gateway_id_seq_peer_key
                    UNIQUE (gateway_id, seq, peer_key)
            )
        """)
        ex("CREATE INDEX ix_usage_records_tenant_time ON usage_records (tenant_id, period_end)")
        ex("ALTER SEQUENCE usage_records_id_seq OWNED BY usage_records.id")
        ex("""
            INSERT INTO usage_records SELECT id, gateway_id, seq, tenant_id, peer_key,
                peer_kind, peer_ref, rx_bytes, tx_bytes, last_handshake, endpoint,
                period_start, period_end
            FROM usage_records_parted ON CONFLICT DO NOTHING
        """)
        ex("DROP TABLE usage_records_parted CASCADE")
        ex("ALTER TABLE usage_records ADD CONSTRAINT fk_usage_records_gateway_id_gateways "
           "FOREIGN KEY (gateway_id) REFERENCES gateways (id) ON DELETE CASCADE")  # fmt: skip
    else:
        with op.batch_alter_table("usage_records", schema=None) as batch_op:
            batch_op.drop_constraint("uq_usage_records_seq", type_="unique")
            batch_op.create_unique_constraint(
                "uq_usage_records_gateway_id_seq_peer_key", ["gateway_id", "seq", "peer_key"]
            )
            batch_op.drop_column("cross_border_tx_bytes")
            batch_op.drop_column("cross_border_rx_bytes")
