"""Helpers for the SSO tests: a tenant with its own (real) OpenID Provider, and an employee
signing in through the console as a browser would (httpx at the provider's login form)."""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.console import anonymous, csrf_of
from tests.support.oidc_provider import OidcClient, OidcProvider, OidcUser
from tests.support.world import World
from tongdao.sso.service import CALLBACK_PATH
from tongdao.web.console import SESSION_COOKIE

API = "/api/v1"
CONTINUE = re.compile(r'id="continue-sso" href="([^"]+)"')


@dataclass
class TenantSso:
    tenant_id: uuid.UUID
    provider: OidcProvider
    client: OidcClient
    domain: str
    settings: dict[str, Any]


def claim_and_approve(world: World, tenant_id: uuid.UUID, admin: Any, domain: str) -> str:
    resp = world.client.post(
        f"{API}/tenants/{tenant_id}/sso/domains",
        json={"domain": domain, "evidence": f"DNS TXT tongdao-verify=abc at {domain}"},
        headers=admin.headers,
    )
    assert resp.status_code == 201, resp.text
    claim_id: str = resp.json()["id"]
    resp = world.client.post(
        f"{API}/tenants/{tenant_id}/sso/domains/{claim_id}/decision",
        json={"decision": "approve"},
        headers=world.operators["compliance_officer"].headers,
    )
    assert resp.status_code == 200, resp.text
    return claim_id


def connect(
    world: World, provider: OidcProvider, tenant: str = "a", domain: str | None = None, **extra: Any
) -> TenantSso:
    """Tenant ``tenant`` claims its domain (approved), registers at ``provider`` and saves it
    as its identity provider."""
    fixture = world.a if tenant == "a" else world.b
    domain = domain or f"{tenant}.example"
    claim_and_approve(world, fixture.id, fixture.admin, domain)
    client = provider.add_client(world.runtime.settings.link_base_url + CALLBACK_PATH)
    body = {
        "name": f"IdP {tenant.upper()}",
        "issuer": provider.issuer,
        "client_id": client.client_id,
        "client_secret": client.client_secret,
        "allowed_domains": [domain],
        **extra,
    }
    resp = world.client.put(
        f"{API}/tenants/{fixture.id}/sso/provider", json=body, headers=fixture.admin.headers
    )
    assert resp.status_code == 200, resp.text
    return TenantSso(fixture.id, provider, client, domain, resp.json())


def begin(app: FastAPI, email: str) -> tuple[TestClient, str]:
    """The console's SSO form for ``email``: the browser (with its cookies) and the link."""
    browser = anonymous(app)
    page = browser.get("/console/sign-in/sso")
    assert page.status_code == 200, page.text
    resp = browser.post(
        "/console/sign-in/sso", data={"email": email, "csrf_token": csrf_of(page.text)}
    )
    assert resp.status_code == 200, resp.text
    found = CONTINUE.search(resp.text)
    assert found, resp.text
    return browser, html.unescape(found.group(1))


def at_provider(provider: OidcProvider, url: str, user: OidcUser) -> str:
    """The employee signs in at the provider; the callback path and query it sends back."""
    with httpx.Client(timeout=10) as idp_browser:
        callback = provider.sign_in(idp_browser, url, user)
    parts = urlsplit(callback)
    assert parts.path == CALLBACK_PATH, callback
    return f"{parts.path}?{parts.query}"


def sign_in(app: FastAPI, provider: OidcProvider, user: OidcUser, email: str | None = None) -> Any:
    """The whole sign-in; the callback's response (303 + session cookie, or 401 page)."""
    browser, url = begin(app, email or user.email)
    return browser.get(at_provider(provider, url, user))


def session_of(response: Any) -> str:
    cookie = response.cookies.get(SESSION_COOKIE)
    assert cookie, response.text
    return str(cookie)


def me(world: World, secret: str) -> dict[str, Any]:
    resp = world.client.get(f"{API}/auth/me", headers={"Authorization": f"Bearer {secret}"})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body
