"""input hardening: one PoP interface per WireGuard key; stored e-mail addresses in NFKC

* ``pop_tenant_interfaces.public_key`` becomes unique (devices' and sites' connector keys
  already are; the service checks across the three tables, see ``tongdao.network.keys``).
  Before the index is made, an interface holding a key that another, older interface already
  holds loses it (set to NULL, logged with both ids): its gateway publishes a key again, and
  until then the interface has no peer, as a new one has none.
* The lock row ``wireguard-keys`` that serialises writers of keys is made here, so that the
  first writers never race to create it.
* ``users.email`` is rewritten in the form the API now stores and looks up (NFKC, lower
  case). An address whose new form another user already holds is left as it is and logged
  with both users' ids, for an operator admin to settle; so is an address that mixes scripts
  (the API refuses new ones; existing users keep signing in).

Downgrade drops the unique index and the lock row; the e-mail rewrite is not undone (the old forms are not
kept, and the new ones are valid addresses for the old code too).

Revision ID: 0012_input_hardening
Revises: 0011_report_bounds
Create Date: 2026-12-06 07:00:00
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from tongdao.validation import mixed_scripts, normalise_email

revision: str = "0012_input_hardening"
down_revision: str | None = "0011_report_bounds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("alembic.runtime.migration")
KEYS_LOCK = "wireguard-keys"  # tongdao.network.keys.LOCK, as it was when this was written


def upgrade() -> None:
    conn = op.get_bind()
    _release_duplicate_interface_keys(conn)
    with op.batch_alter_table("pop_tenant_interfaces", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f("uq_pop_tenant_interfaces_public_key"), ["public_key"]
        )
    ipam_locks = sa.table(
        "ipam_locks", sa.column("name", sa.String), sa.column("generation", sa.Integer)
    )
    op.bulk_insert(ipam_locks, [{"name": KEYS_LOCK, "generation": 0}])
    _normalise_emails(conn)


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM ipam_locks WHERE name = :name").bindparams(name=KEYS_LOCK))
    with op.batch_alter_table("pop_tenant_interfaces", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_pop_tenant_interfaces_public_key"), type_="unique")


def _release_duplicate_interface_keys(conn: sa.Connection) -> None:
    rows = conn.execute(
        sa.text(
            "SELECT id, public_key FROM pop_tenant_interfaces "
            "WHERE public_key IS NOT NULL ORDER BY created_at, id"
        )
    ).all()
    holder: dict[str, object] = {}
    for iface_id, key in rows:
        if key not in holder:
            holder[key] = iface_id
            continue
        log.warning(
            "0012: PoP interface %s had the WireGuard key of interface %s; its key is cleared "
            "until its gateway publishes one of its own",
            iface_id,
            holder[key],
        )
        conn.execute(
            sa.text("UPDATE pop_tenant_interfaces SET public_key = NULL WHERE id = :id"),
            {"id": iface_id},
        )


def _normalise_emails(conn: sa.Connection) -> None:
    rows = conn.execute(sa.text("SELECT id, email FROM users ORDER BY created_at, id")).all()
    taken = {email: user_id for user_id, email in rows}
    for user_id, email in rows:
        wanted = normalise_email(email)
        local, _, domain = wanted.rpartition("@")
        if any(mixed_scripts(part) for part in (local, *domain.split("."))):
            log.warning(
                "0012: user %s has an e-mail address that mixes scripts: %r", user_id, email
            )
        if wanted == email:
            continue
        other = taken.get(wanted)
        if other is not None and other != user_id:
            log.warning(
                "0012: user %s keeps e-mail %r: its normal form %r is user %s's address",
                user_id,
                email,
                wanted,
                other,
            )
            continue
        conn.execute(
            sa.text("UPDATE users SET email = :email WHERE id = :id"),
            {"email": wanted, "id": user_id},
        )
        del taken[email]
        taken[wanted] = user_id
