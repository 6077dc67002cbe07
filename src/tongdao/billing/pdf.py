"""An invoice as PDF, Chinese text included, with fpdf2 (pure Python, maintained, embeds and
subsets TrueType fonts, collections too) and WenQuanYi Micro Hei, which Debian's
``fonts-wqy-microhei`` installs (scripts/install-system.sh), embedded as a subset.

Not Noto Sans CJK: its outlines are CFF, which fpdf2 embeds with an encoding CMap that pypdf
and pdfminer do not read, so the text did not extract back; a TrueType-outline font is embedded
as Identity-H with a ToUnicode map and extracts cleanly."""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from tongdao.billing.models import Invoice, InvoiceKind
from tongdao.errors import Unavailable

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
CJK_FONT_INDEX = 0  # WenQuanYi Micro Hei (the collection's other face is its monospaced one)
TITLES = {InvoiceKind.INVOICE: "账单 Invoice", InvoiceKind.CREDIT_NOTE: "红字账单 Credit note"}


def yuan(value: object) -> str:
    return f"¥{value:,}" if not str(value).startswith("-") else f"-¥{str(value)[1:]}"


def to_pdf(invoice: Invoice, original: Invoice | None = None, *, font: Path = CJK_FONT) -> bytes:
    """The invoice as PDF; a credit note (negative amounts) names the invoice it corrects and,
    on each line, the original's line it credits."""
    if not font.is_file():
        raise Unavailable(f"the CJK font {font} is not installed (fonts-wqy-microhei)", 3600)
    pdf = FPDF(format="A4")
    pdf.set_title(f"{invoice.number}")
    pdf.set_creator("Tongdao")
    pdf.add_font("cjk", fname=str(font), collection_font_number=CJK_FONT_INDEX)
    pdf.add_page()
    pdf.set_font("cjk", size=16)
    pdf.cell(
        0,
        10,
        f"{TITLES[InvoiceKind(invoice.kind)]}  {invoice.number}",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.set_font("cjk", size=9)
    for label, value in (
        ("月份 Month", invoice.month),
        ("状态 State", invoice.state),
        ("开具日期 Issued", invoice.issued_on.isoformat() if invoice.issued_on else "-"),
        ("到期日 Due", invoice.due_on.isoformat() if invoice.due_on else "-"),
        ("发票号码 Fapiao", invoice.fapiao_number or "-"),
        *(
            [("原发票 Corrects", f"{original.number}  {original.fapiao_number or ''}".strip())]
            if original is not None
            else []
        ),
        ("销售方 Seller", f"{invoice.seller_name}  {invoice.seller_tax_id}"),
        ("购买方 Buyer", invoice.buyer_name),
        ("纳税人识别号 Tax ID", invoice.buyer_tax_id),
        ("地址电话 Address, phone", invoice.buyer_address_phone),
        ("开户行及账号 Bank, account", f"{invoice.buyer_bank}  {invoice.buyer_account}"),
    ):
        pdf.cell(50, 6, label)
        pdf.multi_cell(0, 6, value or "-", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(4)
    widths = (44, 30, 30, 30, 20, 26)
    heads = ("税收分类编码", "数量 Quantity", "单价 Unit price", "金额 Amount", "税率", "税额 VAT")
    for width, head in zip(widths, heads, strict=True):
        pdf.cell(width, 7, head, border=1)
    pdf.ln()
    for item in invoice.lines:
        text = f"{item.position}. {item.description}"
        if original is not None:
            n = item.position
            text += f"  (冲原发票第{n}行 corrects line {n} of {original.number})"
        pdf.multi_cell(0, 6, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        cells = (
            item.tax_code,
            f"{item.quantity.normalize()} {item.unit}",
            str(item.unit_price),
            str(item.amount),
            f"{(item.vat_rate * 100).normalize()}%",
            str(item.vat),
        )
        for width, text in zip(widths, cells, strict=True):
            pdf.cell(width, 7, text, border=1)
        pdf.ln()
    pdf.ln(4)
    pdf.set_font("cjk", size=11)
    for caption, amount in (
        ("金额合计 Subtotal", invoice.subtotal),
        ("税额合计 VAT", invoice.vat),
        ("价税合计 Total", invoice.total),
    ):
        pdf.cell(60, 7, caption)
        pdf.cell(0, 7, yuan(amount), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())
