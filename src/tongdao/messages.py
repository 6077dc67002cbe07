"""Refusals in the reader's language: API errors, form errors and rule texts.

Services raise their refusals in English (the API's stable wording, which tests and scripts
read). The reader's language is applied at the edge: the API translates an error's message and
field messages when the request's ``Accept-Language`` asks for 简体中文, and the console does
the same for the person's language.

A message is looked up exactly first. Messages made with values (``f"the site is {state}"``)
are in the catalogue as templates (``"the site is %(state)s"``): each template is turned into a
pattern, the first that matches the whole message gives the translation, and the values it
captured are translated in turn (a rule's text inside a refusal, a state inside a sentence).
A value may also be one of :mod:`tongdao.words`: a province (``Guangdong (44)`` → ``广东省（44）``),
a field as a sentence names it (``ID number`` → ``证件号码``), or a list of those
(``legal name, ID number`` → ``法定姓名、证件号码``).
The catalogues are the console's (:mod:`tongdao.web.i18n`); refusals live in ``errors.po``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache

from tongdao import words
from tongdao.errors import DomainError
from tongdao.web import i18n

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
MAX_TEMPLATE_MATCH = 4000  # longer than any refusal the services write


@dataclass(frozen=True)
class Template:
    """A catalogue message with values: its fixed texts around named places.

    ``"the site is %(state)s; it has no tunnel"`` → texts ``("the site is ", "; it has no
    tunnel")`` and names ``("state",)``. Matching is one left-to-right scan (each value ends at
    the next occurrence of the text after it), never backtracking, so its cost is linear in the
    message's length whatever the values hold; a message whose values contain the text that
    follows them may not match, and then it stays in English.
    """

    texts: tuple[str, ...]
    names: tuple[str, ...]
    translation: str

    @classmethod
    def parse(cls, msgid: str, translation: str) -> Template | None:
        pieces = _PLACEHOLDER.split(msgid)
        texts = tuple(piece.replace("%%", "%") for piece in pieces[0::2])
        names = tuple(pieces[1::2])
        if any(not text for text in texts[1:-1]):
            return None  # two places side by side: no text tells where one ends
        return cls(texts, names, translation)

    @property
    def fixed(self) -> int:
        return sum(len(text) for text in self.texts)

    def match(self, message: str) -> dict[str, str] | None:
        first, last = self.texts[0], self.texts[-1]
        if not message.startswith(first) or not message.endswith(last):
            return None
        end = len(message) - len(last)
        position = len(first)
        values: dict[str, str] = {}
        for index, name in enumerate(self.names):
            if index + 1 < len(self.names):
                after = self.texts[index + 1]
                stop = message.find(after, position + 1, end)
                if stop < 0:
                    return None
            else:
                stop = end
            if stop <= position:
                return None
            value = message[position:stop]
            if values.setdefault(name, value) != value:
                return None
            position = stop + (len(self.texts[index + 1]) if index + 1 < len(self.names) else 0)
        return values if self.names else ({} if message == first else None)


@cache
def _templates(language: str) -> list[Template]:
    catalog = i18n.read_catalogue(language)
    found: list[Template] = []
    for message in catalog:
        msgid = message.id
        if not isinstance(msgid, str) or not message.string:
            continue
        if "%(" not in msgid and "%%" not in msgid:  # looked up exactly
            continue
        if message.fuzzy or not isinstance(message.string, str):
            continue
        template = Template.parse(msgid, message.string)
        if template is not None:
            found.append(template)
    # The most specific template (most fixed text) first.
    found.sort(key=lambda template: -template.fixed)
    return found


def translate(text: str, language: str, *, _depth: int = 0) -> str:
    """``text`` in ``language`` when the catalogue has it (exactly or as a template)."""
    if language == i18n.DEFAULT or language not in i18n.LANGUAGES or not text:
        return text
    gettext = i18n.translations(language).gettext
    exact = gettext(text)
    if exact != text or _depth > 3 or len(text) > MAX_TEMPLATE_MATCH:
        return exact
    known = _word(text, language, gettext) or _labelled(text, language, _depth)
    if known is not None:
        return known
    # Of the templates that match the whole message, the one that leaves the least text to
    # its values fits best (a refusal wrapping another refusal matches both).
    best: tuple[int, dict[str, str], str] | None = None
    for template in _templates(language):
        values = template.match(text)
        if values is None:
            continue
        captured = sum(len(value) for value in values.values())
        if best is None or captured < best[0]:
            best = (captured, values, template.translation)
    if best is None:
        return text
    _, values, translation = best
    translated = {
        name: translate(value, language, _depth=_depth + 1) for name, value in values.items()
    }
    try:
        return translation % translated
    except (KeyError, ValueError, TypeError):  # a broken catalogue entry: keep English
        return text


def _word(text: str, language: str, gettext: Callable[[str], str]) -> str | None:
    """A province, a field's name, or a list of them (``A, B``) in ``language``; None when
    ``text`` is not one (or a list holds anything else)."""
    single = words.term(text, language, gettext)
    if single is not None:
        return single
    parts = text.split(words.LIST_SEPARATOR["en"])
    if len(parts) < 2:
        return None
    translated = [words.term(part, language, gettext) for part in parts]
    if any(part is None for part in translated):
        return None
    return words.LIST_SEPARATOR.get(language, ", ").join(p for p in translated if p)


def _labelled(text: str, language: str, depth: int) -> str | None:
    """``provinces: <message>; issuing authority: <message>`` (messages named by their
    fields' names, as :func:`tongdao.words.field_name` writes them) in ``language``."""
    parts = []
    for part in text.split("; "):
        name, colon, message = part.partition(": ")
        label = words.term(name, language, i18n.translations(language).gettext) if colon else None
        if label is None or not message:
            return None
        parts.append((label, translate(message, language, _depth=depth + 1)))
    if language == "zh_CN":
        return "；".join(f"{label}：{message}" for label, message in parts)
    return "; ".join(f"{label}: {message}" for label, message in parts)


def translate_fields(fields: Mapping[str, str], language: str) -> dict[str, str]:
    return {key: translate(value, language) for key, value in fields.items()}


RULE_REFUSAL = "%(detail)s (rule %(rule)s: %(text)s; source: %(source)s)"


def translate_exception(exc: DomainError, language: str) -> tuple[str, dict[str, str]]:
    """A domain error's message and fields in ``language``.

    A rule's refusal is put together again from its translated parts (its detail, the rule's
    text), not matched as a whole: its detail may itself be a template."""
    from tongdao.compliance.licensing import LicenceProblems
    from tongdao.compliance.rules import ComplianceRefusal, rule

    if isinstance(exc, LicenceProblems) and language != i18n.DEFAULT:
        fields = translate_fields(exc.fields, language)
        gettext = i18n.translations(language).gettext
        cited = [
            gettext(words.RULE_CITED)
            % {"rule": rule_id, "source": translate(rule(rule_id).source, language)}
            for rule_id in exc.rule_ids
        ]
        if language == "zh_CN":
            return f"{fields_message(fields, language)}（{'；'.join(cited)}）", fields
        return f"{fields_message(fields, language)} ({'; '.join(cited)})", fields
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
    (``"name: is required; uscc: ..."``) is made again from the translated fields, each named
    by its label in ``language`` (the keys in ``fields`` stay as they are)."""
    translated = translate_fields(fields, language)
    joined = "; ".join(f"{key}: {text}" for key, text in fields.items())
    if fields and message == joined:
        if language == i18n.DEFAULT:
            return message, translated
        return fields_message(translated, language), translated
    return translate(message, language), translated


def field_label(key: str, language: str) -> str:
    """A field key's label in ``language`` (``id_number`` → ``证件号码``); an unknown key as
    it is."""
    found = words.label(key)
    if found is None:
        return key
    return i18n.translations(language).gettext(found)


def fields_message(fields: Mapping[str, str], language: str) -> str:
    """``证件号码：……；手机号码：……`` from messages already in ``language``, keyed by field."""
    if language == "zh_CN":
        return "；".join(f"{field_label(key, language)}：{text}" for key, text in fields.items())
    return "; ".join(f"{field_label(key, language)}: {text}" for key, text in fields.items())
