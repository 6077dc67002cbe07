"""The console's frame under attack: an outsider, a signed-in employee and a tenant admin of
tenant A try CSRF, session fixation, open redirects, markup injection, the first-run setup
code, crafted languages and paths against the real app (TestClient, and uvicorn on loopback
where the transport decides: proxies and the cookie's Secure flag)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.world import PASSWORD, World
from tests.web.test_console_frame import browser, csrf_of, sign_in
from tongdao.auth.permissions import Role
from tongdao.errors import Conflict
from tongdao.operator.bootstrap import create_first_admin
from tongdao.runtime import Ctx, Runtime
from tongdao.tenancy.models import Tenant, User
from tongdao.web.console import HOST_PREFIX, LANGUAGE_COOKIE, PRESESSION_COOKIE, SESSION_COOKIE
from tongdao.web.first_run import MAX_WRONG

STRONG = "a long enough passphrase for the test 7"
SCRIPT = "\"'><script>alert(1)</script><img src=x onerror=alert(2)>"


def _setup_form(page_html: str, code: str, email: str) -> dict[str, str]:
    return {
        "csrf_token": csrf_of(page_html),
        "setup_code": code,
        "email": email,
        "display_name": "First Admin",
        "password": STRONG,
        "confirm_password": STRONG,
    }


# --- CSRF ----------------------------------------------------------------------------------


def test_csrf_every_wrong_way_is_refused_and_the_htmx_header_works(
    world: World, app: FastAPI
) -> None:
    client = browser(app)
    sign_in(client, "employee@a.example")
    token = csrf_of(client.get("/console/home").text)
    # A pre-sign-in token (another binding) is not this session's.
    anon = browser(app)
    pre = csrf_of(anon.get("/console/sign-in").text)
    for bad in ("", "x", pre, token[:-1], token + "A", token.upper()):
        answer = client.post("/console/language", data={"csrf_token": bad, "language": "zh_CN"})
        assert answer.status_code == 403, bad
    # A token in the form does not cover a wrong one in the htmx header.
    answer = client.post(
        "/console/language",
        data={"csrf_token": token, "language": "zh_CN"},
        headers={"X-CSRF-Token": "wrong"},
    )
    assert answer.status_code == 403
    for headers in (
        {"Sec-Fetch-Site": "same-site"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://127.0.0.1:8443"},
        {"Origin": "http://evil.example"},
        {"Origin": "file://"},
    ):
        answer = client.post(
            "/console/language", data={"csrf_token": token, "language": "zh_CN"}, headers=headers
        )
        assert answer.status_code == 403, headers
        assert answer.headers["content-security-policy"].startswith("default-src 'self'")
        assert answer.headers["cache-control"] == "no-store"
    # The htmx way: the token in X-CSRF-Token, none in the form.
    answer = client.post(
        "/console/language",
        data={"language": "zh_CN", "next": "/console/home"},
        headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "same-origin"},
    )
    assert answer.status_code == 303
    assert client.get("/console/home").text.startswith('<!doctype html>\n<html lang="zh-CN">')
    # Nothing changes state on GET.
    for path in ("/console/sign-out", "/console/language"):
        assert client.get(path).status_code in {404, 405}
    assert client.get("/console/home").status_code == 200


def test_sign_out_is_refused_without_its_token_and_then_really_ends_the_session(
    world: World, app: FastAPI
) -> None:
    client = browser(app)
    sign_in(client, "tenant_admin@a.example")
    secret = client.cookies[SESSION_COOKIE]
    assert client.post("/console/sign-out", data={}).status_code == 403
    token = csrf_of(client.get("/console/home").text)
    out = client.post("/console/sign-out", data={"csrf_token": token})
    assert out.status_code == 303
    assert f'{SESSION_COOKIE}=""' in out.headers["set-cookie"]
    # Neither the console nor the API takes the old secret any more.
    replay = browser(app)
    replay.cookies.set(SESSION_COOKIE, secret)
    assert replay.get("/console/home").headers["location"] == "/console/sign-in"
    bearer = world.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {secret}"})
    assert bearer.status_code == 401


# --- session fixation ----------------------------------------------------------------------


def test_a_planted_session_cookie_does_not_survive_sign_in(world: World, app: FastAPI) -> None:
    attacker = browser(app)
    sign_in(attacker, "employee@a.example")
    planted = attacker.cookies[SESSION_COOKIE]
    for planted_value in (planted, "td_s_forged_not_a_real_token_0000000000"):
        victim = browser(app)
        victim.cookies.set(SESSION_COOKIE, planted_value, domain="127.0.0.1", path="/")
        if planted_value != planted:
            # A forged cookie is no session: the sign-in page opens and the victim signs in
            # with a session of their own.
            page = victim.get("/console/sign-in")
            assert page.status_code == 200
            sign_in(victim, "tenant_admin@a.example")
            assert victim.cookies[SESSION_COOKIE] != planted_value
            assert "tenant_admin" in victim.get("/console/home").text
        else:
            # A planted real session is the attacker's own: the victim sees the attacker's
            # name in the top bar, not a sign-in form that would take their password into it.
            assert victim.get("/console/sign-in").status_code == 303
    assert "tenant_admin" not in attacker.get("/console/home").text


# --- cookies over TLS and proxies ------------------------------------------------------------


def _sign_in_over(base: str, headers: dict[str, str]) -> list[str]:
    """Sign in over plain http as a TLS proxy's browser would (cookies sent back by hand: a
    client on plain http keeps Secure cookies to itself)."""
    with httpx.Client(base_url=base, follow_redirects=False, headers=headers) as http:
        page = http.get("/console/sign-in")
        presession = re.search(
            rf"^((?:{HOST_PREFIX})?{PRESESSION_COOKIE})=([^;]+)", page.headers["set-cookie"]
        )
        assert presession
        http.cookies.clear()
        answer = http.post(
            "/console/sign-in",
            data={
                "csrf_token": csrf_of(page.text),
                "email": "employee@a.example",
                "password": PASSWORD,
            },
            headers={"Cookie": f"{presession.group(1)}={presession.group(2)}"},
        )
        assert answer.status_code == 303, answer.text
        return [page.headers["set-cookie"], *answer.headers.get_list("set-cookie")]


@contextmanager
def _server(app: FastAPI, proxies: list[str]) -> Iterator[str]:
    """uvicorn configured as ``tongdao server`` configures it (cli/server.py): proxy headers
    believed only from ``proxies``, none by default."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level="warning",
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def test_cookies_are_secure_under_tls_and_x_forwarded_proto_counts_only_from_trusted_proxies(
    world: World, app: FastAPI
) -> None:
    tls = TestClient(app, base_url="https://127.0.0.1", follow_redirects=False)
    page = tls.get("/console/sign-in")
    assert "; secure" in page.headers["set-cookie"].lower()
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    for proxies, secure in (([], False), (["198.51.100.7"], False), (["127.0.0.1"], True)):
        with _server(app, proxies) as base:
            cookies = _sign_in_over(base, forwarded)
        # Under https (as a trusted proxy says) the names carry the __Host- prefix.
        session = (HOST_PREFIX if secure else "") + SESSION_COOKIE
        assert cookies[0].startswith((HOST_PREFIX if secure else "") + PRESESSION_COOKIE)
        for cookie in (cookies[0], *(c for c in cookies if c.startswith(session))):
            assert ("; secure" in cookie.lower()) is secure, (proxies, cookie)
        assert any(c.startswith(session + "=") for c in cookies)


# --- open redirects ----------------------------------------------------------------------------

NEXT_TRICKS = [
    "//evil.example",
    "/console//evil.example",
    "/console/\\evil.example",
    "/console/\t/evil.example",
    "/console/\n//evil.example",
    "/%2F%2Fevil.example",
    "%2Fconsole%2F",
    "/\\/evil.example",
    "\\\\evil.example",
    "/console@evil.example",
    "https://evil.example/console/",
    "http:/console/",
    "／／evil.example",
    "/console/\u2028//evil.example",
    " /console/",
]


@pytest.mark.parametrize("target", NEXT_TRICKS)
def test_next_never_leaves_this_site(world: World, app: FastAPI, target: str) -> None:
    client = browser(app)
    page = client.get("/console/sign-in", params={"next": target})
    assert page.status_code == 200
    answer = client.post(
        "/console/sign-in",
        data={
            "csrf_token": csrf_of(page.text),
            "email": "employee@a.example",
            "password": PASSWORD,
            "next": target,
        },
    )
    assert answer.status_code == 303
    for where in (answer.headers["location"],):
        resolved = httpx.URL("http://127.0.0.1/console/sign-in").join(where)
        assert resolved.host == "127.0.0.1", where
        assert resolved.path.startswith("/console/"), where
    token = csrf_of(client.get("/console/home").text)
    switched = client.post(
        "/console/language", data={"csrf_token": token, "language": "en", "next": target}
    )
    resolved = httpx.URL("http://127.0.0.1/console/home").join(switched.headers["location"])
    assert resolved.host == "127.0.0.1" and resolved.path.startswith("/console/")
    # Signed in, GET /console/sign-in?next=... redirects too.
    again = client.get("/console/sign-in", params={"next": target})
    resolved = httpx.URL("http://127.0.0.1/console/home").join(again.headers["location"])
    assert resolved.host == "127.0.0.1" and resolved.path.startswith("/console/")


# --- markup injection ------------------------------------------------------------------------


def test_names_and_echoed_values_are_escaped_everywhere(
    world: World, app: FastAPI, runtime: Runtime
) -> None:
    with runtime.db.session(write=True) as session:
        user = session.get(User, world.a.employee.user_id)
        assert user is not None
        user.display_name = SCRIPT
        tenant = session.get(Tenant, world.a.id)
        assert tenant is not None
        tenant.name_en = SCRIPT
        tenant.name_zh = SCRIPT + "租户"
        session.commit()
    client = browser(app)
    sign_in(client, "employee@a.example")
    for language in ("en", "zh-CN"):
        home = client.get("/console/home", headers={"Accept-Language": language})
        assert home.status_code == 200
        assert "<script>" not in home.text and "<img src=x" not in home.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in home.text
    # Values sent back into the forms (sign-in, setup, forgot, next, query) stay text.
    anon = browser(app)
    page = anon.get("/console/sign-in", params={"next": "/console/" + SCRIPT})
    assert "<script>" not in page.text
    answer = anon.post(
        "/console/sign-in",
        data={"csrf_token": csrf_of(page.text), "email": SCRIPT, "password": "x"},
    )
    assert answer.status_code in {401, 422}
    assert "<script>" not in answer.text and "<img src=x" not in answer.text
    forgot = anon.post("/console/password/forgot", data={"email": SCRIPT})
    assert "<script>" not in forgot.text
    # The body's hx-headers attribute is valid JSON holding only the token.
    body = re.search(r"<body hx-headers='([^']*)'>", page.text)
    assert body, page.text[:400]
    assert re.fullmatch(r'\{"X-CSRF-Token": "[A-Za-z0-9_-]{43}"\}', body.group(1))


# --- first run -------------------------------------------------------------------------------


def test_wrong_setup_codes_do_not_lock_out_the_person_who_reads_the_log(
    app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    """An outsider posting wrong codes must not replace the printed one (the admin could
    never finish: the code they read is stale when they type it) nor flood the log."""
    admin = browser(app)
    page = admin.get("/console/setup")
    printed = re.findall(r"setup code: ([A-Z0-9-]{14})", capsys.readouterr().err)
    assert len(printed) == 1
    outsider = browser(app)
    form = _setup_form(outsider.get("/console/setup").text, "AAAA-BBBB-CCCC", "x@evil.example")
    for _ in range(MAX_WRONG * 5):
        assert outsider.post("/console/setup", data=form).status_code in {422, 429}
    assert re.findall(r"setup code: ([A-Z0-9-]{14})", capsys.readouterr().err) == []
    done = admin.post(
        "/console/setup", data=_setup_form(page.text, printed[0], "first@operator.example")
    )
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/console/sign-in?done=setup"


def test_a_long_or_odd_setup_code_is_a_field_error(app: FastAPI) -> None:
    client = browser(app)
    page = client.get("/console/setup")
    # Full-width letters are letters to str.isalnum(): they reached hmac.compare_digest as
    # non-ASCII text, which raises TypeError (a 500).
    for code in ("x" * 20_000, "\x00\u202e" * 100, "ＡＢＣＤ-ＥＦＧＨ-ＪＫＭＮ", "é" * 12):
        answer = client.post("/console/setup", data=_setup_form(page.text, code, "a@b.example"))
        assert answer.status_code == 422
        assert 'id="f-setup_code-error">' in answer.text


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
def test_two_setups_at_once_make_one_operator_admin(runtime: Runtime) -> None:
    """The first admin's check-then-insert holds a lock: on PostgreSQL two transactions that
    both saw no admin would otherwise both insert one."""
    outcome: dict[str, Any] = {}

    def second() -> None:
        with runtime.db.session(write=True) as session:
            try:
                create_first_admin(
                    Ctx(session=session, runtime=runtime),
                    "second@operator.example",
                    "Second",
                    STRONG,
                    actor="test",
                )
                session.commit()
                outcome["second"] = "created"
            except Conflict:
                outcome["second"] = "conflict"
            except Exception as exc:  # the store refusing the race is fine too
                outcome["second"] = type(exc).__name__

    with runtime.db.session(write=True) as session:
        create_first_admin(
            Ctx(session=session, runtime=runtime),
            "first@operator.example",
            "First",
            STRONG,
            actor="test",
        )
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(1.0)  # the second one has checked by now, unless it waits for us
        session.commit()
    thread.join(30)
    assert not thread.is_alive()
    with runtime.db.session(write=False) as session:
        admins = [
            email
            for email, roles in session.execute(select(User.email, User.roles))
            if Role.OPERATOR_ADMIN.value in roles
        ]
    assert admins == ["first@operator.example"], (admins, outcome)
    assert outcome["second"] == "conflict", outcome


# --- languages and translated refusals -------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "zh-CN;q=nan, en;q=0.5",
        "zh;q=inf",
        "zh;q=1e999",
        "zh;q=-1, en",
        "*;q=0.1",
        ";;;,,,;q=",
        "x" * 8000,
        ("de;q=0.1," * 2000) + "zh",
    ],
)
def test_crafted_accept_language_is_harmless(world: World, app: FastAPI, header: str) -> None:
    client = browser(app)
    started = time.monotonic()
    page = client.get("/console/sign-in", headers={"Accept-Language": header})
    assert page.status_code == 200
    assert re.search(r'<html lang="(en|zh-CN)">', page.text)
    api = client.get(
        "/api/v1/tenants",
        headers={"Accept-Language": header, "Authorization": "Bearer td_x_nothing"},
    )
    assert api.status_code == 401
    assert time.monotonic() - started < 5  # two requests; the parse itself is ~0.3 ms


def test_the_language_cookie_takes_only_known_languages(world: World, app: FastAPI) -> None:
    client = browser(app)
    client.cookies.set(LANGUAGE_COOKIE, "../../etc/passwd")
    page = client.get("/console/sign-in")
    assert '<html lang="en">' in page.text
    token = csrf_of(page.text)
    answer = client.post("/console/language", data={"csrf_token": token, "language": "<script>"})
    assert answer.status_code == 303
    assert f"{LANGUAGE_COOKIE}=en;" in answer.headers["set-cookie"]


# --- static files, headers on every answer ---------------------------------------------------

TRAVERSALS = [
    "../console.py",
    "..%2Fconsole.py",
    "%2e%2e/%2e%2e/console.py",
    "%252e%252e/console.py",
    "vendor/../../console.py",
    "vendor/..\\..\\console.py",
    ".%2e/routes.py",
    "js/../../routes.py",
    "/etc/passwd",
    "console.css%00.js",
    "console.css/",
    "../locale/zh_CN/LC_MESSAGES/console.po",
    "....//....//console.py",
    "C:\\windows\\win.ini",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_static_paths_never_leave_the_static_folder(app: FastAPI, path: str) -> None:
    client = browser(app)
    answer = client.get("/console/static/" + path)
    assert answer.status_code == 404, answer.text[:200]
    assert "import" not in answer.text and "msgid" not in answer.text


def test_every_answer_of_the_console_carries_the_policy_and_no_store(
    world: World, app: FastAPI
) -> None:
    client = browser(app)
    sign_in(client, "employee@a.example")
    answers = {
        "home": client.get("/console/home"),
        "sign-in": browser(app).get("/console/sign-in"),
        "404": client.get("/console/no-such"),
        "403 csrf": client.post("/console/language", data={}),
        "bad id": client.get("/console/password/reset?token=" + "x" * 600),
        "forgot": client.get("/console/password/forgot"),
        "redirect": client.get("/console/"),
        "signed out": browser(app).get("/console/home"),
    }
    for name, answer in answers.items():
        headers = answer.headers
        assert "frame-ancestors 'none'" in headers.get("content-security-policy", ""), name
        assert "script-src 'self'" in headers["content-security-policy"], name
        assert headers.get("x-frame-options") == "DENY", name
        assert headers.get("x-content-type-options") == "nosniff", name
        assert headers.get("cache-control") == "no-store", name
        if headers.get("content-type", "").startswith("text/html"):
            assert "<script>" not in answer.text, name
    docs = client.get("/api/v1/docs")
    assert "frame-ancestors 'none'" in docs.headers["content-security-policy"]
    assert "'unsafe-inline'" not in docs.headers["content-security-policy"]
    assert "<script>" not in docs.text
    static = client.get("/console/static/console.css")
    assert static.headers["x-content-type-options"] == "nosniff"


def test_a_query_the_page_refuses_is_a_console_page_not_api_json(
    world: World, app: FastAPI
) -> None:
    client = browser(app)
    for path in (
        "/console/password/reset?token=" + "x" * 600,
        "/console/sign-in?next=" + "/" * 3000,
    ):
        answer = client.get(path, headers={"Accept-Language": "zh-CN"})
        assert answer.status_code == 422
        assert answer.headers["content-type"].startswith("text/html")
        assert answer.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
        assert '<html lang="zh-CN">' in answer.text
        assert "xxxxxxxxxx" not in answer.text


def test_the_password_forms_refuse_posts_from_another_site(world: World, app: FastAPI) -> None:
    """They carry no token (a mailed link's secret is the credential), so another site could
    otherwise make its visitors' browsers ask for reset mails to any address."""
    client = browser(app)
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
        forgot = client.post(
            "/console/password/forgot", data={"email": "employee@a.example"}, headers=headers
        )
        assert forgot.status_code == 403, forgot.text
        reset = client.post(
            "/console/password/reset",
            data={"token": "x", "new_password": STRONG, "confirm_password": STRONG},
            headers=headers,
        )
        assert reset.status_code == 403
    same = client.post(
        "/console/password/forgot",
        data={"email": "nobody@a.example"},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert same.status_code == 202
