"""Regulator exports of the audit log: records by tenant, user, source IP and time range, as
CSV or JSON Lines, with a manifest.

An export is a zip (entries stored, not compressed, so each is byte for byte what the
manifest hashes) holding ``records.csv`` or ``records.jsonl`` and ``manifest.json``: the
filters, the caller, counts per kind, the SHA-256 and size of the records file as written, the
CSV cells' escaping (``csv_escaping``: text that a spreadsheet would run as a formula starts
with ``'``, see :mod:`tongdao.spreadsheet`; JSON Lines are verbatim), the chain
range exported (first and last seq) and the chain head at the time (seq and hash: an anchor
a later ``tongdao audit verify`` can be compared with), the ruleset version
(:data:`tongdao.compliance.rules.VERSION`) and the time. Every record carries its seq,
prev_hash and hash, and the per-field digests and salts of its personal fields, so the hash of
each record can be recomputed from the file (:func:`tongdao.audit.chain.record_hash`).

Filters: ``tenant_id``; ``user_id`` (records about the user or made by them); ``source_ip``
(the request's address for API events, the public source address for connection sessions);
``since``/``until``: records that occurred in ``[since, until)`` and connection sessions that
overlap it. Sessions still in progress are appended as rows with action ``connection_open``
and no seq: they enter the chain when they end. A tenant admin's export covers their tenant
only. The export is itself audited (a chained ``export`` record with the manifest's hashes).
"""

from __future__ import annotations

import csv
import hashlib
import io
import ipaddress
import json
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import datetime
from enum import StrEnum
from typing import IO, Any

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from tongdao import __version__, spreadsheet
from tongdao.audit import chain
from tongdao.audit.models import AUDIT_EVENTS, OPEN_CONNECTIONS
from tongdao.audit.sessions import split_endpoint
from tongdao.compliance import rules
from tongdao.errors import ValidationError
from tongdao.schemas import UtcDateTime

COLUMNS = (
    "seq",
    "id",
    "occurred_at",
    "kind",
    "action",
    "object_type",
    "object_id",
    "tenant_id",
    "actor_id",
    "actor",
    "user_id",
    "device_id",
    "pop_id",
    "source_ip",
    "source_port",
    "started_at",
    "ended_at",
    "rx_bytes",
    "tx_bytes",
    "before",
    "after",
    "signature",
    "pi_digests",
    "pi_salts",
    "prev_hash",
    "hash",
)
_JSON_COLUMNS = frozenset({"before", "after", "pi_digests", "pi_salts"})


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


class ExportQuery(BaseModel):
    """What to export (query parameters of ``GET /audit/export``)."""

    format: ExportFormat = Field(default=ExportFormat.CSV, description="csv | jsonl")
    tenant_id: uuid.UUID | None = None
    user_id: uuid.UUID | None = Field(default=None, description="records about or made by")
    source_ip: str | None = Field(default=None, max_length=64, description="an IP address")
    since: UtcDateTime | None = Field(default=None, description="from (inclusive); naive is UTC")
    until: UtcDateTime | None = Field(default=None, description="to (exclusive); naive is UTC")
    machine: bool | None = Field(
        default=None,
        description="false: people's actions only, without what gateways and connectors "
        "record (acknowledgements, polls, usage warnings, connection sessions); true: those "
        "only; unset: everything",
    )

    @field_validator("source_ip")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError as exc:
            raise ValueError("not an IPv4 or IPv6 address") from exc

    def check(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValidationError({"since": "must be before until"})

    def filters(self) -> dict[str, Any]:
        return {
            "tenant_id": chain.plain(self.tenant_id),
            "user_id": chain.plain(self.user_id),
            "source_ip": self.source_ip,
            "since": chain.plain(self.since),
            "until": chain.plain(self.until),
            "machine": self.machine,
        }


def _records(query: ExportQuery, scope: uuid.UUID | None) -> Select[Any]:
    t = AUDIT_EVENTS
    stmt = select(t).where(t.c.seq.is_not(None))
    tenant = scope or query.tenant_id
    if scope is not None and query.tenant_id is not None and query.tenant_id != scope:
        return stmt.where(t.c.id.is_(None))
    if tenant is not None:
        stmt = stmt.where(t.c.tenant_id == tenant)
    if query.user_id is not None:
        stmt = stmt.where(or_(t.c.user_id == query.user_id, t.c.actor_id == query.user_id))
    if query.source_ip is not None:
        stmt = stmt.where(t.c.source_ip == query.source_ip)
    if query.machine is not None:
        from tongdao.audit.reading import machine_clause, people_clause  # (reading uses us)

        stmt = stmt.where(machine_clause() if query.machine else people_clause())
    is_session = t.c.kind == "session"
    if query.since is not None:
        stmt = stmt.where(
            or_(
                and_(is_session, t.c.ended_at >= query.since),
                and_(~is_session, t.c.occurred_at >= query.since),
            )
        )
    if query.until is not None:
        stmt = stmt.where(
            or_(
                and_(is_session, t.c.started_at < query.until),
                and_(~is_session, t.c.occurred_at < query.until),
            )
        )
    return stmt.order_by(t.c.seq).execution_options(yield_per=2000)


def _open_sessions(
    session: Session, query: ExportQuery, scope: uuid.UUID | None
) -> Iterator[dict[str, Any]]:
    t = OPEN_CONNECTIONS
    stmt = select(t)
    tenant = scope or query.tenant_id
    if scope is not None and query.tenant_id is not None and query.tenant_id != scope:
        return
    if tenant is not None:
        stmt = stmt.where(t.c.tenant_id == tenant)
    if query.user_id is not None:
        stmt = stmt.where(t.c.user_id == query.user_id)
    if query.since is not None:
        stmt = stmt.where(t.c.last_active_at >= query.since)
    if query.until is not None:
        stmt = stmt.where(t.c.started_at < query.until)
    for row in session.execute(stmt.order_by(t.c.started_at, t.c.id)):
        source_ip, source_port = split_endpoint(row.endpoint)
        if query.source_ip is not None and source_ip != query.source_ip:
            continue
        yield {
            "kind": "session",
            "action": "connection_open",
            "occurred_at": row.started_at,
            "object_type": row.peer_kind,
            "object_id": row.peer_ref,
            "tenant_id": row.tenant_id,
            "user_id": row.user_id,
            "device_id": row.device_id,
            "pop_id": row.pop_id,
            "source_ip": source_ip,
            "source_port": source_port,
            "started_at": row.started_at,
            "rx_bytes": row.rx_bytes,
            "tx_bytes": row.tx_bytes,
            "after": {"endpoint": row.endpoint, "peer_key": row.peer_key},
        }


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through to ``target``."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self.sha256.update(chunk)
        self.size += len(chunk)
        self.target.write(chunk)
        return len(chunk)


def _line(row: Mapping[Any, Any]) -> dict[str, Any]:
    return {name: chain.plain(row.get(name)) for name in COLUMNS}


def _csv_cell(name: str, value: Any) -> Any:
    if value is not None and name in _JSON_COLUMNS:
        value = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return spreadsheet.cell(value)


def write_export(
    session: Session,
    query: ExportQuery,
    out: IO[bytes],
    *,
    scope: uuid.UUID | None,
    caller: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """Write the zip to ``out`` (records, then manifest) and return the manifest.

    ``scope``: the tenant a tenant admin is limited to (None for operator roles). ``session``
    should read one snapshot (:func:`tongdao.audit.chain.snapshot`).
    """
    query.check()
    head_seq, head_hash = chain.head(session)
    name = f"records.{query.format.value}"
    counts: Counter[str] = Counter()
    first_seq: int | None = None
    last_seq: int | None = None
    open_count = 0
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        with archive.open(name, "w", force_zip64=True) as entry:
            sink = _Hashing(entry)
            buffered = io.BufferedWriter(sink, buffer_size=1 << 16)
            text = io.TextIOWrapper(buffered, encoding="utf-8", newline="")
            writer = csv.writer(text) if query.format is ExportFormat.CSV else None
            if writer is not None:
                writer.writerow(COLUMNS)

            def emit(row: Mapping[Any, Any]) -> None:
                line = _line(row)
                if writer is not None:
                    writer.writerow([_csv_cell(c, line[c]) for c in COLUMNS])
                else:
                    text.write(json.dumps(line, sort_keys=True, ensure_ascii=False) + "\n")

            result = session.execute(_records(query, scope))
            try:
                for row in result:
                    m = row._mapping
                    counts[str(m["kind"])] += 1
                    first_seq = first_seq if first_seq is not None else int(m["seq"])
                    last_seq = int(m["seq"])
                    emit(m)
            finally:
                result.close()
            # Connections still open are machine records (the gateways' reports).
            live = [] if query.machine is False else _open_sessions(session, query, scope)
            for open_row in live:
                open_count += 1
                emit(open_row)
            text.flush()
            text.detach()
            buffered.flush()
            buffered.detach()
        # Cross-border documents of the applications in scope (tongdao.crossborder.export).
        from tongdao.crossborder.export import add_documents

        documents = add_documents(session, archive, query, scope)
        manifest: dict[str, Any] = chain.plain(
            {
                "format": query.format.value,
                "generated_at": now,
                "generated_by": dict(caller),
                "scope": "all tenants" if scope is None else f"tenant {scope}",
                "filters": query.filters(),
                "records": sum(counts.values()),
                "counts": dict(sorted(counts.items())),
                "open_sessions": open_count,
                "files": [
                    {
                        "name": name,
                        "sha256": sink.sha256.hexdigest(),
                        "bytes": sink.size,
                        "rows": sum(counts.values()) + open_count,
                    }
                ],
                "documents": documents,
                "chain": {
                    "first_seq": first_seq,
                    "last_seq": last_seq,
                    "head_seq": head_seq,
                    "head_hash": head_hash,
                    "hash": f"sha256, canonical JSON v{chain.HASH_VERSION} (tongdao.audit.chain)",
                },
                **({"csv_escaping": spreadsheet.RULE} if query.format is ExportFormat.CSV else {}),
                "ruleset_version": rules.VERSION,
                "retention_rule": "logs.retention",
                "tongdao_version": __version__,
            }
        )
        archive.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    return manifest
