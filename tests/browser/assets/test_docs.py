"""``/api/v1/docs`` in Chromium with the network cut: Swagger UI from the package only."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from playwright.sync_api import expect

from tests.browser.assets.conftest import LOOPBACK, Watched
from tongdao.web.docs import DOCS_CONTENT_SECURITY_POLICY

SCREENSHOT = Path("/tmp/tongdao-artefacts/api-docs.png")


@pytest.mark.browser
def test_docs_render_offline_under_the_strict_policy(server_url: str, watched: Watched) -> None:
    page = watched.page
    response = page.goto(f"{server_url}/api/v1/docs")
    assert response is not None and response.status == 200
    assert response.headers["content-security-policy"] == DOCS_CONTENT_SECURITY_POLICY
    # Every tag is listed, folded (docExpansion "none"): 18 tags, the last one too.
    expect(page.locator("#operations-tag-health")).to_be_visible(timeout=15_000)
    assert page.locator(".opblock-tag").count() >= 18
    page.locator("#operations-tag-auth").click()
    login = page.locator("#operations-auth-login")
    expect(login).to_be_visible(timeout=15_000)
    expect(login).to_contain_text("/api/v1/auth/login")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    login.locator(".opblock-summary").click()  # expand it: React re-renders with more styles
    expect(login.locator(".opblock-body")).to_be_visible()
    # Try it out: the request goes to this server (connect-src 'self'), and the highlighted
    # response body renders without an inline-style refusal.
    login.get_by_role("button", name="Try it out").click()
    login.get_by_role("button", name="Execute").click()
    expect(login.locator(".responses-wrapper .live-responses-table")).to_be_visible()
    status = login.locator(".live-responses-table tbody .response-col_status").first
    expect(status).to_have_text(re.compile(r"^\s*4\d\d"))
    page.screenshot(path=str(SCREENSHOT.with_name("api-docs-try-it-out.png")))
    # Nothing asked for another host (and so nothing was aborted), nothing refused by the CSP.
    assert watched.aborted == []
    assert all(url.startswith(f"http://{LOOPBACK}:") for url in watched.requests)
    assert f"{server_url}/api/v1/openapi.json" in watched.requests
    # The only console error allowed is Chromium logging the 401 that the example sign-in got.
    unexpected = [text for text in watched.problems if "status of 401" not in text]
    assert unexpected == []


def test_docs_page_has_no_inline_script_and_loads_vendored_files(client: TestClient) -> None:
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]
    assert "'unsafe-eval'" not in page.headers["content-security-policy"]
    html = page.text
    assert "<script>" not in html and "style=" not in html
    assert "cdn" not in html.lower() and "https://" not in html
    for asset in (
        "/console/static/vendor/swagger-ui/swagger-ui-bundle.js",
        "/console/static/vendor/swagger-ui/swagger-ui.css",
        "/console/static/js/swagger-init.js",
    ):
        assert f'"{asset}"' in html
        assert client.get(asset).status_code == 200
