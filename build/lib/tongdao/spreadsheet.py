"""Cells of the CSV files Tongdao writes, safe to open in a spreadsheet (CSV injection).

Excel, LibreOffice Calc, WPS and Google Sheets read a cell whose text starts with ``=``, ``+``,
``-`` or ``@`` (or a tab or carriage return before one) as a formula, so text an attacker chose
(a failed login's e-mail ``=HYPERLINK(...)``) would run in the reader's spreadsheet. Following
the OWASP guidance on CSV injection, such a text cell is written with a leading single quote
``'``, which spreadsheets show as text and do not evaluate. The full-width forms of the four
signs (``＝ ＋ － ＠``, which some East Asian spreadsheet set-ups accept as formula signs) are
treated the same. A text cell that already starts with ``'`` gets one more, so the rule is
reversible: a program reading the file drops one leading ``'`` from every cell that starts
with one (:func:`unescape`) and gets the stored text back, e.g. to recompute the audit
records' hashes.

Numbers stay numbers: int and float values are written as they are, and so is text that is
exactly a decimal number (``-5``, ``-1.5``, ``+3e2``), which a spreadsheet reads as that number
and nothing else. Every CSV the product writes goes through :func:`cell`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

QUOTE = "'"
FORMULA_STARTS = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

RULE = {
    "rule": "OWASP CSV injection: a text cell starting with = + - @ (or full-width ＝ ＋ － ＠), "
    "tab, carriage return or ' is written with one leading ' ; numbers, and text that is "
    "exactly a decimal number, are written as they are",
    "reverse": "drop one leading ' from every cell that starts with ' to get the stored text",
    "hashes": "the file's sha256 and bytes are of the file as written, escaped",
}


_QUOTED_STARTS = FORMULA_STARTS | {QUOTE}


def needs_quote(text: str) -> bool:
    """Whether a text cell would start a formula (or starts with the escaping quote)."""
    if not text or text[0] not in _QUOTED_STARTS:
        return False
    return text[0] == QUOTE or _NUMBER.fullmatch(text) is None


def cell(value: Any) -> Any:
    """``value`` as a CSV cell: numbers as they are, formula-like text quoted."""
    if value is None:
        return ""
    if isinstance(value, str):
        return QUOTE + value if needs_quote(value) else value
    if isinstance(value, int | float | Decimal):  # bool is an int
        return value
    text = str(value)
    return QUOTE + text if needs_quote(text) else text


def unescape(text: str) -> str:
    """The stored text of a cell :func:`cell` wrote (the reverse of the rule)."""
    return text[1:] if text.startswith(QUOTE) else text


__all__ = ["FORMULA_STARTS", "QUOTE", "RULE", "cell", "needs_quote", "unescape"]
