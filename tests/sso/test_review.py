"""Attacks on single sign-on from the security review (session 22): a tenant's own provider
sending claims of odd types and sizes, and a provider pointing Tongdao at internal addresses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from tests.conftest import both_stores
from tests.sso.support import API, at_provider, begin, claim_and_approve, connect, sign_in
from tests.support.oidc_provider import OidcProvider
from tests.support.world import World
from tongdao.audit.models import AuditEvent
from tongdao.config import Environment
from tongdao.runtime import Runtime
from tongdao.sso.models import SsoLogin
from tongdao.sso.oidc import LOGIN_TTL, MAX_DOCUMENT, Discovery, ProviderUnavailable
from tongdao.tenancy.models import User


def _last_refusal(world: World) -> str:
    with world.runtime.db.session() as session:
        event = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "login_failed")
            .order_by(AuditEvent.seq.desc())
        ).first()
    assert event is not None, "no refusal was audited"
    reason: str = event.after["reason"]
    return reason


@both_stores
@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({"sub": {"id": "1"}}, "sub"),
        ({"sub": 12345}, "sub"),
        ({"sub": "s" * 300}, "sub"),
        ({"sub": ""}, "sub"),
        ({"sub": "a\x00b"}, "sub"),
        ({"email": "x\x00y@a.example"}, "not a usable"),
        ({"email": "x" * 330 + "@a.example"}, "not a usable"),
        ({"email": "pаypal@a.example"}, "not a usable"),  # Cyrillic a: a look-alike address
        ({"email": "a@b@a.example"}, "not a usable"),
    ],
    ids=[
        "sub-object",
        "sub-number",
        "sub-too-long",
        "sub-empty",
        "sub-nul",
        "email-nul",
        "email-long",
        "email-mixed",
        "email-two-at",
    ],
)
def test_a_provider_sending_malformed_claims_is_refused_not_a_500(
    world: World, app: FastAPI, oidc_provider: OidcProvider, claims: dict[str, Any], why: str
) -> None:
    connect(world, oidc_provider, jit_users=True)
    user = oidc_provider.add_user("newcomer@a.example")
    oidc_provider.set_user_claims(user, claims)
    response = sign_in(app, oidc_provider, user)
    assert response.status_code == 401, response.text
    assert why in _last_refusal(world)
    with world.runtime.db.session() as session:
        emails = set(session.scalars(select(User.email)))
    assert not any("a.example" in e and e.startswith(("x" * 10, "p", "a@b")) for e in emails)


# --- what Tongdao fetches on a provider's word (SSRF, huge answers) ----------------------------

PUBLIC = "idp.example"  # resolves (by the test's resolver) to a public address


def _discovery(
    documents: dict[str, httpx.Response], addresses: dict[str, list[str]]
) -> tuple[Discovery, list[str]]:
    fetched: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return documents.get(str(request.url), httpx.Response(404))

    return Discovery(httpx.MockTransport(handler), addresses.__getitem__), fetched


def _metadata(issuer: str, **endpoints: str) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "jwks_uri": f"{issuer}/jwks",
            **endpoints,
        },
    )


@pytest.mark.parametrize(
    "endpoints",
    [
        {"jwks_uri": "http://203.0.113.9/jwks"},  # not https
        {"jwks_uri": "https://[fd00::1]/jwks"},  # the operator's own network
        {"jwks_uri": "https://100.64.0.1/jwks"},
        {"jwks_uri": "https://inside.example/jwks"},  # a name for a private address
        {"token_endpoint": "https://198.18.0.1/token"},
        {"authorization_endpoint": "javascript:alert(1)//"},
        {"jwks_uri": "http://127.0.0.1:5432/"},  # loopback for a provider elsewhere
    ],
    ids=["http", "ula", "cgnat", "private-name", "token-benchmark", "javascript", "loopback"],
)
def test_a_provider_cannot_point_tongdao_at_internal_addresses(endpoints: dict[str, str]) -> None:
    issuer = f"https://{PUBLIC}"
    metadata_url = f"{issuer}/.well-known/openid-configuration"
    discovery, fetched = _discovery(
        {metadata_url: _metadata(issuer, **endpoints)},
        {PUBLIC: ["203.0.113.10"], "inside.example": ["198.18.0.7"]},
    )
    with pytest.raises(ProviderUnavailable):
        discovery.keys(issuer)
    assert fetched == [metadata_url]  # nothing beyond the discovery was fetched


def test_an_issuer_whose_name_resolves_to_a_private_address_is_not_fetched() -> None:
    discovery, fetched = _discovery({}, {PUBLIC: ["203.0.113.10", "fd00::5"]})
    with pytest.raises(ProviderUnavailable):
        discovery.metadata(f"https://{PUBLIC}")
    assert fetched == []


def test_a_huge_discovery_document_is_not_read_to_the_end() -> None:
    issuer = f"https://{PUBLIC}"
    sent: list[int] = []

    def endless() -> Iterator[bytes]:
        yield b'{"issuer": "' + issuer.encode() + b'", "x": "'
        for _ in range(128):  # 8 MiB
            sent.append(64 * 1024)
            yield b"x" * (64 * 1024)
        yield b'"}'

    huge = httpx.Response(200, content=endless())
    discovery, _ = _discovery(
        {f"{issuer}/.well-known/openid-configuration": huge}, {PUBLIC: ["203.0.113.10"]}
    )
    with pytest.raises(ProviderUnavailable):
        discovery.metadata(issuer)
    assert sum(sent) <= MAX_DOCUMENT + 64 * 1024


@pytest.mark.parametrize(
    "issuer",
    ["https://198.18.0.5", "https://[fd00::7]/realms/a", "https://100.64.1.1", "https://10.1.2.3"],
    ids=["benchmark", "ula", "cgnat", "rfc1918"],
)
def test_an_issuer_on_a_private_address_is_refused_when_saved(world: World, issuer: str) -> None:
    claim_and_approve(world, world.a.id, world.a.admin, "a.example")
    body = {
        "name": "IdP",
        "issuer": issuer,
        "client_id": "tongdao",
        "client_secret": "s3cret-s3cret",
        "allowed_domains": ["a.example"],
    }
    resp = world.client.put(
        f"{API}/tenants/{world.a.id}/sso/provider", json=body, headers=world.a.admin.headers
    )
    assert resp.status_code == 422, resp.text
    assert "issuer" in resp.text


def test_a_provider_that_stops_answering_mid_sign_in_is_audited_and_the_state_spent(
    world: World, app: FastAPI, oidc_provider: OidcProvider
) -> None:
    connect(world, oidc_provider)
    user = oidc_provider.add_user("employee@a.example")
    browser, url = begin(app, user.email)
    callback = at_provider(oidc_provider, url, user)
    oidc_provider.stop()  # the token endpoint no longer answers
    assert browser.get(callback).status_code == 502
    assert "did not answer" in _last_refusal(world)
    assert browser.get(callback).status_code == 401  # the state was spent all the same
    assert "used already" in _last_refusal(world)


@both_stores
@pytest.mark.parametrize(
    "answer",
    ["error=access%00denied", "error=%ff%fe", "code=a%00b", "error=x&error=y&state=z"],
    ids=["nul-in-error", "bad-utf8", "nul-in-code", "repeated"],
)
def test_a_malformed_answer_from_the_provider_is_refused_not_a_500(
    world: World, app: FastAPI, oidc_provider: OidcProvider, answer: str
) -> None:
    connect(world, oidc_provider)
    browser, url = begin(app, "employee@a.example")
    state = parse_qs(urlsplit(url).query)["state"][0]
    response = browser.get(f"/console/sso/callback?state={state}&{answer}")
    assert response.status_code in (401, 422), response.text


@both_stores
def test_sign_ins_long_expired_do_not_pile_up(
    world: World, app: FastAPI, oidc_provider: OidcProvider
) -> None:
    connect(world, oidc_provider)
    for _ in range(3):
        begin(app, "employee@a.example")
    later = world.runtime.clock() + 3 * LOGIN_TTL
    world.runtime.clock = lambda: later
    begin(app, "employee@a.example")
    with world.runtime.db.session() as session:
        assert session.scalar(select(func.count()).select_from(SsoLogin)) == 1


@both_stores
def test_a_mapped_group_deleted_since_does_not_break_sign_in(
    world: World, app: FastAPI, oidc_provider: OidcProvider
) -> None:
    admin = world.a.admin.headers
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/groups", json={"name": "engineers"}, headers=admin
    )
    assert resp.status_code == 201, resp.text
    group = resp.json()["id"]
    connect(world, oidc_provider, groups_claim="groups", group_map={"eng": group})
    resp = world.client.delete(f"{API}/tenants/{world.a.id}/groups/{group}", headers=admin)
    assert resp.status_code == 204, resp.text
    user = oidc_provider.add_user("employee@a.example", groups=("eng",))
    response = sign_in(app, oidc_provider, user)
    assert response.status_code == 303, response.text


@both_stores
@pytest.mark.parametrize(
    "name", ["Li\x00Na", "Li\nNa", "\u202eaN iL"], ids=["nul", "newline", "bidi-override"]
)
def test_a_just_in_time_user_gets_no_control_characters_in_the_name(
    world: World, app: FastAPI, oidc_provider: OidcProvider, name: str
) -> None:
    connect(world, oidc_provider, jit_users=True)
    user = oidc_provider.add_user("li.na@a.example")
    oidc_provider.set_user_claims(user, {"name": name})
    response = sign_in(app, oidc_provider, user)
    assert response.status_code == 303, response.text
    with world.runtime.db.session() as session:
        shown = session.scalar(select(User.display_name).where(User.email == "li.na@a.example"))
    assert shown is not None and shown.isprintable(), repr(shown)


def test_a_provider_on_this_machine_is_refused_in_production(
    world: World, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """http://127.0.0.1 is how the tests' provider runs; in production a tenant admin cannot
    point the server at its own loopback services."""
    claim_and_approve(world, world.a.id, world.a.admin, "a.example")
    body = {
        "name": "IdP",
        "issuer": "http://127.0.0.1:8999/openid",
        "client_id": "tongdao",
        "client_secret": "s3cret-s3cret",
        "allowed_domains": ["a.example"],
    }
    url = f"{API}/tenants/{world.a.id}/sso/provider"
    monkeypatch.setattr(runtime.settings, "env", Environment.PRODUCTION)
    resp = world.client.put(url, json=body, headers=world.a.admin.headers)
    assert resp.status_code == 422 and "issuer" in resp.json()["error"]["fields"], resp.text
    monkeypatch.setattr(runtime.settings, "env", Environment.TEST)
    resp = world.client.put(url, json=body, headers=world.a.admin.headers)
    assert resp.status_code == 200, resp.text
