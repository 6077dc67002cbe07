"""Anchoring the audit chain outside the database: signed head checkpoints in a file.

Someone who can write the database can delete the newest audit records and move the chain
head back to the last record kept: the chain still verifies (every hash is right, the head
matches). An *anchor* catches that. Every scheduler tick (:mod:`tongdao.jobs.scheduler`;
``tongdao audit anchor`` does it once) appends the chain head — seq, hash, time — to an
append-only JSON Lines file outside the database (``TONGDAO_AUDIT_ANCHOR_FILE``, default
``<data dir>/audit-anchors.jsonl``; keep a copy on another host or write-once store), when it
moved since the last line. Each line is signed with Ed25519 (``cryptography``): the key pair
is derived (HKDF-SHA256, its own ``info``) from the data key, sealed like every other secret
of the server, so there is no further key to keep; each line names its key id and public key,
and a verifier trusts only the public keys derived from the data keys it holds (current and
previous) or one it is given (``--public-key``), never a line's own.

:func:`check` (``tongdao audit verify --local --anchor FILE``) verifies each line's signature,
then that the chain still holds each anchored record with the anchored hash and that its head
is not behind the newest anchor. Records purged behind a signed checkpoint
(:mod:`tongdao.audit.retention`) are not asked for: the checkpoint stands for them.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pydantic import BaseModel, Field
from sqlalchemy import select

from tongdao.audit.chain import canonical, latest_checkpoint, snapshot
from tongdao.audit.models import AUDIT_EVENTS, CHAIN_HEAD
from tongdao.config import Settings
from tongdao.store.engine import Database

VERSION = 1
_INFO = b"tongdao audit anchor ed25519 v1"


def _derive(data_key: bytes) -> Ed25519PrivateKey:
    seed = HKDF(algorithm=SHA256(), length=32, salt=None, info=_INFO).derive(data_key)
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def public_key_of(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(text.strip(), validate=True))


@dataclass(frozen=True)
class AnchorKeys:
    key_id: str
    signing: Ed25519PrivateKey
    trusted: Mapping[str, Ed25519PublicKey]  # key id -> public key (current and previous)

    @classmethod
    def from_settings(cls, settings: Settings) -> AnchorKeys:
        keys = settings.data_keys
        trusted = {kid: _derive(key).public_key() for kid, key in keys.items()}
        return cls(settings.data_key_id, _derive(keys[settings.data_key_id]), trusted)


def anchor_file(settings: Settings) -> Path:
    return settings.audit_anchor_file or settings.data_dir / "audit-anchors.jsonl"


def _content(seq: int, hash_: str, at: datetime, key_id: str) -> dict[str, Any]:
    return {"v": VERSION, "seq": seq, "hash": hash_, "at": at.isoformat(), "key_id": key_id}


def read_head(db: Database) -> tuple[int, str]:
    with db.session(write=False) as session:
        row = session.execute(
            select(CHAIN_HEAD.c.seq, CHAIN_HEAD.c.hash).where(CHAIN_HEAD.c.id == 1)
        ).one()
        return int(row.seq), str(row.hash)


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict):  # not JSON, or JSON but not an object: [1], "x", null
            entry = {"unreadable": True}
        entry["line"] = number
        out.append(entry)
    return out


def write(db: Database, keys: AnchorKeys, path: Path, now: datetime) -> dict[str, Any] | None:
    """Append the chain head to ``path`` (made 0600 if new) unless the last line holds it
    already; the line written, or None."""
    seq, hash_ = read_head(db)
    lines = read_lines(path)
    if lines and lines[-1].get("seq") == seq and lines[-1].get("hash") == hash_:
        return None
    content = _content(seq, hash_, now, keys.key_id)
    signature = base64.b64encode(keys.signing.sign(canonical(content))).decode()
    entry = {
        **content,
        "public_key": public_text(keys.signing.public_key()),
        "signature": signature,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return entry


class AnchorReport(BaseModel):
    ok: bool
    anchors: int = Field(description="signed lines read")
    newest_seq: int | None = Field(description="the newest anchored seq")
    head_seq: int
    problem: str | None = None


def _signature_problem(
    entry: Mapping[str, Any], trusted: Mapping[str, Ed25519PublicKey]
) -> str | None:
    if entry.get("unreadable"):
        return "it is not a JSON object"
    key = trusted.get(str(entry.get("key_id")))
    if key is None:
        return f"it is signed with key {entry.get('key_id')!r}, which is not a trusted key"
    try:
        content = _content(
            int(entry["seq"]),
            str(entry["hash"]),
            datetime.fromisoformat(str(entry["at"])),
            str(entry["key_id"]),
        )
        key.verify(base64.b64decode(str(entry["signature"])), canonical(content))
    except (KeyError, TypeError, ValueError, InvalidSignature):
        return "its signature does not hold (forged or edited)"
    return None


def check(
    db: Database,
    keys: AnchorKeys,
    path: Path,
    *,
    public_keys: Iterable[Ed25519PublicKey] = (),
) -> AnchorReport:
    """Whether the chain in the store still holds what the anchor file signed."""
    trusted = dict(keys.trusted)
    for n, key in enumerate(public_keys):
        trusted[f"given-{n}"] = key
    entries = read_lines(path)
    t = AUDIT_EVENTS
    with snapshot(db) as session:
        head_seq, _head_hash = session.execute(
            select(CHAIN_HEAD.c.seq, CHAIN_HEAD.c.hash).where(CHAIN_HEAD.c.id == 1)
        ).one()
        latest = latest_checkpoint(session)
        purged = int(latest["through_seq"]) if latest is not None else 0
        purged_hash = str(latest["through_hash"]) if latest is not None else None
        seqs = [int(e["seq"]) for e in entries if isinstance(e.get("seq"), int)]
        stored = {
            int(row.seq): str(row.hash)
            for row in session.execute(select(t.c.seq, t.c.hash).where(t.c.seq.in_(seqs)))
        }
    head_seq = int(head_seq)

    def report(problem: str | None) -> AnchorReport:
        return AnchorReport(
            ok=problem is None,
            anchors=len(entries),
            newest_seq=max(seqs) if seqs else None,
            head_seq=head_seq,
            problem=problem,
        )

    if not entries:
        return report(f"the anchor file {path} holds no anchor")
    for entry in entries:
        why = _signature_problem(entry, trusted)
        if why is not None:
            return report(f"anchor line {entry['line']} is not trusted: {why}")
    for entry in entries:
        seq, hash_, line, at = int(entry["seq"]), str(entry["hash"]), entry["line"], entry["at"]
        if seq > head_seq:
            return report(
                f"truncated: anchor line {line} (signed {at}) names seq {seq}, but the chain's "
                f"head is at seq {head_seq}: records were deleted and the head moved back"
            )
        if seq == 0 or seq < purged:
            continue  # purged behind a signed checkpoint
        if seq == purged:
            if purged_hash != hash_:
                return report(f"anchor line {line}: the checkpoint's last purged hash differs")
            continue
        if seq not in stored:
            return report(f"deleted: anchor line {line} names seq {seq}, which is missing")
        if stored[seq] != hash_:
            return report(
                f"rewritten: record seq {seq} has hash {stored[seq]}, anchor line {line} "
                f"(signed {at}) says {hash_}"
            )
    return report(None)
