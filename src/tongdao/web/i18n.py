"""The console's languages: gettext catalogues (Babel), the caller's choice, and local formats.

English is the source language; 简体中文 comes from the ``.po`` files under
``tongdao/web/locale/zh_CN/LC_MESSAGES/``. Every area of the console keeps its own file (its
gettext *domain*: ``console.po``, ``operator.po``, ...) so that pages are added without
touching one shared catalogue; at start the files of a language are merged into one
translation table. The ``.po`` files are the source of truth and are read directly: there is
no compiled ``.mo`` to get out of step and no build step on the server.

Times are shown in Asia/Shanghai with the zone named; money as ``¥1,234.56``.
"""

from __future__ import annotations

import gettext as gettext_module
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from zoneinfo import ZoneInfo

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal

DEFAULT = "en"
LANGUAGES: dict[str, str] = {"en": "English", "zh_CN": "简体中文"}
HTML_LANG = {"en": "en", "zh_CN": "zh-CN"}
SHANGHAI = ZoneInfo("Asia/Shanghai")
LOCALE_DIR: Traversable = resources.files("tongdao.web") / "locale"


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "mark, translate later"
    """Mark a string for extraction without translating it here."""
    return message


def catalogue_files(language: str) -> list[Traversable]:
    folder = LOCALE_DIR / language / "LC_MESSAGES"
    if not folder.is_dir():
        return []
    return sorted(
        (entry for entry in folder.iterdir() if entry.name.endswith(".po")),
        key=lambda entry: entry.name,
    )


def read_catalogue(language: str) -> Catalog:
    """Every domain of one language merged. A msgid translated in two files keeps the first
    file's translation (files in name order); :func:`disagreements` lists such msgids, and a
    test fails on any."""
    merged = Catalog(locale=language, domain="tongdao")
    for entry in catalogue_files(language):
        with entry.open("rb") as handle:
            catalog = read_po(handle, locale=language, domain=entry.name[:-3])
        for message in catalog:
            if not message.id:
                continue
            known = merged.get(message.id, message.context)
            if known is not None and known.string:
                continue
            merged[message.id] = message
    return merged


def disagreements(language: str) -> list[str]:
    """Msgids that two catalogue files of ``language`` translate differently."""
    seen: dict[object, tuple[str, object]] = {}
    problems: list[str] = []
    for entry in catalogue_files(language):
        with entry.open("rb") as handle:
            catalog = read_po(handle, locale=language, domain=entry.name[:-3])
        for message in catalog:
            if not message.id or not message.string:
                continue
            first = seen.setdefault(message.id, (entry.name, message.string))
            if first[1] != message.string:
                problems.append(
                    f"{message.id!r}: {first[0]} says {first[1]!r}, {entry.name} says "
                    f"{message.string!r}"
                )
    return problems


@cache
def translations(language: str) -> gettext_module.NullTranslations:
    if language == DEFAULT or language not in LANGUAGES:
        return gettext_module.NullTranslations()
    catalog = read_catalogue(language)
    buffer = io.BytesIO()
    # Fuzzy entries are not translations yet: leave them out, the English shows instead.
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return gettext_module.GNUTranslations(buffer)


def negotiate(*candidates: str | None, accept_language: str = "") -> str:
    """The first supported language among explicit choices, then the Accept-Language header."""
    for candidate in candidates:
        found = _supported(candidate)
        if found:
            return found
    for tag in _accepted(accept_language):
        found = _supported(tag)
        if found:
            return found
    return DEFAULT


def _supported(tag: str | None) -> str | None:
    if not tag:
        return None
    tag = tag.strip().replace("-", "_")
    if tag in LANGUAGES:
        return tag
    lowered = tag.lower()
    if lowered in {"zh", "zh_cn", "zh_hans", "zh_hans_cn", "zh_sg"}:
        return "zh_CN"
    if lowered.split("_", 1)[0] == "en":
        return "en"
    return None


def _accepted(header: str) -> Iterable[str]:
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                weight = 0.0
        if tag and weight > 0:
            ranked.append((-weight, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


# The states objects go through, as people read them (tenants, users, devices, sites, PoPs,
# approvals, licences, verifications).
STATES: dict[str, str] = {
    "active": N_("active"),
    "applied": N_("applied"),
    "approved": N_("approved"),
    "disabled": N_("disabled"),
    "draft": N_("draft"),
    "expired": N_("expired"),
    "not_yet_valid": N_("not yet valid"),
    "online": N_("online"),
    "offline": N_("offline"),
    "pending": N_("pending"),
    "rejected": N_("rejected"),
    "revoked": N_("revoked"),
    "suspended": N_("suspended"),
    "terminated": N_("terminated"),
    "under_review": N_("under review"),
    "valid": N_("valid"),
    "verified": N_("verified"),
    "unverified": N_("unverified"),
}


@dataclass(frozen=True)
class Locale:
    """One request's language and the formatting that goes with it."""

    language: str

    @property
    def html_lang(self) -> str:
        return HTML_LANG[self.language]

    @property
    def gettext(self) -> Callable[[str], str]:
        return translations(self.language).gettext

    @property
    def ngettext(self) -> Callable[[str, str, int], str]:
        return translations(self.language).ngettext

    def _(self, message: str, **values: object) -> str:
        text = self.gettext(message)
        return text % values if values else text

    def pick(self, english: str | None, chinese: str | None) -> str:
        """The name in this language when there is one (tenants carry both)."""
        if self.language == "zh_CN" and chinese:
            return chinese
        return english or chinese or ""

    def state(self, value: str) -> str:
        label = STATES.get(value)
        return self.gettext(label) if label else value.replace("_", " ")

    def when(self, value: datetime | None, *, seconds: bool = False) -> str:
        """``2026-12-06 18:10 (Asia/Shanghai)``; naive values are taken as UTC."""
        if value is None:
            return "—"
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo("UTC"))
        local = value.astimezone(SHANGHAI)
        stamp = local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
        return self.gettext("%(time)s (Asia/Shanghai)") % {"time": stamp}

    def day(self, value: datetime | None) -> str:
        if value is None:
            return "—"
        if value.tzinfo is None:
            value = value.replace(tzinfo=ZoneInfo("UTC"))
        return value.astimezone(SHANGHAI).strftime("%Y-%m-%d")

    def number(self, value: int | float | Decimal) -> str:
        return format_decimal(value, locale=self.language)

    def rmb(self, value: int | float | Decimal | str) -> str:
        """``¥1,234.56`` (negative: ``-¥1,234.56``)."""
        amount = Decimal(str(value))
        text = format_decimal(abs(amount), format="#,##0.00", locale=self.language)
        return f"-¥{text}" if amount < 0 else f"¥{text}"

    def bytes(self, value: int | None) -> str:
        if value is None:
            return "—"
        size = float(value)
        for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
            if size < 1024 or unit == "TiB":
                if unit == "B":
                    return f"{int(size)} B"
                return f"{format_decimal(round(size, 1), locale=self.language)} {unit}"
            size /= 1024
        raise AssertionError("unreachable")  # pragma: no cover
