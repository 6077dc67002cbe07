"""Real identity, privacy notice and consents for test users, done through the API the way
a deployment does it: a tenant admin (or the operator) records the identity, a compliance
officer verifies it; the person accepts the notice and consents to transfer abroad."""

from __future__ import annotations

import itertools
import uuid
import weakref
from typing import Any

from fastapi.testclient import TestClient

from tongdao.compliance.identity import resident_id_check_digit

API = "/api/v1"
NOTICE_VERSION = "2026-01"
_serial = itertools.count(1)


def resident_id(n: int) -> str:
    """A PRC resident ID with a valid birth date and GB 11643 check digit, distinct per n."""
    first17 = f"110105{1970 + n % 50}0{1 + n % 9}{10 + n % 18}{n % 1000:03d}"
    return first17 + resident_id_check_digit(first17)


def identity_body(n: int | None = None) -> dict[str, Any]:
    n = next(_serial) if n is None else n
    return {
        "legal_name": f"测试用户{n}",
        "id_type": "prc_resident_id",
        "id_number": resident_id(n),
        "mobile": f"+86138{n % 100_000_000:08d}",
    }


def verify_identity(
    client: TestClient,
    tenant_id: uuid.UUID | str,
    user_id: uuid.UUID | str,
    *,
    recorder: dict[str, str],
    verifier: dict[str, str],
) -> dict[str, Any]:
    """Record a real identity for the user (as ``recorder``), then verify it (``verifier``)."""
    item = f"{API}/tenants/{tenant_id}/users/{user_id}"
    resp = client.patch(item, json=identity_body(), headers=recorder)
    assert resp.status_code == 200, resp.text
    resp = client.post(f"{item}/identity-verification", headers=verifier)
    assert resp.status_code == 200, resp.text
    user: dict[str, Any] = resp.json()
    return user


def notice_body(version: str = NOTICE_VERSION, **extra: Any) -> dict[str, Any]:
    return {
        "version": version,
        "title": "Tongdao personal information notice",
        "text": "We process your name, ID document and mobile to provide the VPN service ...",
        "transfer_abroad_text": "Your traffic to your company's headquarters network abroad "
        "(recipient: your employer's head office) carries personal information ...",
        **extra,
    }


def publish_notice(
    client: TestClient, headers: dict[str, str], version: str = NOTICE_VERSION, **extra: Any
) -> dict[str, Any]:
    resp = client.post(
        f"{API}/privacy-notices", json=notice_body(version, **extra), headers=headers
    )
    assert resp.status_code == 201, resp.text
    notice: dict[str, Any] = resp.json()
    return notice


def sign_in(client: TestClient, headers: dict[str, str]) -> dict[str, str]:
    """A signed-in session (``POST /auth/login``) of the test user behind ``headers``, whose
    password is the test world's: a consent of one's own is given only in a session."""
    from tests.support.world import PASSWORD

    email = client.get(f"{API}/auth/me", headers=headers).json()["email"]
    resp = client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    return {"Authorization": f"Bearer {resp.json()['token']}"}


def consent_abroad(
    client: TestClient,
    tenant_id: uuid.UUID | str,
    user_id: uuid.UUID | str,
    headers: dict[str, str],
    version: str = NOTICE_VERSION,
) -> None:
    """Accept the notice and consent to transfer abroad: as the person (in a session signed
    in for them), or recorded by an admin with evidence."""
    url = f"{API}/tenants/{tenant_id}/users/{user_id}/consents"
    if client.get(f"{API}/auth/me", headers=headers).json()["id"] == str(user_id):
        headers = sign_in(client, headers)
    for kind in ("notice", "transfer_abroad"):
        resp = client.post(
            url,
            json={"kind": kind, "notice_version": version, "evidence": "signed form T-1"},
            headers=headers,
        )
        assert resp.status_code == 201, resp.text


_BENCH_NOTICES: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def bench_consent_body(bench: Any) -> dict[str, Any]:
    """A consent to the access bench's notice (published once per bench, as the operator)."""
    if bench not in _BENCH_NOTICES:
        _BENCH_NOTICES[bench] = bench.call("POST", "/privacy-notices", notice_body("bench"))[
            "version"
        ]
    return {"kind": "notice", "notice_version": _BENCH_NOTICES[bench], "evidence": "form B-1"}
