"""``static/js/device-keys.js`` in Chromium: WebCrypto X25519 keys, the assembled config, its QR.

The module is loaded from the real server's static route into a page that carries the
console's Content-Security-Policy. Keys are checked with ``wg pubkey`` (wireguard-tools), the
QR code with ``zbarimg`` (zbar-tools), the config with ``wg-quick strip``: none of them shares
code with the browser or with Tongdao.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, Route

from tests.browser.assets.conftest import Watched
from tests.conftest import need
from tests.support.wgquick import have_wg_quick, parse, wg_quick_strip
from tongdao.network.wgconfig import PeerSpec, render
from tongdao.testing.keys import public_key
from tongdao.web.routes import CONTENT_SECURITY_POLICY

ARTEFACTS = Path("/tmp/tongdao-artefacts")
MODULE = "/console/static/js/device-keys.js"
HARNESS = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>device keys</title></head>
<body><main id="out"></main></body>
</html>
"""
KEYS = 8


def server_config(*, tenant: str = "上海示例科技有限公司", device: str = "张伟的笔记本") -> str:
    """What GET .../devices/{id}/wireguard.conf returns: the API's own renderer, two PoPs."""
    return render(
        device_name=device,
        device_id="0b5c1e3a-8d2f-4a7e-9c61-2f4d8e7a9b10",
        tenant_name=tenant,
        ipv4="100.64.3.17",
        ipv6="fd00:64:3::11",
        dns=["100.64.0.53", "fd00:64::53"],
        routable=["100.64.0.0/16", "198.18.0.0/24", "198.18.7.0/24", "fd00:64::/48"],
        peers=[
            PeerSpec(
                "上海一号", "CN-SH", public_key(), "pop-sh1.example.com", 51820,
                "100.64.0.1", "fd00:64::1",
            ),
            PeerSpec(
                "北京一号", "CN-BJ", public_key(), "203.0.113.7", 51820,
                "100.64.0.2", "fd00:64::2",
            ),
        ],
    )  # fmt: skip


def wg_pubkey(private_key: str) -> str:
    done = subprocess.run(
        ["wg", "pubkey"], input=private_key + "\n", capture_output=True, text=True, timeout=10
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def keys_page(server_url: str, watched: Watched) -> Page:
    """A same-origin page under the console's CSP with the module loaded as ``window.keys``."""
    if shutil.which("wg") is None:
        need("wg (wireguard-tools)")

    def harness(route: Route) -> None:
        route.fulfill(
            status=200,
            content_type="text/html; charset=utf-8",
            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
            body=HARNESS,
        )

    page = watched.page
    page.route(f"{server_url}/__device-keys-harness", harness)
    page.goto(f"{server_url}/__device-keys-harness")
    page.evaluate(f"async () => {{ window.keys = await import({MODULE!r}); }}")
    return page


def js(page: Page, expression: str, *args: Any) -> Any:
    return page.evaluate(expression, list(args))


@pytest.mark.browser
def test_browser_key_pairs_match_wg_pubkey(keys_page: Page, watched: Watched) -> None:
    before = len(watched.requests)
    pairs = [js(keys_page, "() => window.keys.generateKeyPair()") for _ in range(KEYS)]
    assert len({pair["privateKey"] for pair in pairs}) == KEYS
    for pair in pairs:
        raw = base64.b64decode(pair["privateKey"], validate=True)
        assert len(raw) == 32 and len(base64.b64decode(pair["publicKey"], validate=True)) == 32
        assert raw[0] & 7 == 0 and raw[31] & 0xC0 == 0x40  # clamped like `wg genkey`
        assert wg_pubkey(pair["privateKey"]) == pair["publicKey"]
    assert watched.requests[before:] == []  # making keys asked nothing of any server
    assert watched.problems == []


@pytest.mark.browser
def test_assembled_config_takes_the_key_and_wg_quick_accepts_it(
    keys_page: Page, watched: Watched, tmp_path: Path
) -> None:
    pair = js(keys_page, "() => window.keys.generateKeyPair()")
    conf = server_config()
    assembled = js(
        keys_page, "([k, c]) => window.keys.assembleConfig(k, c)", pair["privateKey"], conf
    )
    # The placeholder line became the key; every other line is the server's, in order.
    assert assembled == conf.replace(
        "# PrivateKey = <this device's private key>", f"PrivateKey = {pair['privateKey']}"
    )
    parsed = parse(assembled)
    assert parsed.stray == []
    assert parsed.names == ["interface", "peer", "peer"]
    assert parsed.sections[0].keys["privatekey"] == [pair["privateKey"]]
    assert wg_pubkey(parsed.sections[0].keys["privatekey"][0]) == pair["publicKey"]
    if have_wg_quick():
        stripped = wg_quick_strip(assembled)
        assert f"PrivateKey = {pair['privateKey']}" in stripped
        assert "Address" not in stripped and "DNS" not in stripped

    # Without the placeholder the key goes first in [Interface].
    bare = conf.replace("# PrivateKey = <this device's private key>\n", "")
    inserted = js(
        keys_page, "([k, c]) => window.keys.assembleConfig(k, c)", pair["privateKey"], bare
    )
    assert f"[Interface]\nPrivateKey = {pair['privateKey']}\nAddress = " in inserted

    # The file offered for download is the assembled text, byte for byte.
    with keys_page.expect_download() as download:
        js(keys_page, "([t]) => window.keys.downloadFile('tongdao-laptop.conf', t)", assembled)
    assert download.value.suggested_filename == "tongdao-laptop.conf"
    saved = tmp_path / "saved.conf"
    download.value.save_as(saved)
    assert saved.read_text(encoding="utf-8") == assembled

    # Nothing the page sent carries the private key (no request was made at all after load).
    assert all(pair["privateKey"] not in url for url in watched.requests)
    assert watched.problems == []


REFUSALS = [
    ("not a key", "[Interface]\n", "not a WireGuard key"),
    ("A" * 42 + "B=", "[Interface]\n", "not a WireGuard key"),  # stray bits past 32 bytes
    ("AAAA", "[Interface]\n", "not a WireGuard key"),
    (None, "[Interface]\nPrivateKey = x\n", "already has a PrivateKey"),
    (None, "[Interface]\n privatekey= x\n", "already has a PrivateKey"),
    (None, "[Peer]\nPublicKey = x\n", "exactly one [Interface]"),
    (None, "[Interface]\n[Interface]\n", "exactly one [Interface]"),
]


@pytest.mark.browser
def test_assemble_config_refuses_what_it_cannot_complete(keys_page: Page) -> None:
    good = js(keys_page, "() => window.keys.generateKeyPair()")["privateKey"]
    for key, config, message in REFUSALS:
        with pytest.raises(PlaywrightError, match=re.escape(message)):
            js(keys_page, "([k, c]) => window.keys.assembleConfig(k, c)", key or good, config)


@pytest.mark.browser
def test_qr_code_decodes_to_the_exact_config(
    keys_page: Page, watched: Watched, tmp_path: Path
) -> None:
    if shutil.which("zbarimg") is None:
        need("zbarimg (zbar-tools)")
    pair = js(keys_page, "() => window.keys.generateKeyPair()")
    assembled = js(
        keys_page,
        "([k, c]) => window.keys.assembleConfig(k, c)",
        pair["privateKey"],
        server_config(),
    )
    js(
        keys_page,
        """([text]) => {
            const svg = window.keys.qrSvg(text, {cellSize: 4});
            svg.id = "qr";
            document.getElementById("out").replaceChildren(svg);
        }""",
        assembled,
    )
    qr = keys_page.locator("#qr")
    assert qr.get_attribute("role") == "img"
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    png = ARTEFACTS / "device-config-qr.png"
    qr.screenshot(path=str(png))
    done = subprocess.run(
        ["zbarimg", "--raw", "-q", "-Sbinary", str(png)], capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode("utf-8") == assembled
    assert watched.problems == []


def test_the_module_makes_no_request() -> None:
    source = (resources.files("tongdao.web") / "static" / "js" / "device-keys.js").read_text(
        encoding="utf-8"
    )
    code = "\n".join(line.split("//", 1)[0] for line in source.splitlines())
    for call in ("fetch(", "XMLHttpRequest", "sendBeacon", "WebSocket", "EventSource", "import("):
        assert call not in code, call
    assert re.findall(r'^import .* from "([^"]+)";$', code, re.M) == [
        "../vendor/qrcode-generator/qrcode.mjs"
    ]
    assert "innerHTML" not in code and "insertAdjacentHTML" not in code
