"""Keep the console's catalogues complete: what is marked for translation, and what lacks it.

    python -m tongdao.web.catalogue check            # exit 1 and list what lacks zh_CN
    python -m tongdao.web.catalogue missing > new.po # the missing entries, as .po stanzas

Messages are extracted with Babel from the console's templates (Jinja2's extractor, trimmed as
the templates are rendered) and from the Python of :mod:`tongdao.web` (``_``, ``N_``,
``gettext``, ``ngettext`` calls). Refusals are found in the services' code itself: every string
given to a domain error (``ValidationError``, ``NotFound``, ``Conflict``, ...), to a
``ComplianceRefusal``, a licensing ``Refusal`` or to a validator's ``ValueError``, and every
rule's text and source; an f-string
becomes a template (``f"the site is {site.state}"`` → ``"the site is %(site_state)s"``), which
:mod:`tongdao.messages` matches against the message at run time. They belong in
``errors.po``.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract as extract_file
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import write_po

from tongdao.web import i18n

WEB = Path(__file__).parent
SOURCE_ROOT = WEB.parent
# Modules outside tongdao/web whose marked messages (``N_``, ``_``) people read: the labels of
# fields and the mail sent to people.
EXTRA_SOURCES: list[str] = [
    "words.py",
    "mail/texts.py",
    "quotas/texts.py",
    "compliance/watch.py",
    "compliance/identity.py",
    "compliance/kyc.py",
]
KEYWORDS = {
    "_": None,
    "N_": None,
    "gettext": None,
    "ngettext": (1, 2),
}
METHOD_MAP = [
    ("templates/**.html", "jinja2.ext:babel_extract"),
    ("**.py", "python"),
]
OPTIONS_MAP = {
    "templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"},
}


@dataclass(frozen=True)
class Message:
    msgid: str
    plural: str | None
    where: str


ERROR_CALLS = frozenset(
    {
        "DomainError",
        "ValidationError",
        "AuthenticationError",
        "PermissionDenied",
        "NotFound",
        "Conflict",
        "PayloadTooLarge",
        "Throttled",
        "Unavailable",
        "ComplianceRefusal",
        "AwaitingGateway",  # tongdao.network.service: a Conflict that says "wait"
        "Refusal",
        "Problem",
        "ValueError",
    }
)
# Code whose messages people do not read in the console or the API's answers.
# Start-up configuration errors are for the operator's shell, not for a reader of the console.
NOT_REFUSALS = ("web", "cli", "agent", "testing", "store", "config.py", "crypto.py")


def _placeholder(expr: ast.expr) -> str:
    name = re.sub(r"\W+", "_", ast.unparse(expr)).strip("_").lower()
    return name or "value"


def _template(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.replace("%", "%%") if "%(" not in node.value else node.value
    if isinstance(node, ast.JoinedStr):
        parts: list[str] = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value.replace("%", "%%"))
            elif isinstance(value, ast.FormattedValue):
                parts.append(f"%({_placeholder(value.value)})s")
        return "".join(parts)
    return None


def refusal_messages() -> list[Message]:
    """The refusals the services can raise, as catalogue msgids."""
    from tongdao.compliance.rules import RULES

    found: dict[str, Message] = {}
    for path in sorted(SOURCE_ROOT.rglob("*.py")):
        relative = path.relative_to(SOURCE_ROOT).as_posix()
        if relative.startswith(NOT_REFUSALS):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in ERROR_CALLS:
                continue
            values: list[ast.expr] = []
            for arg in node.args:
                values.extend(arg.values if isinstance(arg, ast.Dict) else [arg])
            for value in values:
                template = _template(value)
                # A message has words; "logs.retention" (a rule id passed along) is not one.
                if template and " " in template.strip():
                    found.setdefault(template, Message(template, None, f"{relative}:{node.lineno}"))
    for rule in RULES.values():
        found.setdefault(rule.text, Message(rule.text, None, f"rule {rule.id}"))
        # The law or document a rule comes from, shown beside the rule on the dashboard.
        found.setdefault(rule.source, Message(rule.source, None, f"rule {rule.id} source"))
    return list(found.values())


def extract() -> list[Message]:
    found: dict[str, Message] = {}
    roots = [WEB, *(SOURCE_ROOT / extra for extra in EXTRA_SOURCES)]
    for root in roots:
        if root.is_file():
            with root.open("rb") as handle:
                found_in = [
                    (root.name, lineno, message, comments, context)
                    for lineno, message, comments, context in extract_file(
                        "python", handle, keywords=KEYWORDS
                    )
                ]
            root = root.parent
        else:
            method_map = METHOD_MAP if root == WEB else [("**.py", "python")]
            found_in = list(
                extract_from_dir(
                    str(root), method_map, OPTIONS_MAP, keywords=KEYWORDS, strip_comment_tags=True
                )
            )
        for filename, lineno, message, _comments, _context in found_in:
            if isinstance(message, tuple):
                msgid, plural = message[0], message[1]
            else:
                msgid, plural = message, None
            if not msgid:
                continue
            where = f"{root.relative_to(SOURCE_ROOT)}/{filename}:{lineno}"
            found.setdefault(msgid, Message(msgid, plural, where))
    for refusal in refusal_messages():
        found.setdefault(refusal.msgid, refusal)
    return sorted(found.values(), key=lambda m: m.where)


def missing(language: str = "zh_CN") -> list[Message]:
    catalog = i18n.read_catalogue(language)
    lacking = []
    for message in extract():
        entry = catalog.get(message.msgid)
        if entry is None or entry.fuzzy:
            lacking.append(message)
            continue
        strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
        if not all(strings):
            lacking.append(message)
    return lacking


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    lacking = missing()
    if command == "missing":
        catalog = Catalog(locale="zh_CN")
        for message in lacking:
            msgid = (message.msgid, message.plural) if message.plural else message.msgid
            catalog.add(msgid, "", locations=[(message.where.rsplit(":", 1)[0], 0)])
        write_po(sys.stdout.buffer, catalog, omit_header=True, no_location=False, width=100)
        return 0
    for message in lacking:
        print(f"{message.where}: no zh_CN translation for {message.msgid!r}")
    conflicts = i18n.disagreements("zh_CN")
    for conflict in conflicts:
        print(f"translated differently: {conflict}")
    print(
        f"{len(lacking)} message(s) without a zh_CN translation, "
        f"{len(conflicts)} translated differently in two files",
        file=sys.stderr,
    )
    return 1 if lacking or conflicts else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
