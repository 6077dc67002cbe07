"""Refusals in the reader's language: API errors, form errors and rule texts.

Services raise their refusals in English (the API's stable wording, which tests and scripts
read). The reader's language is applied at the edge: the API translates an error's message and
field messages when the request's ``Accept-Language`` asks for 简体中文, and the console does
the same for the person's language.

A message is looked up exactly first. Messages made with values (``f"the site is {state}"``)
are in the catalogue as templates (``"the site is %(state)s"``): each template is turned into a
pattern, the first that matches the whole message gives the translation, and the values it
captured are translated in turn (a rule's text inside a refusal, a state inside a sentence).
The catalogues are the console's (:mod:`tongdao.web.i18n`); refusals live in ``errors.po``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache

from tongdao.errors import DomainError
from tongdao.web import i18n

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _pattern(msgid: str) -> re.Pattern[str]:
    parts: list[str] = []
    position = 0
    seen: dict[str, int] = {}
    for match in _PLACEHOLDER.finditer(msgid):
        parts.append(re.escape(msgid[position : match.start()].replace("%%", "%")))
        name = match.group(1)
        if name in seen:
            parts.append(f"(?P={name})")
        else:
            seen[name] = 1
            parts.append(f"(?P<{name}>.+?)")
        position = match.end()
    parts.append(re.escape(msgid[position:].replace("%%", "%")))
    return re.compile("".join(parts), re.DOTALL)


@cache
def _templates(language: str) -> list[tuple[re.Pattern[str], str]]:
    catalog = i18n.read_catalogue(language)
    found: list[tuple[int, re.Pattern[str], str]] = []
    for message in catalog:
        msgid = message.id
        if not isinstance(msgid, str) or not message.string:
            continue
        if "%(" not in msgid and "%%" not in msgid:  # looked up exactly
            continue
        if message.fuzzy or not isinstance(message.string, str):
            continue
        literal = len(_PLACEHOLDER.sub("", msgid))
        found.append((literal, _pattern(msgid), message.string))
    # The most specific template (most fixed text) first.
    found.sort(key=lambda item: -item[0])
    return [(pattern, text) for _, pattern, text in found]


def translate(text: str, language: str, *, _depth: int = 0) -> str:
    """``text`` in ``language`` when the catalogue has it (exactly or as a template)."""
    if language == i18n.DEFAULT or language not in i18n.LANGUAGES or not text:
        return text
    exact = i18n.translations(language).gettext(text)
    if exact != text or _depth > 3:
        return exact
    # Of the templates that match the whole message, the one that leaves the least text to
    # its values fits best (a refusal wrapping another refusal matches both).
    best: tuple[int, re.Match[str], str] | None = None
    for pattern, translation in _templates(language):
        match = pattern.fullmatch(text)
        if match is None:
            continue
        captured = sum(len(value) for value in match.groupdict().values())
        if best is None or captured < best[0]:
            best = (captured, match, translation)
    if best is None:
        return text
    _, match, translation = best
    values = {
        name: translate(value, language, _depth=_depth + 1)
        for name, value in match.groupdict().items()
    }
    try:
        return translation % values
    except (KeyError, ValueError, TypeError):  # a broken catalogue entry: keep English
        return text


def translate_fields(fields: Mapping[str, str], language: str) -> dict[str, str]:
    return {key: translate(value, language) for key, value in fields.items()}


RULE_REFUSAL = "%(detail)s (rule %(rule)s: %(text)s; source: %(source)s)"


def translate_exception(exc: DomainError, language: str) -> tuple[str, dict[str, str]]:
    """A domain error's message and fields in ``language``.

    A rule's refusal is put together again from its translated parts (its detail, the rule's
    text), not matched as a whole: its detail may itself be a template."""
    from tongdao.compliance.rules import ComplianceRefusal

    if isinstance(exc, ComplianceRefusal) and language != i18n.DEFAULT:
        fields = translate_fields(exc.fields, language)
        values = {
            "detail": translate(exc.detail, language),
            "rule": exc.rule.id,
            "text": translate(exc.rule.text, language),
            "source": exc.rule.source,
        }
        return i18n.translations(language).gettext(RULE_REFUSAL) % values, fields
    return translate_error(exc.message, exc.fields, language)


def translate_error(
    message: str, fields: Mapping[str, str], language: str
) -> tuple[str, dict[str, str]]:
    """An error's message and fields in ``language``; a message made of its fields
    (``"name: is required; uscc: ..."``) is made again from the translated fields."""
    translated = translate_fields(fields, language)
    joined = "; ".join(f"{key}: {text}" for key, text in fields.items())
    if fields and message == joined:
        return "; ".join(f"{key}: {text}" for key, text in translated.items()), translated
    return translate(message, language), translated
