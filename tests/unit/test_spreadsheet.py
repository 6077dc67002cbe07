"""CSV cells a spreadsheet would run as formulas start with a quote; numbers stay numbers."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tongdao.spreadsheet import FORMULA_STARTS, cell, unescape


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ('=HYPERLINK("http://198.51.100.66","x")', '\'=HYPERLINK("http://198.51.100.66","x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3+cmd", "'-2+3+cmd"),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("＝1+1", "'＝1+1"),
        ("'=already quoted", "''=already quoted"),
        ("-", "'-"),
        ("a=b", "a=b"),
        ("li@acme.example", "li@acme.example"),
        ("", ""),
        (None, ""),
        # Numbers stay numbers, negative ones too.
        (-5, -5),
        (-1.5, -1.5),
        (Decimal("-2.50"), Decimal("-2.50")),
        (True, True),
        ("-5", "-5"),
        ("-1.5e3", "-1.5e3"),
        ("+42", "+42"),
        ("9223372036854775807", "9223372036854775807"),
    ],
)
def test_cells(value: Any, written: Any) -> None:
    assert cell(value) == written
    assert type(cell(value)) is (str if value is None else type(value))


@given(st.text())
def test_the_rule_is_reversible_and_leaves_no_formula(text: str) -> None:
    out = cell(text)
    assert unescape(out) == text
    if out and out[0] in FORMULA_STARTS:  # only a plain number may start so
        float(out)


def test_a_quoted_cell_survives_the_csv_module() -> None:
    buffer = io.StringIO()
    rows = [["=1+1\n", -3, "'x", 'say "hi"']]
    csv.writer(buffer).writerows([[cell(v) for v in row] for row in rows])
    [back] = list(csv.reader(io.StringIO(buffer.getvalue())))
    assert back == ["'=1+1\n", "-3", "''x", 'say "hi"']
    assert [unescape(c) for c in back] == ["=1+1\n", "-3", "'x", 'say "hi"']
