"""Bad input: field-keyed 4xx, never a 500, nothing half-written."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.support.world import World
from tongdao.testing.keys import public_key


def test_unknown_fields_are_refused(world: World) -> None:
    resp = world.client.post(
        "/api/v1/tenants",
        json={"name_en": "X", "uscc": "91350100M000100Y43", "colour": "red"},
        headers=world.admin.headers,
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["fields"] == {"colour": "Extra inputs are not permitted"}


@pytest.mark.parametrize(
    ("uscc", "fragment"),
    [
        ("123", "18 characters"),
        ("91I10000802100433B", "not allowed"),
        ("91990000802100433B", "division code"),
    ],
)
def test_bad_uscc(world: World, uscc: str, fragment: str) -> None:
    resp = world.client.post(
        "/api/v1/tenants", json={"name_en": "X", "uscc": uscc}, headers=world.admin.headers
    )
    assert resp.status_code == 422
    assert fragment in resp.json()["error"]["fields"]["uscc"]


def test_checksum_failure_is_accepted_and_flagged(world: World) -> None:
    resp = world.client.post(
        "/api/v1/tenants",
        json={"name_en": "Manual check", "uscc": "91350100M000100Y44"},
        headers=world.admin.headers,
    )
    assert resp.status_code == 201
    assert resp.json()["uscc_checksum_ok"] is False


def test_duplicate_uscc_is_a_conflict(world: World) -> None:
    resp = world.client.post(
        "/api/v1/tenants",
        json={"name_en": "Dup", "uscc": world.a.data["uscc"]},
        headers=world.admin.headers,
    )
    assert resp.status_code == 409
    assert resp.json()["error"]["fields"] == {"uscc": "already in use"}


def test_malformed_json_and_ids(world: World) -> None:
    h = {**world.admin.headers, "content-type": "application/json"}
    resp = world.client.post("/api/v1/tenants", content=b"{not json", headers=h)
    assert resp.status_code == 422
    resp = world.client.get("/api/v1/tenants/not-a-uuid", headers=world.admin.headers)
    assert resp.status_code == 422
    assert "object_id" in resp.json()["error"]["fields"]
    resp = world.client.get(
        "/api/v1/tenants/00000000-0000-7000-8000-000000000000", headers=world.admin.headers
    )
    assert resp.status_code == 404


def test_oversized_body_is_413(world: World) -> None:
    big = b'{"name_en": "' + b"x" * 2_000_000 + b'"}'
    resp = world.client.post(
        "/api/v1/tenants",
        content=big,
        headers={**world.admin.headers, "content-type": "application/json"},
    )
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"


def test_bad_cursor_and_limit(world: World) -> None:
    h = world.admin.headers
    resp = world.client.get("/api/v1/tenants", params={"cursor": "!!!"}, headers=h)
    assert resp.status_code == 422
    assert "cursor" in resp.json()["error"]["fields"]
    resp = world.client.get("/api/v1/tenants", params={"limit": 0}, headers=h)
    assert resp.status_code == 422
    assert "limit" in resp.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("prefixes", "field", "fragment"),
    [
        (["198.51.100.1/24"], "prefixes.0", "host bits set"),
        (["198.51.100.0/24", "198.51.100.128/25"], "prefixes.1", "overlaps 198.51.100.0/24"),
        (["not-a-prefix"], "prefixes.0", "not an IP prefix"),
        ([], "prefixes", "at least 1"),
    ],
)
def test_bad_site_prefixes(world: World, prefixes: list[str], field: str, fragment: str) -> None:
    resp = world.client.post(
        f"/api/v1/tenants/{world.a.id}/sites",
        json={"name": "hq", "country": "DE", "purpose": "hq", "prefixes": prefixes},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 422
    assert fragment in resp.json()["error"]["fields"][field]


def test_failed_create_leaves_nothing_behind(world: World) -> None:
    """A refused device leaves no row, no address taken and no audit event."""
    h = world.a.admin.headers
    base = f"/api/v1/tenants/{world.a.id}/devices"
    before = world.client.get("/api/v1/audit/events", headers=world.admin.headers).json()["count"]
    resp = world.client.post(
        base,
        json={
            "name": "x",
            "public_key": public_key(),
            "user_id": str(world.a.employee.user_id),
            "pop_id": "00000000-0000-7000-8000-000000000000",
        },
        headers=h,
    )
    assert resp.status_code == 422
    assert resp.json()["error"]["fields"] == {"pop_id": "no such PoP"}
    after = world.client.get("/api/v1/audit/events", headers=world.admin.headers).json()["count"]
    assert after == before
    ok = world.client.post(
        base,
        json={"name": "x", "public_key": public_key(), "user_id": str(world.a.employee.user_id)},
        headers=h,
    )
    assert ok.json()["ipv4"] == world.a.data["ipv4_pool"].replace("0/22", "1")


def test_bad_key_and_email(world: World) -> None:
    resp = world.client.post(
        f"/api/v1/tenants/{world.a.id}/devices",
        json={"name": "x", "public_key": "AAAA"},
        headers=world.a.employee.headers,
    )
    assert resp.status_code == 422
    assert "WireGuard key" in resp.json()["error"]["fields"]["public_key"]
    resp = world.client.post(
        f"/api/v1/tenants/{world.a.id}/users",
        json={"email": "not an email", "display_name": "x"},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 422
    assert "email" in resp.json()["error"]["fields"]


def test_unknown_route_is_json_404(world: World) -> None:
    resp = world.client.get("/api/v1/nothing-here", headers=world.admin.headers)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


def test_refusals_are_in_chinese_when_the_caller_asks(client: TestClient, world: World) -> None:
    """Accept-Language: zh-CN translates the message and every field's message; the code and
    the field keys stay as they are, and without the header the answer stays in English."""
    admin = world.admin.headers
    body = {"name_en": "", "uscc": "x" * 40}
    english = client.post("/api/v1/tenants", json=body, headers=admin)
    chinese = client.post(
        "/api/v1/tenants", json=body, headers={**admin, "Accept-Language": "zh-CN,zh;q=0.9"}
    )
    assert english.status_code == chinese.status_code == 422
    assert english.headers["content-language"] == "en"
    assert chinese.headers["content-language"] == "zh-CN"
    en, zh = english.json()["error"], chinese.json()["error"]
    assert en["code"] == zh["code"] == "validation_error"
    assert en["fields"].keys() == zh["fields"].keys()
    assert zh["fields"]["uscc"] != en["fields"]["uscc"]
    assert all(not text.isascii() for text in zh["fields"].values()), zh
    missing = client.get(
        f"/api/v1/tenants/{world.b.id}/users/{world.a.admin.user_id}",
        headers={**world.a.admin.headers, "Accept-Language": "zh-CN"},
    )
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "未找到该租户"
