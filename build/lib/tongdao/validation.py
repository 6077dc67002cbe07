"""Pure validators shared by the schemas and the services.

Each raises ``ValueError`` with a message meant for a person; pydantic turns it into a
field-keyed 422 and services wrap it in :class:`tongdao.errors.ValidationError`.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from confusable_homoglyphs import categories

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# ISO 3166-1 alpha-2, officially assigned codes.
COUNTRIES = frozenset(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO
    DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU
    GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW
    KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU
    MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW
    PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF
    TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA
    ZM ZW""".split()
)

_REGION = re.compile(r"[A-Z]{2}-[A-Z0-9]{1,8}")
_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MOBILE = re.compile(r"\+?[0-9]{6,15}")

# What no single line of text may hold: the Unicode categories Cc (controls: NUL, TAB, LF, CR,
# NEL, ...), Zl and Zp (U+2028, U+2029, which some parsers split lines on) and Cs (lone
# surrogates: not encodable, PostgreSQL refuses them), written out as ranges (these categories
# are fixed; a unit test checks the ranges against unicodedata over the whole code space), and
# the bidirectional embeddings, overrides and isolates (LRE RLE PDF LRO RLO, LRI RLI FSI PDI),
# which reorder how the rest of a line is shown, so a name could display as something it is
# not. The plain direction marks (LRM, RLM, ALM) reorder nothing and stay allowed.
NOT_IN_A_LINE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\u202a-\u202e\u2066-\u2069]"
)
# What multi-line text may not hold: the controls except TAB, LF and CR, and lone surrogates.
_NOT_IN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}".rstrip() if name else f"U+{ord(ch):04X}"


def line_breaker(ch: str) -> bool:
    """Whether ``ch`` may not appear in a single line (see :func:`single_line`)."""
    return NOT_IN_A_LINE.match(ch) is not None


def single_line(value: str) -> str:
    """One line of text (a name, host, reference, title, code): no control characters (Cc),
    no line or paragraph separators (Zl, Zp), no surrogates and no bidi overrides."""
    found = NOT_IN_A_LINE.search(value)
    if found is not None:
        raise ValueError(
            f"must be a single line of text: {_describe(found.group())} is not allowed "
            "(no control characters, line breaks or bidi overrides)"
        )
    return value


def multi_line(value: str) -> str:
    """Text that may span lines (a notice, a reason): line breaks and tabs are kept, other
    control characters (NUL, ESC, ...) and surrogates are refused."""
    found = _NOT_IN_TEXT.search(value)
    if found is not None:
        raise ValueError(
            f"{_describe(found.group())} is not allowed in text (control characters other than "
            "line breaks and tabs)"
        )
    return value


def text_without_controls(value: str) -> str:
    """``value`` with what :func:`multi_line` refuses removed (for text a program produced,
    such as an agent's error message)."""
    return _NOT_IN_TEXT.sub("", value)


def one_line_text(value: object) -> str:
    """``value`` as text safe to place in one line of a file (a comment in a wg-quick file):
    every character :func:`single_line` refuses is removed. For data stored before the
    schemas refused them."""
    return NOT_IN_A_LINE.sub("", str(value))


def wireguard_key(value: str) -> str:
    """A WireGuard public key: standard base64 of exactly 32 bytes, not all zero."""
    text = value.strip()
    if len(text) != 44 or not text.endswith("="):
        raise ValueError("must be a WireGuard key: 44 characters of base64 ending in '='")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("must be a WireGuard key: not valid base64") from exc
    if len(raw) != 32:
        raise ValueError("must be a WireGuard key: base64 of 32 bytes")
    if raw == bytes(32):
        raise ValueError("must be a WireGuard key: the all-zero key is not a public key")
    return text


def network(value: str, *, family: int | None = None) -> IPNetwork:
    """A CIDR prefix with no host bits set, optionally of one address family (4 or 6)."""
    text = value.strip()
    if "%" in text:  # ipaddress takes an IPv6 zone of any text (fd00::%x/64); a prefix has none
        raise ValueError(f"{text!r} is not an IP prefix in CIDR notation (no %zone)")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise ValueError(f"{text!r} is not an IP prefix in CIDR notation") from exc
    if "/" not in text:
        raise ValueError(f"{text!r} has no prefix length; write it as {net}")
    if net.network_address != ipaddress.ip_interface(text).ip:
        raise ValueError(f"{text!r} has host bits set; the prefix is {net}")
    if family is not None and net.version != family:
        raise ValueError(f"{text!r} is IPv{net.version}; an IPv{family} prefix is required")
    return net


def non_overlapping(nets: Sequence[IPNetwork]) -> dict[int, str]:
    """Index → message for every prefix that overlaps an earlier one in the list."""
    problems: dict[int, str] = {}
    for i, net in enumerate(nets):
        for j in range(i):
            other = nets[j]
            if net.version == other.version and net.overlaps(other):
                problems[i] = f"{net} overlaps {other}"
                break
    return problems


def overlaps_any(net: IPNetwork, others: Iterable[IPNetwork]) -> IPNetwork | None:
    for other in others:
        if net.version == other.version and net.overlaps(other):
            return other
    return None


def region(value: str) -> str:
    text = value.strip().upper()
    if not _REGION.fullmatch(text) or text[:2] not in COUNTRIES:
        raise ValueError("must be a region like CN-BJ: ISO country code, '-', 1-8 letters/digits")
    return text


def country(value: str) -> str:
    text = value.strip().upper()
    if text not in COUNTRIES:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code")
    return text


def hostname_or_ip(value: str) -> str:
    text = value.strip().rstrip(".").lower()
    if "%" in text:  # an IPv6 zone (fe80::1%eth0) names a local link, and takes any text
        raise ValueError(f"{value!r} is not a DNS name or IP address (no %zone)")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    labels = text.split(".")
    if len(text) > 253 or len(labels) < 2 or not all(_HOST_LABEL.fullmatch(lb) for lb in labels):
        raise ValueError(f"{value!r} is not a DNS name or IP address")
    if labels[-1].isdigit():
        raise ValueError(f"{value!r} is not a DNS name or IP address")
    return text


def mobile(value: str) -> str:
    text = value.strip().replace(" ", "").replace("-", "")
    if not _MOBILE.fullmatch(text):
        raise ValueError("must be a phone number: 6 to 15 digits, optionally starting with +")
    return text


# Instants taken from requests (query filters, windows): UTC, and far enough from the ends of
# Python's calendar (years 1 and 9999) that converting a time zone or adding a window of a year
# never overflows into a 500.
EARLIEST_INSTANT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(9998, 12, 31, 23, 59, 59, tzinfo=UTC)


def utc_instant(value: datetime) -> datetime:
    """An aware UTC datetime (naive is taken as UTC) between 1970-01-01 and 9998-12-31."""
    problem = f"must lie between {EARLIEST_INSTANT:%Y-%m-%d} and {LATEST_INSTANT:%Y-%m-%d} (UTC)"
    try:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(problem) from exc
    if not EARLIEST_INSTANT <= value <= LATEST_INSTANT:
        raise ValueError(problem)
    return value


# E-mail addresses: one person, one spelling. NFKC folds full-width and compatibility forms
# (ｌｉ@ａｃｍｅ.example is li@acme.example); a part that mixes scripts beyond what UTS #39 calls
# "highly restrictive" (Latin alone or with Han and Japanese kana, Bopomofo or Hangul) is
# refused, which stops Latin look-alikes with Cyrillic or Greek letters (lі@acme.example with a
# Cyrillic і). Scripts come from confusable_homoglyphs' table of Unicode's Scripts.txt.
_HIGHLY_RESTRICTIVE = (
    frozenset({"LATIN", "HAN", "HIRAGANA", "KATAKANA"}),
    frozenset({"LATIN", "HAN", "BOPOMOFO"}),
    frozenset({"LATIN", "HAN", "HANGUL"}),
)
_SCRIPTLESS = frozenset({"COMMON", "INHERITED"})


def nfkc(value: object) -> object:
    """NFKC of a string (anything else is left for the type's own check)."""
    return unicodedata.normalize("NFKC", value) if isinstance(value, str) else value


def scripts(text: str) -> set[str]:
    """The Unicode scripts of the letters in ``text`` (punctuation and digits have none)."""
    return {categories.alias(ch) for ch in text} - _SCRIPTLESS


def mixed_scripts(text: str) -> set[str] | None:
    """The scripts ``text`` mixes when no single script or highly restrictive set covers it."""
    found = scripts(text)
    if len(found) <= 1 and "Unknown" not in found:
        return None
    if "Unknown" not in found and any(found <= allowed for allowed in _HIGHLY_RESTRICTIVE):
        return None
    return found


def normalise_email(text: str) -> str:
    """The form an address is stored and looked up in: NFKC, then lower case."""
    return unicodedata.normalize("NFKC", text.strip()).lower()


def email_address(value: str) -> str:
    """An address already checked for form (``EmailStr``): NFKC, lower case, and no part
    (local part, domain label; an ``xn--`` label decoded first) that mixes scripts."""
    text = normalise_email(value)
    local, _, domain = text.rpartition("@")
    parts = {"the local part": local}
    for label in domain.split("."):
        try:
            decoded = label.encode("ascii").decode("idna") if label.startswith("xn--") else label
        except UnicodeError as exc:
            raise ValueError(f"the domain label {label!r} is not valid punycode") from exc
        parts[f"the domain label {decoded!r}"] = decoded
    for where, part in parts.items():
        mixed = mixed_scripts(part)
        if mixed:
            names = ", ".join(sorted(s.title() for s in mixed))
            raise ValueError(
                f"{where} mixes letters of different scripts ({names}), as look-alike "
                "addresses do; write it in one script"
            )
    return text
