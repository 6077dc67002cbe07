"""The console's frame: templates, the signed-in person from a cookie, CSRF, forms and errors.

Every page is rendered on the server by Jinja2 from the same domain services the API calls, so
a rule refused in the API is refused in the page with the same field-keyed message, shown next
to the field (translated when the catalogue has it).

Sessions
    Signing in issues the same session credential as ``POST /api/v1/auth/login``; its secret
    travels only in an HttpOnly, SameSite=Lax cookie (Secure under TLS). Lax, not Strict, so
    that a sign-in through a customer's identity provider can land on a console page. The API
    never reads this cookie: it stays bearer-only, so no cross-site form can reach it.
CSRF
    Every state-changing form carries ``csrf_token`` = HMAC(key, the session secret) (before
    sign-in: HMAC of a random pre-session cookie), and a request whose ``Origin`` or
    ``Sec-Fetch-Site`` says it came from another site is refused whatever it carries. htmx
    requests send the token in ``X-CSRF-Token`` (``hx-headers`` on the page's ``<body>``).
Errors
    :class:`ConsoleRoute` turns domain errors raised in a page into pages: not found (404, the
    same for another tenant's object), not allowed (403), signed out (303 to the sign-in page
    with ``next``), throttled (429), store unreachable (503).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, urlsplit

import jinja2
import jinja2.runtime
from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from markupsafe import Markup
from pydantic import BaseModel
from pydantic import ValidationError as PydanticError
from sqlalchemy import exc as sa_exc
from sqlalchemy import select

from tongdao import messages
from tongdao.api.deps import AnonCtxDep, adopt, read_apart, reads_apart
from tongdao.api.errors import validation_fields
from tongdao.audit.recorder import Actor, set_actor
from tongdao.auth.permissions import Action, Role
from tongdao.auth.principal import Principal
from tongdao.auth.second_factor import ENROL_FIRST, EnrolmentRequired, enrolment_allowed
from tongdao.auth.service import authenticate_token
from tongdao.errors import (
    AuthenticationError,
    DomainError,
    NotFound,
    PermissionDenied,
    Throttled,
    Unavailable,
    ValidationError,
)
from tongdao.runtime import Ctx
from tongdao.store import outage
from tongdao.tenancy.models import Tenant, User
from tongdao.web import i18n
from tongdao.web.i18n import N_, Locale
from tongdao.web.routes import SECURITY_HEADERS

log = logging.getLogger("tongdao.console")

# The cookies' names under plain http; under https they carry the ``__Host-`` prefix (see
# session_cookie_name).
SESSION_COOKIE = "tongdao_session"
PRESESSION_COOKIE = "tongdao_presession"
HOST_PREFIX = "__Host-"
LANGUAGE_COOKIE = "tongdao_lang"
CSRF_FIELD = "csrf_token"
ENROL_PAGE = "/console/account/keys?enrol=1"
CSRF_HEADER = "x-csrf-token"
MAX_FORM_BYTES = 256 * 1024
MAX_FORM_FIELDS = 500
MAX_FIELD_CHARS = 20_000
PAGE_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "no-store"}

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("tongdao.web", "templates"),
    autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
    extensions=["jinja2.ext.i18n"],
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.policies["ext.i18n.trimmed"] = True
# Translations differ per request: pages pass gettext/ngettext in their context, which the
# i18n extension prefers; these globals only keep templates renderable outside a request.
_ENV.install_null_translations(newstyle=True)  # type: ignore[attr-defined]


def environment() -> jinja2.Environment:
    return _ENV


# --- navigation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class NavItem:
    path: str
    label: str  # an English msgid, translated when the menu is drawn
    roles: frozenset[Role]


def navigation(principal: Principal | None) -> list[NavItem]:
    """The menu of this person: every area's ``NAV`` entries their roles may open."""
    from tongdao.web.pages import navigation_items

    if principal is None:
        return []
    return [item for item in navigation_items() if item.roles & principal.roles]


# --- CSRF ----------------------------------------------------------------------------------


def _csrf_key(ctx: Ctx) -> bytes:
    settings = ctx.runtime.settings
    return hmac.new(
        settings.data_keys[settings.data_key_id], b"tongdao console csrf v1", hashlib.sha256
    ).digest()


def csrf_token(ctx: Ctx, binding: str) -> str:
    digest = hmac.new(_csrf_key(ctx), binding.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class CsrfRefused(DomainError):
    status_code = 403
    code = "csrf_refused"


def _same_site(request: Request) -> bool:
    """Whether the browser says the request came from one of this origin's pages.

    ``Sec-Fetch-Site`` decides when sent (every current browser does). Otherwise ``Origin``
    must be this host, except ``null``: under this console's ``Referrer-Policy: no-referrer``
    browsers send ``Origin: null`` with form posts, so it says nothing either way (the token
    still must match).
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site in {"same-origin", "none"}
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return True
    parsed = urlsplit(origin)
    return parsed.netloc == request.headers.get("host", "") and parsed.scheme in {
        "http",
        "https",
    }


# --- the request's view ------------------------------------------------------------------


@dataclass
class View:
    """What a page needs about its request: store, caller, language, CSRF binding."""

    request: Request
    ctx: Ctx
    locale: Locale
    principal: Principal | None = None
    user: User | None = None
    tenant: Tenant | None = None
    binding: str = ""
    new_presession: str | None = None
    language_cookie: str | None = None
    extra_cookies: list[tuple[str, str, int | None]] = field(default_factory=list)

    @property
    def csrf(self) -> str:
        return csrf_token(self.ctx, self.binding)

    def _(self, message: str, **values: object) -> str:
        return self.locale._(message, **values)

    def require_principal(self) -> Principal:
        if self.principal is None:
            raise AuthenticationError("authentication required")
        return self.principal

    def can(self, resource: str, action: Action = Action.READ) -> bool:
        return self.principal is not None and self.principal.can(resource, action)

    def has_role(self, *roles: Role) -> bool:
        return self.principal is not None and bool(self.principal.roles & set(roles))


def _secure(request: Request) -> bool:
    """Whether this request came over https: on the connection, or as a trusted proxy says
    (``X-Forwarded-Proto`` is believed only from ``TONGDAO_TRUSTED_PROXIES``: uvicorn rewrites
    the scheme for those alone)."""
    return request.url.scheme == "https"


def session_cookie_name(request: Request) -> str:
    """``__Host-tongdao_session`` under https, ``tongdao_session`` under plain http.

    The ``__Host-`` prefix makes the browser accept the cookie only with Secure, Path=/ and
    no Domain, so neither a sibling subdomain nor a plain-http page of this host can plant or
    overwrite it. Only the name of the request's own scheme is read: a cookie planted under
    the other name is ignored.
    """
    return HOST_PREFIX + SESSION_COOKIE if _secure(request) else SESSION_COOKIE


def presession_cookie_name(request: Request) -> str:
    """The pre-session CSRF cookie's name, prefixed under https as the session's is."""
    return HOST_PREFIX + PRESESSION_COOKIE if _secure(request) else PRESESSION_COOKIE


def set_session_cookie(response: Response, request: Request, secret: str, max_age: int) -> None:
    response.set_cookie(
        session_cookie_name(request),
        secret,
        max_age=max_age,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )


def delete_session_cookie(response: Response, request: Request) -> None:
    secure = _secure(request)
    # A __Host- cookie is only replaced (here: expired) by one that is Secure too.
    response.delete_cookie(
        session_cookie_name(request), path="/", secure=secure, httponly=True, samesite="lax"
    )


def _language_of(request: Request, user: User | None) -> str:
    return i18n.negotiate(
        user.language if user is not None else None,
        request.cookies.get(LANGUAGE_COOKIE),
        accept_language=request.headers.get("accept-language", ""),
    )


def _anonymous_view(request: Request, ctx: Ctx) -> View:
    presession = request.cookies.get(presession_cookie_name(request), "")
    new = None
    if not (20 <= len(presession) <= 100):
        presession = new = secrets.token_urlsafe(32)
    return View(
        request=request,
        ctx=ctx,
        locale=Locale(_language_of(request, None)),
        binding="pre:" + presession,
        new_presession=new,
    )


def get_view(request: Request, ctx: AnonCtxDep) -> View:
    """A page anyone may open (sign-in, first-run setup): signed-in state if there is one."""
    secret = request.cookies.get(session_cookie_name(request))
    if secret:
        try:
            return _signed_in_view(request, ctx, secret)
        except AuthenticationError:
            pass
    return _anonymous_view(request, ctx)


def _signed_in_view(request: Request, ctx: Ctx, secret: str) -> View:
    if reads_apart(request, ctx):  # an SQLite write: see reads_apart
        with read_apart(ctx) as check:
            principal, user, tenant = _who(check, secret)
            user = adopt(ctx, check, user) if user is not None else None
            tenant = adopt(ctx, check, tenant) if tenant is not None else None
    else:
        principal, user, tenant = _who(ctx, secret)
    if principal.enrolment_only and not enrolment_allowed(request.url.path):
        raise EnrolmentRequired(ENROL_FIRST)
    ctx.principal = principal
    set_actor(ctx.session, Actor(principal.user_id, principal.email, ctx.source_ip))
    locale = Locale(_language_of(request, user))
    ctx.language = locale.language  # what this person's actions write to others in (mail)
    return View(
        request=request,
        ctx=ctx,
        locale=locale,
        principal=principal,
        user=user,
        tenant=tenant,
        binding="session:" + hashlib.sha256(secret.encode()).hexdigest(),
    )


def _who(ctx: Ctx, secret: str) -> tuple[Principal, User | None, Tenant | None]:
    principal = authenticate_token(ctx, secret)
    user = ctx.session.get(User, principal.user_id)
    tenant = ctx.session.get(Tenant, principal.tenant_id) if principal.tenant_id else None
    return principal, user, tenant


def get_user_view(request: Request, ctx: AnonCtxDep) -> View:
    """A page for signed-in people: anyone else is sent to the sign-in page."""
    secret = request.cookies.get(session_cookie_name(request))
    if not secret:
        raise AuthenticationError("authentication required")
    return _signed_in_view(request, ctx, secret)


ViewDep = Annotated[View, Depends(get_view)]
UserViewDep = Annotated[View, Depends(get_user_view)]


# --- forms ---------------------------------------------------------------------------------


class Form:
    """A posted ``application/x-www-form-urlencoded`` body (repeated names kept in order)."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = list(pairs)

    def get(self, name: str, default: str = "") -> str:
        for key, value in self.pairs:
            if key == name:
                return value
        return default

    def text(self, name: str) -> str:
        return self.get(name).strip()

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]

    def optional(self, name: str) -> str | None:
        value = self.text(name)
        return value or None

    def __contains__(self, name: str) -> bool:
        return any(key == name for key, _ in self.pairs)


async def read_form(request: Request) -> Form:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ValidationError({"form": "the form is too large"})
    text = body.decode("utf-8", errors="replace")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except ValueError as exc:
        raise ValidationError({"form": "the form has too many fields"}) from exc
    return Form([(key, value[:MAX_FIELD_CHARS]) for key, value in pairs])


def check_csrf(view: View, form: Form | None = None) -> None:
    """Refuse a state change that did not come from one of our own pages."""
    sent = view.request.headers.get(CSRF_HEADER) or (form.get(CSRF_FIELD) if form else "")
    if not _same_site(view.request) or not sent or not hmac.compare_digest(sent, view.csrf):
        raise CsrfRefused("the form is out of date or did not come from this console; reload it")


def check_same_site(view: View) -> None:
    """Refuse a post that the browser says came from another site (for the few forms that
    carry no token: a mailed link's secret is their credential)."""
    if not _same_site(view.request):
        raise CsrfRefused("the form is out of date or did not come from this console; reload it")


async def _posted_form(request: Request) -> Form:
    return await read_form(request)


FormDep = Annotated[Form, Depends(_posted_form)]


def parse(schema: type[BaseModel], data: Mapping[str, Any]) -> Any:
    """Validate form data with the API's own schema: its refusals, keyed by field."""
    try:
        return schema.model_validate(data)
    except PydanticError as exc:
        raise ValidationError(validation_fields(exc.errors(include_url=False))) from exc


def field_errors(view: View, exc: ValidationError) -> dict[str, str]:
    """A refusal's messages, translated where the catalogue has them."""
    return {key: translate_message(view.locale, text) for key, text in exc.fields.items()}


def translate_message(locale: Locale, text: str) -> str:
    """A service's refusal in the person's language (see :mod:`tongdao.messages`)."""
    return messages.translate(text, locale.language)


def done_notice(view: View, done: str, known: Mapping[str, str]) -> str:
    """The translated notice for a known ``?done=`` key after a redirect; never text from the
    query string itself."""
    return view.locale.gettext(known[done]) if done in known else ""


def tenant_options(view: View, *, limit: int = 500) -> list[tuple[str, str]]:
    """(id, name in the person's language) of tenants, for an operator's tenant picker; none
    for a tenant's own people (they see their tenant only)."""
    if view.principal is None or not view.principal.is_operator:
        return []
    rows = view.ctx.session.execute(
        select(Tenant.id, Tenant.name_en, Tenant.name_zh).order_by(Tenant.name_en).limit(limit)
    )
    return [(str(tid), view.locale.pick(en, zh)) for tid, en, zh in rows]


def parse_uuid(value: str, what: str = "object") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFound(f"{what} not found") from exc


# --- rendering -----------------------------------------------------------------------------


def template_gettext(locale: Locale) -> tuple[Callable[..., str], Callable[..., str]]:
    """gettext/ngettext for templates, as Jinja's newstyle gettext behaves: the translation
    is markup and the values put into it are escaped; ``%%`` is a literal percent sign."""

    @jinja2.pass_context
    def gettext(context: jinja2.runtime.Context, message: str, **variables: Any) -> str:
        text = locale.gettext(message)
        if context.eval_ctx.autoescape:
            text = Markup(text)  # noqa: S704 - our own catalogue's text; the values are escaped
        return text % variables

    @jinja2.pass_context
    def ngettext(
        context: jinja2.runtime.Context, singular: str, plural: str, num: int, **variables: Any
    ) -> str:
        variables.setdefault("num", num)
        text = locale.ngettext(singular, plural, num)
        if context.eval_ctx.autoescape:
            text = Markup(text)  # noqa: S704 - our own catalogue's text; the values are escaped
        return text % variables

    return gettext, ngettext


def render(
    view: View,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    title: str = "",
) -> HTMLResponse:
    locale = view.locale
    gettext, ngettext = template_gettext(locale)
    values: dict[str, Any] = {
        "view": view,
        "locale": locale,
        "gettext": gettext,
        "ngettext": ngettext,
        "_": gettext,
        "languages": i18n.LANGUAGES,
        "nav": navigation(view.principal),
        "current_path": view.request.url.path,
        "csrf": view.csrf,
        "title": title,
        "errors": {},
        "notice": "",
    }
    values.update(context or {})
    html = _ENV.get_template(template).render(values)
    response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
    finish(view, response)
    return response


def finish(view: View, response: Response) -> Response:
    """Set the cookies this request decided on."""
    secure = _secure(view.request)
    if view.new_presession:
        response.set_cookie(
            presession_cookie_name(view.request),
            view.new_presession,
            httponly=True,
            samesite="lax",
            secure=secure,
            # __Host- requires Path=/; under plain http it stays within the console.
            path="/" if secure else "/console",
        )
    if view.language_cookie:
        response.set_cookie(
            LANGUAGE_COOKIE,
            view.language_cookie,
            max_age=365 * 24 * 3600,
            httponly=True,
            samesite="lax",
            secure=secure,
            path="/",
        )
    for name, value, max_age in view.extra_cookies:
        response.set_cookie(
            name, value, max_age=max_age, httponly=True, samesite="lax", secure=secure, path="/"
        )
    return response


def redirect(view: View | None, location: str) -> Response:
    """303 See Other after a successful post (so reload does not post again)."""
    response = RedirectResponse(location, status_code=303, headers=PAGE_HEADERS)
    if view is not None:
        finish(view, response)
    return response


def safe_next(target: str | None, default: str = "/console/home") -> str:
    """Only a path inside the console: never another site (open redirect)."""
    if not target or not target.startswith("/console/") or target.startswith("//"):
        return default
    if "\\" in target or any(ord(ch) < 0x20 for ch in target):
        return default
    return target


# --- errors as pages -----------------------------------------------------------------------


def _error_locale(request: Request) -> Locale:
    return Locale(
        i18n.negotiate(
            request.cookies.get(LANGUAGE_COOKIE),
            accept_language=request.headers.get("accept-language", ""),
        )
    )


def _error_page(
    request: Request, ctx: Ctx | None, status: int, message: str, *, translated: bool = False
) -> Response:
    locale = _error_locale(request)
    headings = {
        403: N_("Not allowed"),
        404: N_("Not found"),
        429: N_("Try again later"),
        503: N_("Temporarily unavailable"),
    }
    heading = headings.get(status, N_("Something went wrong"))
    gettext, ngettext = template_gettext(locale)
    values = {
        "locale": locale,
        "gettext": gettext,
        "ngettext": ngettext,
        "_": gettext,
        "heading": locale.gettext(heading),
        "message": message if translated else translate_message(locale, message),
        "status": status,
        "languages": i18n.LANGUAGES,
    }
    html = _ENV.get_template("error.html").render(values)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def _sign_in_redirect(request: Request) -> Response:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    target = "/console/sign-in"
    if request.method == "GET" and path not in {"/console/home", "/console/"}:
        target += "?next=" + quote(path, safe="/")
    response = RedirectResponse(target, status_code=303, headers=PAGE_HEADERS)
    if request.cookies.get(session_cookie_name(request)):
        delete_session_cookie(response, request)
    return response


class ConsoleRoute(APIRoute):
    """An APIRoute whose domain errors become console pages instead of JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except AuthenticationError:
                return _sign_in_redirect(request)
            except EnrolmentRequired:
                # A staff member the operator requires a second factor of, who has none yet.
                return RedirectResponse(
                    ENROL_PAGE, status_code=303, headers={"Cache-Control": "no-store"}
                )
            except RequestValidationError as exc:
                # A query or path the page's signature refuses (a too long ?next=, a bad
                # ?token=): a page with the console's headers, not the API's JSON.
                fields = validation_fields(exc.errors())
                locale = _error_locale(request)
                message = messages.fields_message(
                    {key: translate_message(locale, text) for key, text in fields.items()},
                    locale.language,
                )
                return _error_page(request, None, 422, message, translated=True)
            except NotFound as exc:
                return _error_page(request, None, 404, exc.message)
            except CsrfRefused as exc:
                return _error_page(request, None, 403, exc.message)
            except PermissionDenied as exc:
                return _error_page(request, None, 403, exc.message)
            except Throttled as exc:
                response = _error_page(request, None, 429, exc.message)
                response.headers["Retry-After"] = str(exc.retry_after)
                return response
            except Unavailable as exc:
                response = _error_page(request, None, 503, exc.message)
                response.headers["Retry-After"] = str(exc.retry_after)
                return response
            except (sa_exc.DBAPIError, sa_exc.TimeoutError) as exc:
                kind = outage.unreachable_kind(exc)
                if kind is None:
                    raise
                outage.STORE_LOG.warning(kind, str(exc))
                response = _error_page(
                    request, None, 503, "the store is unreachable for now; retry later"
                )
                response.headers["Retry-After"] = str(outage.RETRY_AFTER_SECONDS)
                return response
            except ValidationError as exc:
                # A page that meant to show a refusal next to its field catches it itself;
                # one that reaches here is a bad link or a tampered form.
                return _error_page(request, None, 422, exc.message)
            except DomainError as exc:
                return _error_page(request, None, exc.status_code, exc.message)
            except Exception:
                # A bug: the traceback goes to the log, the person gets a page with the
                # console's headers (CSP, no-store) that says nothing about the internals.
                log.exception("console page %s %s failed", request.method, request.url.path)
                return _error_page(request, None, 500, "the server failed; the failure is logged")

        return console_handler


def not_found_page(request: Request) -> Response:
    return _error_page(request, None, 404, "no such page")
