"""The audit log names actions and object kinds in words, beside their codes.

The codes are read from the source as the catalogue scan reads refusals: every
``record(session, action, object_type, ...)`` call, the ORM hook's create/update/delete and
every model's ``__audit_type__``. A new action or object kind without a label fails here.
"""

from __future__ import annotations

import ast
import html
import re
import typing
from pathlib import Path

import tongdao
from tests.support.console import as_person
from tests.support.world import PASSWORD, World
from tongdao.audit.chain import KINDS
from tongdao.audit.recorder import record
from tongdao.gateway.desired import PeerKind
from tongdao.web.i18n import Locale
from tongdao.web.pages.audit_labels import (
    ACTIONS,
    OBJECT_KINDS,
    RECORD_KINDS,
    action_label,
    kind_label,
    record_kind_label,
)

SOURCE = Path(tongdao.__file__).parent
API = "/api/v1"
# Arguments of record() that are not written out as strings, and where their values come from.
COMPUTED: dict[str, set[str]] = {
    "conn.peer_kind": set(typing.get_args(PeerKind)),
}
HOOK = "_audit_before_flush"


def _imports_record(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ImportFrom)
        and node.module == "tongdao.audit.recorder"
        and any(alias.name == "record" for alias in node.names)
        for node in ast.walk(tree)
    )


def _argument(call: ast.Call, position: int, name: str) -> ast.expr | None:
    if len(call.args) > position:
        return call.args[position]
    return next((k.value for k in call.keywords if k.arg == name), None)


def _hook_actions(tree: ast.Module) -> set[str]:
    """The actions the ORM hook appends: ``events.append(("create", obj, ...))``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == HOOK:
            for inner in ast.walk(node):
                if (
                    isinstance(inner, ast.Tuple)
                    and inner.elts
                    and isinstance(inner.elts[0], ast.Constant)
                    and isinstance(inner.elts[0].value, str)
                ):
                    found.add(inner.elts[0].value)
    return found


def _audit_types(tree: ast.Module) -> set[str]:
    """Every model's ``__audit_type__ = "..."``."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for item in node.body:
            target = item.targets[0] if isinstance(item, ast.Assign) else None
            if isinstance(item, ast.AnnAssign):
                target = item.target
            value = getattr(item, "value", None)
            if (
                isinstance(target, ast.Name)
                and target.id == "__audit_type__"
                and isinstance(value, ast.Constant)
                and isinstance(value.value, str)
            ):
                found.add(value.value)
    return found


def recorded_codes() -> tuple[set[str], set[str]]:
    """The actions and object kinds the code can record, read from the source."""
    actions: set[str] = set()
    kinds: set[str] = set()
    unknown: list[str] = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        kinds |= _audit_types(tree)
        if path.name == "recorder.py" and path.parent.name == "audit":
            actions |= _hook_actions(tree)
            continue  # the hook's own record() call takes the values gathered above
        if not _imports_record(tree):
            continue
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "record"
            ):
                continue
            for position, name, into in ((1, "action", actions), (2, "object_type", kinds)):
                arg = _argument(node, position, name)
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    into.add(arg.value)
                elif arg is not None and ast.unparse(arg) in COMPUTED:
                    into |= COMPUTED[ast.unparse(arg)]
                else:
                    where = f"{path.relative_to(SOURCE)}:{node.lineno}"
                    unknown.append(f"{where}: {name}={ast.unparse(arg) if arg else None}")
    assert not unknown, f"record() calls whose codes this test cannot read: {unknown}"
    return actions, kinds


def test_the_scan_finds_what_the_code_records() -> None:
    actions, kinds = recorded_codes()
    # From the ORM hook, explicit calls, models and the gateway's peer kinds.
    assert {"create", "update", "delete", "login", "invitation_sent", "connection"} <= actions
    assert {"api_token", "prefix_declaration", "user", "audit_log", "data_key"} <= kinds
    assert set(typing.get_args(PeerKind)) <= kinds


def test_every_recorded_action_and_object_kind_has_a_label() -> None:
    actions, kinds = recorded_codes()
    assert sorted(actions - set(ACTIONS)) == [], "give these actions a label in audit_labels"
    assert sorted(kinds - set(OBJECT_KINDS)) == [], "give these kinds a label in audit_labels"


def test_every_label_is_in_words_in_both_languages() -> None:
    english, chinese = Locale("en"), Locale("zh_CN")
    for code in ACTIONS:
        assert action_label(english, code) == ACTIONS[code]
        assert action_label(chinese, code) not in ("", ACTIONS[code]), code
    for code in OBJECT_KINDS:
        assert kind_label(chinese, code) not in ("", OBJECT_KINDS[code]), code
    assert action_label(chinese, "no_such_action") == ""
    assert kind_label(chinese, "no_such_kind") == ""


def _event(page: str, action: str) -> str:
    """The first record on the page with this action code."""
    at = page.index(f'<span class="event-action">{action}</span>')
    start = page.rindex('<li class="event"', 0, at)
    return page[start : page.index("</li>", at)]


def test_the_chinese_log_shows_a_login_in_words_beside_its_code(world: World) -> None:
    email = "operator_admin@operator.example"
    resp = world.client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    auditor = as_person(world, world.operators["auditor"])
    auditor.http.cookies.set("tongdao_lang", "zh_CN")
    page = auditor.get("/console/audit", params={"action": "login"})
    assert page.status_code == 200, page.text
    assert '<html lang="zh-CN">' in page.text
    login = _event(page.text, "login")
    assert '<span class="event-label">登录成功</span>' in login
    assert '<span class="event-action">login</span>' in login  # the code stays, to search by
    assert '用户 <span class="event-code">user</span>' in login
    # The object-kind filter names each kind in Chinese beside its code.
    assert '<option value="prefix_declaration">地址前缀申报 (prefix_declaration)</option>' in (
        page.text
    )
    english = as_person(world, world.operators["auditor"]).get(
        "/console/audit", params={"action": "login"}
    )
    assert '<span class="event-label">Sign-in succeeded</span>' in _event(english.text, "login")


def test_an_unknown_code_shows_as_it_is(world: World) -> None:
    with world.runtime.db.session() as session:
        record(session, "brand_new_action", "brand_new_kind", "x1")
        session.commit()
    auditor = as_person(world, world.operators["auditor"])
    auditor.http.cookies.set("tongdao_lang", "zh_CN")
    page = auditor.get("/console/audit", params={"action": "brand_new_action"})
    assert page.status_code == 200, page.text
    shown = _event(page.text, "brand_new_action")
    assert "event-label" not in shown and "event-code" not in shown
    assert re.search(r"<span>brand_new_kind <span class=\"mono\">x1</span>", shown), html.escape(
        shown
    )


def test_every_record_kind_has_a_label_in_both_languages() -> None:
    assert sorted(RECORD_KINDS) == sorted(KINDS)
    chinese = Locale("zh_CN")
    for code in KINDS:
        assert record_kind_label(chinese, code) not in ("", RECORD_KINDS[code]), code
    assert record_kind_label(chinese, "no_such_kind") == "no_such_kind"
