"""An invoice's downloads as HTTP answers, for the API and the console alike (same bytes)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session, object_session

from tongdao.billing import export, pdf
from tongdao.billing.models import Invoice


def _attachment(invoice: Invoice, suffix: str) -> dict[str, str]:
    # Invoice numbers are the series' own (letters and digits): safe in a quoted filename.
    return {"Content-Disposition": f'attachment; filename="{invoice.number}.{suffix}"'}


def original_of(invoice: Invoice) -> Invoice | None:
    """The invoice a credit note corrects (None for an invoice)."""
    session = object_session(invoice)
    if invoice.corrects_id is None or session is None:
        return None
    return session.get(Invoice, invoice.corrects_id)


def pdf_file(invoice: Invoice) -> Response:
    """The invoice as PDF (Chinese text in an embedded WenQuanYi Micro Hei subset); a credit
    note names the invoice and the lines it corrects."""
    return Response(
        pdf.to_pdf(invoice, original_of(invoice)),
        media_type="application/pdf",
        headers=_attachment(invoice, "pdf"),
    )


def csv_file(invoice: Invoice) -> Response:
    return Response(
        export.to_csv(invoice, original_of(invoice)),
        media_type="text/csv; charset=utf-8",
        headers=_attachment(invoice, "csv"),
    )


def efapiao(session: Session, invoice: Invoice) -> dict[str, Any]:
    """What a fully digitalised e-fapiao carries (see :mod:`tongdao.billing.export`); a credit
    note names the invoice it corrects."""
    original = session.get(Invoice, invoice.corrects_id) if invoice.corrects_id else None
    return export.to_efapiao(invoice, original)


def efapiao_file(session: Session, invoice: Invoice) -> Response:
    return JSONResponse(efapiao(session, invoice), headers=_attachment(invoice, "json"))
