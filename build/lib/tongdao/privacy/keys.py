"""Data-key rotation: re-encrypt every sealed column under the current key.

Rotation, step by step (README, "Rotating the data key"):

1. make a new key; start the servers with it as ``TONGDAO_DATA_KEY`` under a new
   ``TONGDAO_DATA_KEY_ID`` and the old one in ``TONGDAO_PREVIOUS_DATA_KEYS`` (new values are
   sealed with the new key, old ones still open);
2. ``tongdao admin rotate-data-key`` re-encrypts, in committed batches, every value not yet
   under the current key. A value is replaced only if it is still the one read (compare and
   set), so the servers may keep running; a run that stops half-way is simply run again, and a
   second run finds nothing to do;
3. when ``--check`` reports nothing under an old key, drop it from the previous keys.

The columns are registered here with the purpose they are sealed for (the AEAD's associated
data); a module that adds a sealed column registers it with :func:`register_sealed`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, Table, func, select, update

from tongdao.audit.recorder import Actor, record, set_actor
from tongdao.auth.service import TOTP_PURPOSE
from tongdao.crypto import DecryptionError, FieldCipher
from tongdao.errors import TongdaoError
from tongdao.mail.models import MailMessage, MailSettings
from tongdao.mail.service import BODY_PURPOSE, PASSWORD_PURPOSE
from tongdao.store.engine import Database
from tongdao.tenancy.models import User
from tongdao.tenancy.service import ID_NUMBER_PURPOSE

SEALED_PREFIX = "v1"


@dataclass(frozen=True)
class SealedColumn:
    table: Table
    column: str
    purpose: str

    @property
    def label(self) -> str:
        return f"{self.table.name}.{self.column}"


SEALED_COLUMNS: list[SealedColumn] = []


def register_sealed(model: Any, column: str, purpose: str) -> None:
    """Make ``model.column`` (sealed for ``purpose``) part of every rotation."""
    table = cast(Table, model.__table__)
    if "id" not in table.c:
        raise ValueError(f"{table.name} has no id column to rotate by")
    entry = SealedColumn(table, column, purpose)
    if entry not in SEALED_COLUMNS:
        SEALED_COLUMNS.append(entry)


register_sealed(User, "id_number_sealed", ID_NUMBER_PURPOSE)
register_sealed(User, "totp_secret_sealed", TOTP_PURPOSE)
register_sealed(MailSettings, "password_sealed", PASSWORD_PURPOSE)
register_sealed(MailMessage, "body_sealed", BODY_PURPOSE)


class RotationError(TongdaoError):
    """A value cannot be opened with the configured keys: rotation stops where it is."""


@dataclass
class RotationReport:
    key_id: str
    reencrypted: dict[str, int] = field(default_factory=dict)  # column → values re-sealed
    by_key: dict[str, int] = field(default_factory=dict)  # key id → values sealed under it

    @property
    def remaining(self) -> int:
        """Values still sealed under a key other than the current one."""
        return sum(n for kid, n in self.by_key.items() if kid != self.key_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "reencrypted": dict(self.reencrypted),
            "sealed_by_key": dict(self.by_key),
            "remaining_under_old_keys": self.remaining,
        }


def count_by_key(db: Database) -> dict[str, int]:
    """How many sealed values each key id holds, over every registered column."""
    counts: Counter[str] = Counter()
    with db.session(write=False) as session:
        for sc in SEALED_COLUMNS:
            column = sc.table.c[sc.column]
            for value in session.scalars(
                select(column).where(column.is_not(None)).execution_options(yield_per=1000)
            ):
                counts[FieldCipher.key_id_of(value) if value.count(":") >= 2 else "?"] += 1
    return dict(sorted(counts.items()))


def rotate(
    db: Database,
    cipher: FieldCipher,
    *,
    batch_size: int = 500,
    actor: Actor | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> RotationReport:
    """Re-seal every value not under ``cipher.current_key_id`` (see the module)."""
    prefix = f"{SEALED_PREFIX}:{cipher.current_key_id}:"
    report = RotationReport(cipher.current_key_id)
    completed = False
    try:
        for sc in SEALED_COLUMNS:
            report.reencrypted[sc.label] = 0
            _rotate_column(db, cipher, sc, prefix, batch_size, report, progress)
        completed = True
    finally:
        # Recorded also when a run stops half-way (its batches are done and committed); a
        # run with nothing to do leaves no trace.
        report.by_key = count_by_key(db)
        if any(report.reencrypted.values()):
            with db.session() as session:
                set_actor(session, actor or Actor(None, "cli:admin rotate-data-key"))
                record(
                    session,
                    "rotate_data_key",
                    "data_key",
                    cipher.current_key_id,
                    after={**report.as_dict(), "completed": completed},
                )
                session.flush()  # the audit chain numbers what is flushed before the commit
                session.commit()
    return report


def _rotate_column(
    db: Database,
    cipher: FieldCipher,
    sc: SealedColumn,
    prefix: str,
    batch_size: int,
    report: RotationReport,
    progress: Callable[[str, int], None] | None,
) -> None:
    table, pk, column = sc.table, sc.table.c.id, sc.table.c[sc.column]
    after: Any = None
    while True:
        with db.session() as session:
            stmt = (
                select(pk, column)
                .where(column.is_not(None), func.substr(column, 1, len(prefix)) != prefix)
                .order_by(pk)
                .limit(batch_size)
            )
            if after is not None:
                stmt = stmt.where(pk > after)
            rows = session.execute(stmt).all()
            if not rows:
                return
            for row_id, sealed in rows:
                try:
                    plain = cipher.open(sealed, sc.purpose)
                except DecryptionError as exc:
                    session.commit()  # keep this batch's work before stopping
                    raise RotationError(
                        f"{sc.label} of row {row_id}: {exc}; configure its key in "
                        "TONGDAO_PREVIOUS_DATA_KEYS and run again (the values done so far "
                        "stay done)"
                    ) from exc
                moved = cast(
                    CursorResult[Any],
                    session.execute(
                        update(table)
                        .where(pk == row_id, column == sealed)
                        .values({sc.column: cipher.seal(plain, sc.purpose)})
                    ),
                )
                # 0: changed meanwhile by a server, which sealed it under the current key.
                report.reencrypted[sc.label] += moved.rowcount or 0
            session.commit()
            after = rows[-1][0]
        if progress is not None:
            progress(sc.label, report.reencrypted[sc.label])
