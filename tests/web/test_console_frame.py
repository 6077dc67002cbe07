"""The console's frame over HTTP: first-run setup, cookie sessions, CSRF, languages, errors."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.world import PASSWORD, World
from tongdao.runtime import Runtime
from tongdao.web.console import PRESESSION_COOKIE, SESSION_COOKIE

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def browser(app: FastAPI) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1", follow_redirects=False)


def sign_in(client: TestClient, email: str, password: str = PASSWORD) -> None:
    page = client.get("/console/sign-in")
    answer = client.post(
        "/console/sign-in",
        data={"csrf_token": csrf_of(page.text), "email": email, "password": password},
    )
    assert answer.status_code == 303, answer.text
    assert client.cookies.get(SESSION_COOKIE)


# --- first run ---------------------------------------------------------------------------


def test_first_run_opens_to_the_setup_page_guarded_by_the_printed_code(
    app: FastAPI, capsys: pytest.CaptureFixture[str]
) -> None:
    client = browser(app)
    assert client.get("/console/").headers["location"] == "/console/setup"
    page = client.get("/console/setup")
    assert page.status_code == 200
    printed = capsys.readouterr().err
    code = re.search(r"setup code: ([A-Z0-9-]{14})", printed)
    assert code, printed
    form = {
        "csrf_token": csrf_of(page.text),
        "email": "first@operator.example",
        "display_name": "First Admin",
        "password": PASSWORD,
        "confirm_password": PASSWORD,
    }
    wrong = client.post("/console/setup", data={**form, "setup_code": "AAAA-BBBB-CCCC"})
    assert wrong.status_code == 422
    assert 'id="f-setup_code-error">is not the setup code' in wrong.text
    weak = client.post(
        "/console/setup",
        data={
            **form,
            "setup_code": code.group(1),
            "password": "short",
            "confirm_password": "short",
        },
    )
    assert weak.status_code == 422
    assert re.search(r'id="f-password-error">[^<]+', weak.text)
    done = client.post("/console/setup", data={**form, "setup_code": code.group(1).lower()})
    assert done.status_code == 303, done.text
    assert done.headers["location"] == "/console/sign-in?done=setup"
    # Used once: the page is gone and the same code does nothing more.
    assert client.get("/console/setup").headers["location"] == "/console/"
    again = client.post(
        "/console/setup",
        data={**form, "email": "second@operator.example", "setup_code": code.group(1)},
    )
    assert again.status_code == 303
    sign_in(client, "first@operator.example")
    home = client.get("/console/home")
    assert home.status_code == 200
    assert "First Admin" in home.text


def test_setup_refuses_a_form_without_its_csrf_token(app: FastAPI) -> None:
    client = browser(app)
    client.get("/console/setup")
    code = app.state.first_run.code()
    answer = client.post(
        "/console/setup",
        data={
            "setup_code": code,
            "email": "x@operator.example",
            "display_name": "X",
            "password": PASSWORD,
            "confirm_password": PASSWORD,
        },
    )
    assert answer.status_code == 403


def test_the_setup_page_is_gone_once_an_operator_admin_exists(world: World, app: FastAPI) -> None:
    client = browser(app)
    assert client.get("/console/setup").headers["location"] == "/console/"
    assert client.get("/console/").headers["location"] == "/console/sign-in"


# --- sessions and CSRF -------------------------------------------------------------------


def test_the_session_cookie_is_httponly_lax_and_never_in_the_page(
    world: World, app: FastAPI
) -> None:
    client = browser(app)
    page = client.get("/console/sign-in")
    assert PRESESSION_COOKIE in page.headers["set-cookie"]
    answer = client.post(
        "/console/sign-in",
        data={
            "csrf_token": csrf_of(page.text),
            "email": "employee@a.example",
            "password": PASSWORD,
        },
    )
    assert answer.status_code == 303
    cookie = [c for c in answer.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)]
    assert cookie and "HttpOnly" in cookie[0] and "SameSite=lax" in cookie[0]
    assert "Secure" not in cookie[0]  # plain http here; Secure under TLS
    secret = client.cookies[SESSION_COOKIE]
    home = client.get("/console/home")
    assert secret not in home.text
    assert "sessionStorage" not in home.text


def test_a_wrong_password_is_one_message_next_to_the_form(world: World, app: FastAPI) -> None:
    client = browser(app)
    page = client.get("/console/sign-in")
    answer = client.post(
        "/console/sign-in",
        data={"csrf_token": csrf_of(page.text), "email": "employee@a.example", "password": "x"},
    )
    assert answer.status_code == 401
    assert 'role="alert"' in answer.text
    assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")


def test_sign_in_without_csrf_or_from_another_site_is_refused(world: World, app: FastAPI) -> None:
    client = browser(app)
    page = client.get("/console/sign-in")
    data = {"email": "employee@a.example", "password": PASSWORD}
    assert client.post("/console/sign-in", data=data).status_code == 403
    cross = client.post(
        "/console/sign-in",
        data={**data, "csrf_token": csrf_of(page.text)},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    fetch_site = client.post(
        "/console/sign-in",
        data={**data, "csrf_token": csrf_of(page.text)},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert fetch_site.status_code == 403


def test_a_signed_in_form_needs_the_token_of_this_session(world: World, app: FastAPI) -> None:
    client = browser(app)
    sign_in(client, "employee@a.example")
    other = browser(app)
    sign_in(other, "tenant_admin@a.example")
    foreign = csrf_of(other.get("/console/home").text)
    # Another session's token does not sign this one out.
    assert client.post("/console/sign-out", data={"csrf_token": foreign}).status_code == 403
    assert client.get("/console/home").status_code == 200
    mine = csrf_of(client.get("/console/home").text)
    out = client.post("/console/sign-out", data={"csrf_token": mine})
    assert out.status_code == 303
    # The session is revoked on the server, not only forgotten by the browser.
    old = out.request.headers.get("cookie", "")
    assert SESSION_COOKIE in old
    replay = browser(app)
    replay.cookies.set(SESSION_COOKIE, old.split(f"{SESSION_COOKIE}=")[1].split(";")[0])
    assert replay.get("/console/home").status_code == 303


def test_pages_need_a_session_and_come_back_after_sign_in(world: World, app: FastAPI) -> None:
    client = browser(app)
    answer = client.get("/console/home")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/sign-in"
    page = client.get("/console/sign-in?next=/console/home%3Ftab%3D2")
    assert 'name="next" value="/console/home?tab=2"' in page.text
    answer = client.post(
        "/console/sign-in",
        data={
            "csrf_token": csrf_of(page.text),
            "email": "employee@a.example",
            "password": PASSWORD,
            "next": "/console/home?tab=2",
        },
    )
    assert answer.headers["location"] == "/console/home?tab=2"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "/api/v1/tenants",
        "javascript:x",
    ],
)
def test_sign_in_never_redirects_off_the_console(world: World, app: FastAPI, target: str) -> None:
    client = browser(app)
    page = client.get("/console/sign-in")
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
    assert answer.headers["location"] == "/console/home"


# --- languages ---------------------------------------------------------------------------


def test_the_language_follows_the_browser_then_the_persons_choice(
    world: World, app: FastAPI, runtime: Runtime
) -> None:
    client = browser(app)
    page = client.get("/console/sign-in", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert '<html lang="zh-CN">' in page.text
    assert "登录" in page.text
    page = client.get("/console/sign-in", headers={"Accept-Language": "en-GB"})
    assert '<html lang="en">' in page.text
    sign_in(client, "employee@a.example")
    home = client.get("/console/home")
    switched = client.post(
        "/console/language",
        data={"csrf_token": csrf_of(home.text), "language": "zh_CN", "next": "/console/home"},
    )
    assert switched.status_code == 303
    assert switched.headers["location"] == "/console/home"
    # Kept for the person: a new browser (English by default) shows Chinese after sign-in.
    fresh = browser(app)
    sign_in(fresh, "employee@a.example")
    fresh.cookies.delete("tongdao_lang")
    home = fresh.get("/console/home", headers={"Accept-Language": "en"})
    assert '<html lang="zh-CN">' in home.text


def test_an_unknown_page_and_a_bad_id_answer_a_404_page(world: World, app: FastAPI) -> None:
    client = browser(app)
    sign_in(client, "employee@a.example")
    answer = client.get("/console/no-such-page", headers={"Accept-Language": "zh-CN"})
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "未找到" in answer.text
    assert answer.headers["content-security-policy"].startswith("default-src 'self'")
    # The API keeps answering JSON.
    assert client.get("/api/v1/no-such").headers["content-type"] == "application/json"


def test_every_console_message_has_its_zh_cn_translation() -> None:
    from tongdao.web.catalogue import missing

    lacking = missing()
    assert not lacking, "\n".join(f"{m.where}: {m.msgid!r}" for m in lacking)


def test_no_two_catalogue_files_translate_one_message_differently() -> None:
    from tongdao.web.i18n import disagreements

    assert disagreements("zh_CN") == []


def test_a_bug_in_a_page_is_a_console_page_with_its_headers_and_the_traceback_in_the_log(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi import APIRouter

    from tongdao.web.console import ConsoleRoute

    broken = APIRouter(route_class=ConsoleRoute)

    @broken.get("/console/broken-for-this-test")
    def explode() -> None:
        raise RuntimeError("internal detail 1234")

    app.include_router(broken)
    client = TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False)
    answer = client.get("/console/broken-for-this-test", headers={"Accept-Language": "zh-CN"})
    assert answer.status_code == 500
    assert answer.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["cache-control"] == "no-store"
    assert "internal detail 1234" not in answer.text
    assert "服务器出错" in answer.text
    assert "internal detail 1234" in caplog.text


def test_no_console_page_is_in_the_api_schema(app: FastAPI) -> None:
    """Console pages answer HTML for a browser session; the API's OpenAPI document (and the
    schemathesis fuzzing that reads it) lists only the JSON API."""
    paths = app.openapi()["paths"]
    assert [p for p in paths if p.startswith("/console")] == []
