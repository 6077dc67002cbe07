"""Single-line text refuses control characters at the schema level (issue 10): one rule
(:data:`tongdao.schemas.OneLine`, :func:`tongdao.validation.single_line`) on every field of
every request schema that is meant to be one line; multi-line text keeps its line breaks."""

from __future__ import annotations

import importlib
import pkgutil
import types
import typing
import unicodedata
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticError

import tongdao
from tongdao import validation
from tongdao.schemas import Email, Strict

REFUSED = {
    "LF": "\n",
    "CR": "\r",
    "TAB": "\t",
    "NUL": "\x00",
    "ESC": "\x1b",
    "DEL": "\x7f",
    "NEL": "\x85",
    "LS": "\u2028",
    "PS": "\u2029",
    "LRE": "\u202a",
    "RLO": "\u202e",
    "LRI": "\u2066",
    "PDI": "\u2069",
    "surrogate": "\ud800",
}


@pytest.mark.parametrize("ch", REFUSED.values(), ids=REFUSED.keys())
def test_single_line_refuses_controls_separators_and_bidi_overrides(ch: str) -> None:
    with pytest.raises(ValueError, match=f"single line of text: U\\+{ord(ch):04X}"):
        validation.single_line(f"Acme{ch}[Peer]")


@pytest.mark.parametrize(
    "text",
    [
        "Acme China Ltd.",
        "通道科技（北京）有限公司",
        "Zoë O'Brien-Łukasz",
        "שלום\u200f 1",
        "👩\u200d💻",
    ],
)
def test_single_line_keeps_ordinary_text(text: str) -> None:
    assert validation.single_line(text) == text


def test_multi_line_keeps_line_breaks_and_refuses_other_controls() -> None:
    text = "Line one\r\nLine two\n\tindented\u2028"
    assert validation.multi_line(text) == text
    for ch in ("\x00", "\x1b", "\x7f", "\x85", "\ud800"):
        with pytest.raises(ValueError, match=f"U\\+{ord(ch):04X}"):
            validation.multi_line(f"a{ch}b")


def test_one_line_text_removes_what_single_line_refuses() -> None:
    text = "".join(f"a{ch}" for ch in REFUSED.values())
    assert validation.one_line_text(text) == "a" * len(REFUSED)


@pytest.mark.parametrize(
    "host", ["abc\n.example.com", "pop.example\n.com", "fe80::1%x\n[Peer]", "fe80::1%eth0"]
)
def test_a_host_is_a_host(host: str) -> None:
    with pytest.raises(ValueError, match="not a DNS name or IP address"):
        validation.hostname_or_ip(host)


@pytest.mark.parametrize("prefix", ["fd00::%x/64", "fd00:10::%x\n[Peer]/64"])
def test_a_prefix_has_no_zone(prefix: str) -> None:
    with pytest.raises(ValueError, match="not an IP prefix"):
        validation.network(prefix)


@pytest.mark.parametrize(
    "email",
    [
        "li\n@acme.example",
        "li@acme.example\nBcc: x@y.example",
        '"li\nna"@acme.example',
        "li\r@acme.example",
        "li\x00@acme.example",
        "li\t@acme.example",
        "li\x85@acme.example",
        "li\u2028@acme.example",
        "li@acme\u202e.example",
    ],
)
def test_an_email_cannot_carry_a_control_character(email: str) -> None:
    """email-validator (behind EmailStr) already refuses these: checked, not assumed."""
    with pytest.raises(PydanticError, match="not a valid email address"):
        TypeAdapter(Email).validate_python(email)


# --- every request schema ---------------------------------------------------------------------
# Secrets are compared or hashed, never stored or written into a file.
SECRETS = {"password", "current_password", "new_password", "token", "code", "totp_code"}
MULTI_LINE = {
    ("NoticeCreate", "text"),
    ("NoticeCreate", "transfer_abroad_text"),
    ("Rejection", "reason"),
    ("Approval", "reason"),
    ("AllowanceCreate", "reason"),
    ("AllowanceUpdate", "reason"),
    ("TenantUpdate", "state_reason"),
    ("Ack", "error"),
    ("PolicyCreate", "description"),
    ("PolicyUpdate", "description"),
    ("GroupCreate", "description"),
    ("GroupUpdate", "description"),
    ("ApplicationCreate", "notes"),
    ("ApplicationUpdate", "notes"),
    ("Approve", "reason"),
    ("Reject", "reason"),
    ("Revoke", "reason"),
    ("DomainDecisionIn", "reason"),
}


def _schema_models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for info in pkgutil.iter_modules(tongdao.__path__):
        if not info.ispkg:
            continue
        try:
            module = importlib.import_module(f"tongdao.{info.name}.schemas")
        except ModuleNotFoundError:
            continue
        for obj in vars(module).values():
            if not isinstance(obj, type) or not issubclass(obj, BaseModel):
                continue
            # Request bodies, and the query filters of lists (PostgreSQL refuses NUL in them).
            if (issubclass(obj, Strict) and obj is not Strict) or obj.__name__.endswith("Filters"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def _text_shape(annotation: Any) -> str | None:
    """'str' or 'list' when the field takes text (possibly optional), else None."""
    if annotation is str:
        return "str"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _text_shape(args[0])
    if origin in (typing.Union, types.UnionType):
        shapes = {_text_shape(a) for a in args} - {None}
        return shapes.pop() if shapes else None
    if origin is list and args and _text_shape(args[0]) == "str":
        return "list"
    return None


TEXT_FIELDS = [
    (model, name, shape)
    for model in _schema_models()
    for name, info in model.model_fields.items()
    if (shape := _text_shape(info.annotation)) is not None and name not in SECRETS
]


def _refused(model: type[BaseModel], name: str, shape: str, text: str) -> bool:
    value: Any = [text] if shape == "list" else text
    try:
        model.model_validate({name: value})
    except PydanticError as exc:
        return any(err["loc"][:1] == (name,) for err in exc.errors())
    return False


def test_the_walk_finds_the_fields_that_reach_files() -> None:
    names = {(m.__name__, n) for m, n, _s in TEXT_FIELDS}
    assert {
        ("TenantCreate", "name_en"),
        ("PopCreate", "name"),
        ("PopCreate", "endpoint_host"),
    } <= names
    assert {
        ("DeviceCreate", "name"),
        ("SiteCreate", "name"),
        ("LinkCreate", "circuit_ref"),
    } <= names
    assert names >= MULTI_LINE
    assert {("TenantFilters", "q"), ("AuditFilters", "actor")} <= names
    assert len(TEXT_FIELDS) > 80


@pytest.mark.parametrize(
    ("model", "name", "shape"),
    TEXT_FIELDS,
    ids=[f"{m.__name__}.{n}" for m, n, _s in TEXT_FIELDS],
)
def test_every_text_field_of_a_request_refuses_what_it_must(
    model: type[BaseModel], name: str, shape: str
) -> None:
    # No text field takes NUL or ESC (PostgreSQL refuses NUL in text: it was a 500).
    for ch in ("\x00", "\x1b"):
        assert _refused(model, name, shape, f"ok{ch}ok"), f"{ch!r} accepted"
    if (model.__name__, name) in MULTI_LINE:
        assert not _refused(model, name, shape, "Line one\nLine two")
        return
    for ch in ("\n", "\r", "\u2028", "\u202e"):
        assert _refused(model, name, shape, f"ok{ch}ok"), f"{ch!r} accepted"


def test_the_refused_ranges_are_the_unicode_categories() -> None:
    """The ranges written in validation.NOT_IN_A_LINE are Cc, Zl, Zp, Cs and the bidi
    embeddings, overrides and isolates: checked over the whole code space."""
    bidi = {*range(0x202A, 0x202F), *range(0x2066, 0x206A)}
    for code in range(0x110000):
        ch = chr(code)
        expected = unicodedata.category(ch) in {"Cc", "Zl", "Zp", "Cs"} or code in bidi
        assert validation.line_breaker(ch) is expected, f"U+{code:04X}"
