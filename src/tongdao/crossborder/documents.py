"""Uploaded documents: the type decided by the content (magic bytes, then a parse: pypdf for a
PDF, Pillow for a PNG or JPEG), at most 10 MiB, kept in the store with their SHA-256.

The route streams the body and stops reading past the limit (:func:`read_limited`); the
declared ``Content-Type`` must agree with what the bytes are. Errors are field-keyed 422s
(``file``) and a 413 (``file``) for a body too large.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from collections.abc import AsyncIterator

from sqlalchemy.orm import Session

from tongdao.crossborder.models import CrossBorderApplication, CrossBorderDocument, DocumentKind
from tongdao.errors import Conflict, PayloadTooLarge, ValidationError
from tongdao.runtime import Ctx

MAX_BYTES = 10 * 1024 * 1024
# A scanned A4 page at 300 dpi is 2480 x 3508, about 8.7 million pixels; at most 12 million
# (an RGBA image that size decodes to under 50 MB).
MAX_PIXELS = 12_000_000
PDF, PNG, JPEG = "application/pdf", "image/png", "image/jpeg"
ACCEPTED = (PDF, PNG, JPEG)
_MAGIC = ((b"%PDF-", PDF), (b"\x89PNG\r\n\x1a\n", PNG), (b"\xff\xd8\xff", JPEG))
TOO_MANY_PIXELS = "the image has too many pixels"
_NAME = re.compile(r"[^\w.\-() \u4e00-\u9fff]+")


def too_large() -> PayloadTooLarge:
    return PayloadTooLarge(
        f"a document is at most {MAX_BYTES // (1024 * 1024)} MiB",
        {"file": f"larger than {MAX_BYTES // (1024 * 1024)} MiB"},
    )


async def read_limited(chunks: AsyncIterator[bytes], declared: str | None) -> bytes:
    """The body, refused as soon as it passes :data:`MAX_BYTES` (declared or streamed)."""
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BYTES):
        raise too_large()
    buf = bytearray()
    async for chunk in chunks:
        buf += chunk
        if len(buf) > MAX_BYTES:
            raise too_large()
    return bytes(buf)


def sniff(data: bytes) -> str:
    """The content type the bytes are, checked by parsing them; 422 (``file``) otherwise."""
    if not data:
        raise ValidationError({"file": "the file is empty"})
    kind = next((t for magic, t in _MAGIC if data.startswith(magic)), None)
    if kind is None:
        raise ValidationError({"file": "not a PDF, PNG or JPEG file (by its content)"})
    if kind == PDF:
        _check_pdf(data)
    else:
        _check_image(data, "PNG" if kind == PNG else "JPEG")
    return kind


def _check_pdf(data: bytes) -> None:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = PdfReader(io.BytesIO(data), strict=False)
            pages = len(reader.pages)
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise ValidationError({"file": "the PDF cannot be read (damaged or cut off)"}) from exc
    if pages < 1:
        raise ValidationError({"file": "the PDF has no pages"})


def _check_image(data: bytes, fmt: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as img:
                if img.format != fmt:
                    raise ValidationError({"file": f"not a valid {fmt} image"})
                if img.width * img.height > MAX_PIXELS:
                    raise ValidationError({"file": TOO_MANY_PIXELS})
                img.verify()
            with Image.open(io.BytesIO(data)) as img:
                img.load()  # verify() does not decode a JPEG: a cut-off one fails here
    except ValidationError:
        raise
    except Image.DecompressionBombError as exc:  # over twice Pillow's limit: not an OSError
        raise ValidationError({"file": TOO_MANY_PIXELS}) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ValidationError({"file": f"the {fmt} image cannot be read (damaged)"}) from exc


def clean_filename(name: str | None, kind: str) -> str:
    base = _NAME.sub("_", (name or "").strip())[:120].strip("._ ")
    ext = {PDF: "pdf", PNG: "png", JPEG: "jpg"}[kind]
    if not base:
        base = "document"
    if not base.lower().endswith(f".{ext}") and not (
        ext == "jpg" and base.lower().endswith(".jpeg")
    ):
        base = f"{base}.{ext}"
    return base


def check_open(session: Session, app: CrossBorderApplication) -> None:
    """409 (``file``) unless the application is a draft with room for one more document."""
    from sqlalchemy import func, select

    from tongdao.crossborder.service import MAX_DOCUMENTS, UPLOAD_STATES

    if app.state not in UPLOAD_STATES:
        raise Conflict(
            f"the application is {app.state}; documents are added to a draft only",
            {"file": "documents are added to a draft only"},
        )
    have = session.scalar(
        select(func.count())
        .select_from(CrossBorderDocument)
        .where(CrossBorderDocument.application_id == app.id)
    )
    if (have or 0) >= MAX_DOCUMENTS:
        raise Conflict(
            f"the application has {have} documents; at most {MAX_DOCUMENTS}",
            {"file": f"at most {MAX_DOCUMENTS} documents per application"},
        )


def add(
    ctx: Ctx,
    app: CrossBorderApplication,
    kind: DocumentKind,
    filename: str | None,
    declared_type: str | None,
    data: bytes,
) -> CrossBorderDocument:
    check_open(ctx.session, app)
    if len(data) > MAX_BYTES:
        raise too_large()
    actual = sniff(data)
    declared = (declared_type or "").split(";")[0].strip().lower()
    if declared and declared not in ("application/octet-stream", actual):
        raise ValidationError(
            {"file": f"the content is {actual}, not the {declared} it was sent as"}
        )
    doc = CrossBorderDocument(
        application_id=app.id,
        tenant_id=app.tenant_id,
        kind=kind.value,
        filename=clean_filename(filename, actual),
        content_type=actual,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content=data,
        uploaded_by=ctx.user_id,
    )
    ctx.session.add(doc)
    return doc
