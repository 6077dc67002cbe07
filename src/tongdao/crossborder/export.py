"""Cross-border documents in the regulator export (:func:`tongdao.audit.export.write_export`):
each document of the applications in scope is a zip entry
``crossborder/<application id>/<document id>-<file name>``, listed in the manifest with its
kind, size and SHA-256 (the one recorded at upload, checked again as it is written).

Scope: the caller's tenant (a tenant admin), else ``tenant_id``; ``user_id``: documents that
user uploaded; ``since``/``until``: uploaded in ``[since, until)``; an export by
``source_ip`` (connection records) holds none.
"""

from __future__ import annotations

import hashlib
import uuid
import zipfile
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tongdao.crossborder.models import CrossBorderDocument

if TYPE_CHECKING:
    from tongdao.audit.export import ExportQuery


def add_documents(
    session: Session, archive: zipfile.ZipFile, query: ExportQuery, scope: uuid.UUID | None
) -> list[dict[str, Any]]:
    if query.source_ip is not None:
        return []
    stmt = select(CrossBorderDocument.id).order_by(CrossBorderDocument.id)
    tenant = scope or query.tenant_id
    if tenant is not None:
        stmt = stmt.where(CrossBorderDocument.tenant_id == tenant)
    if query.user_id is not None:
        stmt = stmt.where(CrossBorderDocument.uploaded_by == query.user_id)
    if query.since is not None:
        stmt = stmt.where(CrossBorderDocument.created_at >= query.since)
    if query.until is not None:
        stmt = stmt.where(CrossBorderDocument.created_at < query.until)
    out: list[dict[str, Any]] = []
    for doc_id in list(session.scalars(stmt)):
        doc = session.get(CrossBorderDocument, doc_id)
        assert doc is not None
        name = f"crossborder/{doc.application_id}/{doc.id}-{doc.filename}"
        digest = hashlib.sha256(doc.content).hexdigest()
        archive.writestr(name, doc.content)
        out.append(
            {
                "name": name,
                "tenant_id": str(doc.tenant_id),
                "application_id": str(doc.application_id),
                "kind": doc.kind,
                "content_type": doc.content_type,
                "bytes": doc.size,
                "sha256": doc.sha256,
                "sha256_matches": digest == doc.sha256,
                "uploaded_at": doc.created_at.isoformat(),
            }
        )
        session.expunge(doc)  # one document's content in memory at a time
    return out
