"""Under https the console's cookies carry the ``__Host-`` prefix; under plain http they keep
their names. A browser accepts a ``__Host-`` cookie only with Secure, Path=/ and no Domain, so a
sibling subdomain or a plain-http page of the host cannot plant or overwrite the session or the
pre-session CSRF cookie. Each scheme reads only its own name."""

from __future__ import annotations

from http.cookies import SimpleCookie

from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.support.console import session_secret
from tests.support.world import PASSWORD, World
from tests.web.test_console_frame import csrf_of
from tongdao.web.console import HOST_PREFIX, PRESESSION_COOKIE, SESSION_COOKIE

HOST_SESSION = HOST_PREFIX + SESSION_COOKIE
HOST_PRESESSION = HOST_PREFIX + PRESESSION_COOKIE


def client(app: FastAPI, scheme: str) -> TestClient:
    return TestClient(app, base_url=f"{scheme}://127.0.0.1", follow_redirects=False)


def attributes(header: str) -> tuple[str, dict[str, str]]:
    """A Set-Cookie header's name and its attributes (lower-case keys; flags map to "")."""
    parsed = SimpleCookie()
    parsed.load(header)
    ((name, morsel),) = parsed.items()
    found = {key: str(value) for key, value in morsel.items() if value}
    lowered = header.lower()
    for flag in ("secure", "httponly"):
        if f"; {flag}" in lowered:
            found[flag] = ""
    return name, found


def set_cookies(answer: object, name: str) -> list[dict[str, str]]:
    headers = answer.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    return [attrs for cookie_name, attrs in map(attributes, headers) if cookie_name == name]


def sign_in(http: TestClient) -> object:
    page = http.get("/console/sign-in")
    answer = http.post(
        "/console/sign-in",
        data={
            "csrf_token": csrf_of(page.text),
            "email": "employee@a.example",
            "password": PASSWORD,
        },
    )
    assert answer.status_code == 303, answer.text
    return answer


def test_under_https_both_cookies_carry_the_host_prefix(world: World, app: FastAPI) -> None:
    tls = client(app, "https")
    page = tls.get("/console/sign-in")
    (pre,) = set_cookies(page, HOST_PRESESSION)
    assert "secure" in pre and pre["path"] == "/" and "domain" not in pre
    assert not set_cookies(page, PRESESSION_COOKIE)
    answer = tls.post(
        "/console/sign-in",
        data={
            "csrf_token": csrf_of(page.text),
            "email": "employee@a.example",
            "password": PASSWORD,
        },
    )
    assert answer.status_code == 303, answer.text
    (session,) = set_cookies(answer, HOST_SESSION)
    assert "secure" in session and "httponly" in session
    assert session["path"] == "/" and "domain" not in session
    assert session["samesite"].lower() == "lax"
    assert not set_cookies(answer, SESSION_COOKIE)
    assert tls.get("/console/home").status_code == 200
    # Signing out expires the prefixed cookie with the attributes the prefix demands.
    home = tls.get("/console/home")
    out = tls.post("/console/sign-out", data={"csrf_token": csrf_of(home.text)})
    assert out.status_code == 303
    (gone,) = set_cookies(out, HOST_SESSION)
    assert "secure" in gone and gone["path"] == "/" and gone.get("max-age") == "0"


def test_under_plain_http_the_names_stay_as_they_were(world: World, app: FastAPI) -> None:
    plain = client(app, "http")
    page = plain.get("/console/sign-in")
    (pre,) = set_cookies(page, PRESESSION_COOKIE)
    assert "secure" not in pre and pre["path"] == "/console"
    answer = sign_in(plain)
    (session,) = set_cookies(answer, SESSION_COOKIE)
    assert "secure" not in session and session["path"] == "/"
    assert not set_cookies(answer, HOST_SESSION)
    assert plain.get("/console/home").status_code == 200


def test_each_scheme_reads_only_its_own_cookie_names(world: World, app: FastAPI) -> None:
    secret = session_secret(world.runtime, world.a.employee.user_id)
    signed_in = {"https": HOST_SESSION, "http": SESSION_COOKIE}
    for scheme, own in signed_in.items():
        other = SESSION_COOKIE if own == HOST_SESSION else HOST_SESSION
        # The other scheme's name is no session here: sent to sign in.
        stray = client(app, scheme)
        home = stray.get("/console/home", headers={"Cookie": f"{other}={secret}"})
        assert home.status_code == 303 and "/console/sign-in" in home.headers["location"]
        mine = client(app, scheme)
        home = mine.get("/console/home", headers={"Cookie": f"{own}={secret}"})
        assert home.status_code == 200, (scheme, home.headers)
    # A pre-session cookie under the plain-http name does not carry a sign-in over https.
    plain = client(app, "http")
    page = plain.get("/console/sign-in")
    presession = plain.cookies[PRESESSION_COOKIE]
    tls = client(app, "https")
    form = {"csrf_token": csrf_of(page.text), "email": "employee@a.example", "password": PASSWORD}
    refused = tls.post(
        "/console/sign-in", data=form, headers={"Cookie": f"{PRESESSION_COOKIE}={presession}"}
    )
    assert refused.status_code == 403
    accepted = tls.post(
        "/console/sign-in", data=form, headers={"Cookie": f"{HOST_PRESESSION}={presession}"}
    )
    assert accepted.status_code == 303
