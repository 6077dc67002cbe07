"""htmx and Chart.js from the package, under the console's Content-Security-Policy, in Chromium.

A page on the server's origin carries the console's exact policy and loads the vendored files
from the static route; any CSP refusal or script error is a console error and fails the test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect

from tests.browser.assets.conftest import Watched
from tongdao.web.routes import CONTENT_SECURITY_POLICY

ARTEFACTS = Path("/tmp/tongdao-artefacts")
HTMX_CONFIG = (
    """<meta name="htmx-config" content='{"includeIndicatorStyles": false, "allowEval": false}'>"""
)
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>vendored assets</title>
{config}
<script src="/console/static/vendor/htmx/htmx.min.js"></script>
<script src="/console/static/vendor/chartjs/chart.umd.min.js"></script>
</head>
<body>
<button id="load" hx-get="/__fragment" hx-target="#target">Load</button>
<div id="target"></div>
<div id="chart-box"><canvas id="chart" aria-label="usage" role="img"></canvas></div>
</body>
</html>
"""


def serve(page: Page, server_url: str, config: str) -> None:
    def html(body: str) -> Callable[[Route], None]:
        def fulfil(route: Route) -> None:
            route.fulfill(
                status=200,
                content_type="text/html; charset=utf-8",
                headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
                body=body,
            )

        return fulfil

    page.route(f"{server_url}/__vendor-harness", html(PAGE.format(config=config)))
    page.route(f"{server_url}/__fragment", html('<p id="swapped">swapped in by htmx</p>'))
    page.goto(f"{server_url}/__vendor-harness")


@pytest.mark.browser
def test_htmx_swaps_and_chartjs_draws_under_the_console_policy(
    server_url: str, watched: Watched
) -> None:
    page = watched.page
    serve(page, server_url, HTMX_CONFIG)
    page.locator("#load").click()
    expect(page.locator("#target #swapped")).to_have_text("swapped in by htmx")
    assert page.evaluate("() => window.htmx.version") == "2.0.11"

    page.evaluate(
        """() => {
            window.usage = new window.Chart(document.getElementById("chart"), {
                type: "bar",
                data: {
                    labels: ["张伟", "李娜", "Alice"],
                    datasets: [{label: "GiB this month", data: [3.5, 7.25, 1]}],
                },
                options: {animation: false, responsive: true},
            });
        }"""
    )
    assert page.evaluate("() => window.Chart.version") == "4.6.2"
    inked = page.evaluate(
        """() => {
            const canvas = document.getElementById("chart");
            const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
            let inked = 0;
            for (let i = 3; i < pixels.data.length; i += 4) { if (pixels.data[i] > 0) inked++; }
            return inked;
        }"""
    )
    assert inked > 1000  # bars, axes and labels were drawn
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("#chart-box").screenshot(path=str(ARTEFACTS / "vendor-chart.png"))
    assert watched.aborted == []
    assert watched.problems == []


@pytest.mark.browser
def test_htmx_default_indicator_style_is_refused_by_the_policy(
    server_url: str, watched: Watched
) -> None:
    """Why pages must set includeIndicatorStyles=false: otherwise htmx injects a <style>."""
    serve(watched.page, server_url, "")
    expect(watched.page.locator("#load")).to_be_visible()
    watched.page.wait_for_function("() => window.htmx !== undefined")
    assert any("style-src" in text for text in watched.problems), watched.problems
