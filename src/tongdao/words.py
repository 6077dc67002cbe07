"""The words people read for the names code uses: field labels, province names, states.

A refusal keys its fields by the API's field names (``legal_name``, ``id_number``): clients
rely on those keys, and they never change. The sentence a person reads names the field by its
label instead (``the real identity is incomplete (legal name, ID number missing)``), and the
console shows the same label beside the form field. One table, :data:`FIELD_LABELS`, serves
both; its labels are catalogue messages (``words.po``), so :mod:`tongdao.messages` finds a
label (or a list of them, or a province's name) inside a refusal and puts it in the reader's
language.

Province names come from :mod:`tongdao.compliance.provinces` (the official Chinese name beside
the English one), not from a catalogue: they are reference data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache

from tongdao.compliance import provinces as pv
from tongdao.web import i18n


def N_(message: str) -> str:  # noqa: N802 - the gettext convention for "mark, translate later"
    return message


# Field key (as the API and its refusals name it) → the label people read, as a form shows it.
FIELD_LABELS: dict[str, str] = {
    "legal_name": N_("Legal name"),
    "id_type": N_("ID type"),
    "id_number": N_("ID number"),
    "mobile": N_("Mobile"),
    "email": N_("E-mail"),
    "display_name": N_("Full name"),
    "roles": N_("Roles"),
    "group_ids": N_("Groups"),
    "name": N_("Name"),
    "name_en": N_("Name in English"),
    "name_zh": N_("Name in Chinese"),
    "uscc": N_("USCC"),
    "password": N_("Password"),
    "new_password": N_("New password"),
    "current_password": N_("Current password"),
    "totp_code": N_("Authentication code"),
    "state": N_("State"),
    "region": N_("Region"),
    "country": N_("Country"),
    "provinces": N_("Provinces"),
    "service_codes": N_("Service codes"),
    "issuing_authority": N_("Issuing authority"),
    "valid_from": N_("Valid from"),
    "valid_to": N_("Valid to"),
    "number": N_("Licence number"),
}
# A rule cited after a refusal's fields (licence records).
RULE_CITED = N_("rule %(rule)s: %(source)s")
LIST_SEPARATOR = {"en": ", ", "zh_CN": "、"}


def _in_sentence(label: str) -> str:
    """``Legal name`` → ``legal name`` inside a sentence; ``ID number``, ``USCC`` stay."""
    if len(label) > 1 and label[1].islower():
        return label[0].lower() + label[1:]
    return label


def label(key: str) -> str | None:
    """The form label of a field key (``id_number`` or ``group_ids.2``), None if unknown."""
    return FIELD_LABELS.get(key) or FIELD_LABELS.get(key.split(".", 1)[0])


def field_name(key: str) -> str:
    """A field as an English sentence names it: ``id_number`` → ``ID number``; unknown keys
    stay as they are."""
    found = label(key)
    return _in_sentence(found) if found else key


def field_list(keys: Iterable[str]) -> str:
    """``legal name, ID number``: fields named in an English sentence."""
    return LIST_SEPARATOR["en"].join(field_name(key) for key in keys)


@cache
def _sentence_labels() -> dict[str, str]:
    return {_in_sentence(text): text for text in FIELD_LABELS.values()}


@cache
def _province_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for province in pv.PROVINCES.values():
        names[province.name] = province.name_zh
        names[province.label] = province.label_zh
    return names


def term(text: str, language: str, gettext: Callable[[str], str] | None = None) -> str | None:
    """A word of this module in ``language``: a province (``Guangdong (44)`` → ``广东省（44）``),
    a field's label as a sentence names it (``legal name`` → the label's msgid, which the
    caller's catalogue translates) or a state as the API writes it (``under_review``). None
    when ``text`` is none of these."""
    if language == "zh_CN":
        province = _province_names().get(text)
        if province is not None:
            return province
    msgid = _sentence_labels().get(text) or i18n.STATES.get(text)
    if msgid is not None and gettext is not None:
        translated = gettext(msgid)
        return translated if translated != msgid else None
    return None
