"""The test OpenID Provider's sign-in works in Chromium: the browser suite of issue 15 signs
employees in through it. The relying party's callback is caught by the page's router."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Route

from tests.support.oidc_provider import OidcProvider
from tests.support.oidc_rp import REDIRECT_URI, RelyingParty

pytestmark = pytest.mark.browser


def test_an_employee_signs_in_at_the_provider_in_chromium(
    browser: Browser, oidc_provider: OidcProvider
) -> None:
    rp = RelyingParty.for_provider(oidc_provider)
    user = oidc_provider.add_user("li.na@example.com", groups=("vpn-users",))
    url, state, nonce, verifier = rp.begin()
    callbacks: list[str] = []

    def callback(route: Route) -> None:
        callbacks.append(route.request.url)
        route.fulfill(status=200, content_type="text/plain", body="signed in")

    context = browser.new_context()
    try:
        page = context.new_page()
        page.route(f"{REDIRECT_URI}**", callback)
        page.goto(url)
        page.get_by_label("User name").fill(user.username)
        page.get_by_label("Password").fill(user.password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{REDIRECT_URI}**")
    finally:
        context.close()

    assert len(callbacks) == 1
    token = rp.exchange(callbacks[0], state, verifier)
    claims = rp.validate(token, nonce)
    assert claims["sub"] == user.sub
    assert claims["groups"] == ["vpn-users"]
