"""Field names and provinces inside refusals, as people read them in the API and the console.

Found trying the console as a new user: a verification refusal said ``缺少 legal_name,
id_number`` and a licence refusal ``位于 Guangdong`` in 简体中文. The field keys stay in the
API's ``fields`` (clients rely on them); the sentences name fields by their labels and
provinces by their names, in the reader's language.
"""

from __future__ import annotations

import html
import re
import uuid

from tests.support.console import as_person
from tests.support.world import World
from tongdao.tenancy.models import User

API = "/api/v1"
IDENTITY_KEYS = ("legal_name", "id_type", "id_number", "mobile")


def visible(page: str) -> str:
    """The text a person sees: tags (and their attributes) left out."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def new_employee(world: World, email: str) -> uuid.UUID:
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/users",
        json={"email": email, "display_name": "Chen Jie"},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    return uuid.UUID(resp.json()["id"])


def test_the_api_keeps_field_keys_and_names_fields_by_label(world: World) -> None:
    user_id = new_employee(world, "chen.jie@a.example")
    path = f"{API}/tenants/{world.a.id}/users/{user_id}/identity-verification"
    english = world.client.post(path, headers=world.a.admin.headers)
    chinese = world.client.post(path, headers={**world.a.admin.headers, "Accept-Language": "zh-CN"})
    assert english.status_code == chinese.status_code == 409
    en, zh = english.json()["error"], chinese.json()["error"]
    assert en["code"] == zh["code"] == "compliance_refused"
    # The keys clients read are the API's field names, in both languages.
    assert tuple(en["fields"]) == tuple(zh["fields"]) == IDENTITY_KEYS
    assert en["message"].startswith(
        "the real identity is incomplete (legal name, ID type, ID number, mobile missing)"
    )
    assert zh["message"].startswith("实名信息不完整（缺少法定姓名、证件类型、证件号码、手机号码）")
    for key in ("legal_name", "id_type", "id_number"):
        assert key not in en["message"] and key not in zh["message"]
    assert "mobile" not in zh["message"]


def test_the_console_names_missing_fields_by_label_in_the_readers_language(
    world: World,
) -> None:
    user_id = new_employee(world, "zhou.min@a.example")
    console = as_person(world, world.a.admin)
    refused = console.post(f"/console/users/{user_id}/verification", {"action": "verify"})
    assert refused.status_code == 409
    shown = visible(refused.text)
    assert "(legal name, ID type, ID number, mobile missing)" in shown
    console.http.cookies.set("tongdao_lang", "zh_CN")
    refused = console.post(f"/console/users/{user_id}/verification", {"action": "verify"})
    assert refused.status_code == 409
    shown = visible(refused.text)
    assert "实名信息不完整（缺少法定姓名、证件类型、证件号码、手机号码）" in shown
    for key in IDENTITY_KEYS:
        assert key not in shown, key
    with world.runtime.db.session(write=False) as session:
        user = session.get(User, user_id)
        assert user is not None and user.identity_verified_at is None


def test_a_licence_refusal_names_provinces_in_chinese_on_the_page(world: World) -> None:
    officer = as_person(world, world.operators["compliance_officer"])
    officer.http.cookies.set("tongdao_lang", "zh_CN")
    form = {
        "number": "沪B1-20260043",
        "service_codes": "B13",
        "issuing_authority": "上海市通信管理局",
        "provinces": "44",
        "valid_from": "2026-01-01",
        "valid_to": "2030-12-31",
    }
    refused = officer.post("/console/compliance/licences", form)
    assert refused.status_code == 422
    error = re.search(r'id="f-provinces-error">([^<]*)<', refused.text)
    assert error, refused.text
    assert html.unescape(error.group(1)) == (
        "编号以“沪”开头的许可证在上海市颁发，仅覆盖上海市（31）"
    )
    assert "Shanghai" not in visible(refused.text)
    # The province picker reads the same table.
    assert "广东省（44）" in visible(refused.text)
    assert "广西壮族自治区（45）" in visible(refused.text)
    # The API says the same to a caller who asks for 简体中文, and keeps its field keys.
    body = {**form, "service_codes": ["B13"], "provinces": ["44"]}
    resp = world.client.post(
        f"{API}/operator/licences",
        json=body,
        headers={**world.operators["compliance_officer"].headers, "Accept-Language": "zh-CN"},
    )
    assert resp.status_code == 422
    error_body = resp.json()["error"]
    assert set(error_body["fields"]) == {"provinces"}
    assert error_body["message"].startswith("省份：编号以“沪”开头的许可证在上海市颁发")
