"""The operator's commitment letter template (信息安全承诺书), bilingual, as a PDF a tenant
downloads, fills in, signs and stamps, then uploads. Made with the PDF stack billing uses
(fpdf2, WenQuanYi Micro Hei embedded as a subset: tongdao.billing.pdf)."""

from __future__ import annotations

from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from sqlalchemy.orm import Session

from tongdao.billing.pdf import CJK_FONT, CJK_FONT_INDEX
from tongdao.errors import Unavailable

TITLE = "跨境专线信息安全承诺书 / Cross-border Line Information Security Commitment Letter"

# (Chinese, English) paragraphs: the undertakings the carriers ask for (internal office use,
# no telecom business, compliance with the law, notice of changes).
CLAUSES: tuple[tuple[str, str], ...] = (
    (
        "本单位申请使用{operator}提供的跨境专线服务，仅用于本单位内部办公，"
        "不用于经营电信业务，不向任何第三方转租、转售或提供。",
        "We apply for the cross-border line service provided by {operator} for our own "
        "internal office use only; we will not use it to run any telecom business, and will "
        "not sublease, resell or provide it to any third party.",
    ),
    (
        "本单位不利用该线路连接境外数据中心或业务平台开展电信业务经营活动。",
        "We will not use the line to connect data centres or platforms abroad in order to "
        "operate telecom business.",
    ),
    (
        "本单位遵守《中华人民共和国网络安全法》《中华人民共和国数据安全法》"
        "《中华人民共和国个人信息保护法》等法律法规，不利用该线路从事危害国家安全、"
        "社会公共利益或他人合法权益的活动。",
        "We comply with the Cybersecurity Law, the Data Security Law, the Personal Information "
        "Protection Law and other laws and regulations of the PRC, and will not use the line "
        "for any activity that endangers national security, the public interest or the lawful "
        "rights of others.",
    ),
    (
        "本单位提供的申请资料真实、准确、完整；资料发生变化时，将及时书面通知。",
        "The information in our application is true, accurate and complete; we will notify "
        "any change in writing without delay.",
    ),
    (
        "如违反上述承诺，本单位愿承担相应法律责任，并同意运营商依法暂停或终止服务。",
        "If we breach these undertakings we bear the legal responsibility, and agree that the "
        "operator may suspend or end the service according to law.",
    ),
)

BLANKS = (
    ("单位名称（盖章） Company name (stamp)", ""),
    ("统一社会信用代码 USCC", ""),
    ("法定代表人 Legal representative", ""),
    ("负责人及电话 Responsible manager, phone", ""),
    ("申请带宽 Bandwidth requested (Mbit/s)", ""),
    ("境外站点 Overseas sites", ""),
    ("签字 Signature", ""),
    ("日期 Date", ""),
)


def template_pdf(operator: str = "the operator / 运营商", *, font: Path = CJK_FONT) -> bytes:
    if not font.is_file():
        raise Unavailable(f"the CJK font {font} is not installed (fonts-wqy-microhei)", 3600)
    pdf = FPDF(format="A4")
    pdf.set_title("信息安全承诺书 Commitment letter")
    pdf.set_creator("Tongdao")
    pdf.add_font("cjk", fname=str(font), collection_font_number=CJK_FONT_INDEX)
    pdf.add_page()
    pdf.set_font("cjk", size=13)
    pdf.multi_cell(0, 8, TITLE, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(3)
    pdf.set_font("cjk", size=10)
    pdf.multi_cell(0, 6, f"致 To: {operator}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    for n, (zh, en) in enumerate(CLAUSES, start=1):
        pdf.set_font("cjk", size=10)
        pdf.multi_cell(
            0, 6, f"{n}. {zh.format(operator=operator)}", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        pdf.set_font("cjk", size=9)
        pdf.multi_cell(
            0, 5, f"   {en.format(operator=operator)}", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        pdf.ln(2)
    pdf.ln(4)
    pdf.set_font("cjk", size=10)
    for label, _ in BLANKS:
        pdf.cell(85, 9, label)
        pdf.cell(0, 9, "_" * 40, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    return bytes(pdf.output())


def operator_name(session: Session) -> str:
    """The operator's legal names (Chinese and English) as the letter names them."""
    from sqlalchemy import select

    from tongdao.operator.models import OperatorProfile

    profile = session.scalar(select(OperatorProfile))
    if profile is None:
        return "the operator / 运营商"
    return f"{profile.legal_name_zh} {profile.legal_name}".strip()
