"""An invoice as CSV (cells neutralised, :mod:`tongdao.spreadsheet`) and as the JSON a fully
digitalised e-fapiao (全电发票) carries, for the operator's e-fapiao system.

The e-fapiao JSON (``tongdao.efapiao/1``)::

    {
      "format": "tongdao.efapiao/1",
      "invoice_type": "81" | "82",          81 special VAT fapiao (增值税专用发票),
                                             82 ordinary (普通发票): 81 when the buyer has a tax ID
      "red": false | true,                  a credit note (红字), with "original" set
      "original": {"number": ..., "fapiao_number": ...} | null,
      "number": "INV00000001",              Tongdao's invoice number (the tax system assigns
                                             the 20-digit fapiao number, recorded afterwards)
      "issue_date": "YYYY-MM-DD" | null,
      "seller": {"name", "tax_id", "address_phone"},
      "buyer":  {"name", "tax_id", "address_phone", "bank", "account"},
      "items": [{"name", "tax_classification_code", "unit", "quantity", "unit_price",
                 "amount", "tax_rate", "tax", "original_line"}],
      "total_amount": "...",  "total_tax": "...",  "total_with_tax": "...",
      "currency": "CNY"
    }

A credit note's items are negative (amount, tax and quantity); each names by
``original_line`` the position of the original invoice's line it corrects (null on an invoice).
A partial credit note carries only the lines it credits, by the amounts it credits.

Amounts are decimal strings in yuan. ``unit_price`` is the amount divided by the quantity (to 8
places), so that quantity × unit price gives the prorated amount as the tax system checks it.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from tongdao.billing.models import Invoice, InvoiceKind
from tongdao.spreadsheet import cell

EFAPIAO_FORMAT = "tongdao.efapiao/1"
SPECIAL = "81"
ORDINARY = "82"
UNIT_PRICE_PLACES = Decimal("0.00000001")


def to_csv(invoice: Invoice, original: Invoice | None = None) -> str:
    """The invoice as CSV; a credit note names the invoice it corrects (``corrects``) and, per
    line, the original's line (``corrects_line``, its position there)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["number", "kind", "month", "state", "buyer", "buyer_tax_id", "fapiao_number",
                "corrects"])  # fmt: skip
    w.writerow(
        [cell(v) for v in (invoice.number, invoice.kind, invoice.month, invoice.state,
                           invoice.buyer_name, invoice.buyer_tax_id, invoice.fapiao_number,
                           original.number if original else "")]
    )  # fmt: skip
    w.writerow([])
    w.writerow(["position", "description", "tax_code", "unit", "quantity", "unit_price",
                "period_start", "period_end", "amount", "vat_rate", "vat",
                "corrects_line"])  # fmt: skip
    for line in invoice.lines:
        w.writerow(
            [cell(v) for v in (line.position, line.description, line.tax_code, line.unit,
                               line.quantity, line.unit_price, line.period_start.isoformat(),
                               line.period_end.isoformat(), line.amount, line.vat_rate,
                               line.vat, line.position if original else "")]
        )  # fmt: skip
    w.writerow([])
    w.writerow(["subtotal", "vat", "total"])
    w.writerow([cell(invoice.subtotal), cell(invoice.vat), cell(invoice.total)])
    return out.getvalue()


def _unit_price(amount: Decimal, quantity: Decimal) -> str:
    if quantity == 0:
        return "0"
    return str((amount / quantity).quantize(UNIT_PRICE_PLACES).normalize())


def to_efapiao(invoice: Invoice, original: Invoice | None = None) -> dict[str, Any]:
    return {
        "format": EFAPIAO_FORMAT,
        "invoice_type": SPECIAL if invoice.buyer_tax_id else ORDINARY,
        "red": invoice.kind == InvoiceKind.CREDIT_NOTE,
        "original": None
        if original is None
        else {"number": original.number, "fapiao_number": original.fapiao_number},
        "number": invoice.number,
        "issue_date": invoice.issued_on.isoformat() if invoice.issued_on else None,
        "seller": {
            "name": invoice.seller_name,
            "tax_id": invoice.seller_tax_id,
            "address_phone": invoice.seller_address_phone,
        },
        "buyer": {
            "name": invoice.buyer_name,
            "tax_id": invoice.buyer_tax_id,
            "address_phone": invoice.buyer_address_phone,
            "bank": invoice.buyer_bank,
            "account": invoice.buyer_account,
        },
        "items": [
            {
                "name": line.description,
                "tax_classification_code": line.tax_code,
                "unit": line.unit,
                "quantity": str(line.quantity.normalize()),
                "unit_price": _unit_price(line.amount, line.quantity),
                "amount": str(line.amount),
                "tax_rate": str(line.vat_rate.normalize()),
                "tax": str(line.vat),
                "original_line": line.position if original is not None else None,
            }
            for line in invoice.lines
        ],
        "total_amount": str(invoice.subtotal),
        "total_tax": str(invoice.vat),
        "total_with_tax": str(invoice.total),
        "currency": invoice.currency,
    }
