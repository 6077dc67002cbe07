"""Signing in through a tenant's OpenID Provider: the authorization-code flow with PKCE,
``state`` and ``nonce``, and the ID token checked before anyone is let in.

* Discovery and the JWKS come from the provider and are kept per issuer in this process; an
  ID token signed under a ``kid`` the cached JWKS lacks makes one fresh fetch (the provider
  rotated its keys). Signatures and claims are checked with joserfc (Authlib's JOSE library);
  the authorization URL and the code exchange use Authlib's OAuth 2 client.
* ``state`` is stored hashed with a hash of a secret kept in the browser's cookie (a sign-in
  finishes only in the browser that began it), expires after ``LOGIN_TTL`` and is spent by a
  conditional update, so a replayed callback is refused even when two race.
* The ID token must carry this provider's issuer, this client as audience (``azp`` when there
  are several), an ``exp`` in the future, an ``iat``, and the nonce of this sign-in.
* Who gets in: an identity already linked (issuer + subject) to a user of the provider's
  tenant; else, at first sign-in, the user of that tenant with the e-mail the provider
  vouches for (``email_verified``, or Entra ID's ``xms_edov``), in a domain the tenant has an
  approved claim to and the provider allows; else a new employee when the tenant allows
  just-in-time creation. A disabled user, a terminated tenant, a user of another tenant and
  anyone the provider refuses are refused; the audit log says why.
* Signing in through SSO does not verify real identity: the resident-ID rules still apply.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import httpx2
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry
from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import delete, select, update

from tongdao import validation
from tongdao.audit.recorder import Actor, record, set_actor
from tongdao.auth.models import ApiToken
from tongdao.auth.permissions import Role
from tongdao.auth.principal import ALL_SCOPES
from tongdao.auth.service import issue_token
from tongdao.errors import AuthenticationError, DomainError
from tongdao.runtime import Ctx
from tongdao.schemas import Email
from tongdao.sso.models import EmailTrust, SsoIdentity, SsoLogin, SsoProvider
from tongdao.sso.service import SECRET_PURPOSE, approved_domains, internal_address
from tongdao.store.rows import rows_updated
from tongdao.tenancy.models import Group, GroupMember, Tenant, TenantState, User, UserState

LOGIN_TTL = timedelta(minutes=10)
LEEWAY_SECONDS = 60
METADATA_MAX_AGE = 3600.0
HTTP_TIMEOUT = 10.0
HTTP_DEADLINE = 15.0  # a whole discovery or JWKS answer, however slowly it drips
MAX_DOCUMENT = 256 * 1024  # bytes of a discovery document or JWKS
VERIFIER_PURPOSE = "sso.pkce_verifier"
SUBJECT_MAX = 255  # sso_identities.subject
EMAIL = TypeAdapter(Email)
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")


class ProviderUnavailable(DomainError):
    """The provider's discovery, keys or token endpoint did not answer usably."""

    status_code = 502
    code = "identity_provider_unavailable"


class SsoRefused(AuthenticationError):
    """A sign-in through the provider is refused; ``reason`` is what the audit log says."""

    def __init__(self, reason: str) -> None:
        super().__init__("single sign-on was refused")
        self.reason = reason


@dataclass
class _Issuer:
    metadata: dict[str, Any]
    fetched_at: float
    jwks: dict[str, Any] | None = None


class Discovery:
    """Per-issuer metadata and JWKS, fetched from the provider and kept in this process."""

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        resolve: Callable[[str], list[str]] | None = None,
    ) -> None:
        self._issuers: dict[str, _Issuer] = {}
        self._lock = threading.Lock()
        self.transport = transport
        self.resolve = resolve or resolve_host
        self.jwks_fetches = 0

    def _get(self, url: str, issuer: str) -> dict[str, Any]:
        check_endpoint(url, issuer, self.resolve)
        deadline = time.monotonic() + HTTP_DEADLINE
        try:
            with (
                httpx.Client(timeout=HTTP_TIMEOUT, transport=self.transport) as client,
                client.stream("GET", url, headers={"Accept": "application/json"}) as response,
            ):
                response.raise_for_status()
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT or time.monotonic() > deadline:
                        raise ProviderUnavailable("the identity provider's answer is too big")
                document = json.loads(bytes(body))
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderUnavailable("the identity provider did not answer") from exc
        if not isinstance(document, dict):
            raise ProviderUnavailable("the identity provider did not answer")
        return document

    def metadata(self, issuer: str) -> dict[str, Any]:
        with self._lock:
            known = self._issuers.get(issuer)
        if known is not None and time.monotonic() - known.fetched_at < METADATA_MAX_AGE:
            return known.metadata
        metadata = self._get(f"{issuer}/.well-known/openid-configuration", issuer)
        if metadata.get("issuer") != issuer:
            raise ProviderUnavailable("the identity provider names another issuer")
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(metadata.get(key), str):
                raise ProviderUnavailable("the identity provider's discovery is incomplete")
            check_endpoint(metadata[key], issuer, None)
        with self._lock:
            self._issuers[issuer] = _Issuer(metadata, time.monotonic())
        return metadata

    def keys(self, issuer: str, *, refresh: bool = False) -> KeySet:
        metadata = self.metadata(issuer)
        with self._lock:
            known = self._issuers[issuer]
            jwks = known.jwks
        if jwks is None or refresh:
            jwks = self._get(metadata["jwks_uri"], issuer)
            self.jwks_fetches += 1
            with self._lock:
                known.jwks = jwks
        try:
            return KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        except (JoseError, ValueError, KeyError, TypeError) as exc:
            raise ProviderUnavailable("the identity provider's keys are unusable") from exc

    def forget(self) -> None:
        with self._lock:
            self._issuers.clear()


def resolve_host(host: str) -> list[str]:
    """The addresses ``host`` resolves to (an address resolves to itself)."""
    try:
        return [str(info[4][0]) for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)]
    except (OSError, UnicodeError) as exc:
        raise ProviderUnavailable("the identity provider's host name does not resolve") from exc


def _loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_endpoint(url: str, issuer: str, resolve: Callable[[str], list[str]] | None) -> None:
    """Tongdao only talks to a provider on the public Internet, over https: an endpoint the
    discovery names (or the issuer itself) must be ``https`` to a host that is not (and, with
    ``resolve``, does not resolve to) a private, link-local, reserved or loopback address; a
    provider on this machine (an ``http`` issuer on a loopback host, as the issuer rule allows)
    may use loopback endpoints only. Otherwise a tenant's provider could make Tongdao fetch
    from the operator's own network (SSRF) or send a browser to a ``javascript:`` URL."""
    parts = urlsplit(url)
    local = _loopback_host(urlsplit(issuer).hostname or "")
    host = parts.hostname or ""
    if local:
        if parts.scheme in ("http", "https") and _loopback_host(host):
            return
        raise ProviderUnavailable("a provider on this machine must keep its endpoints there")
    if parts.scheme != "https" or not host or parts.username or parts.password:
        raise ProviderUnavailable("the identity provider names an endpoint that is not https")
    addresses = [host] if resolve is None else resolve(host)
    if any(internal_address(address) for address in addresses):
        raise ProviderUnavailable("the identity provider names an internal address")


DISCOVERY = Discovery()


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _scope(metadata: dict[str, Any], provider: SsoProvider) -> str:
    """``openid email profile``, and ``groups`` when groups are read from the token: Okta
    and most providers send the groups claim for that scope; Microsoft Entra ID sends it as
    its app registration's token configuration says, and knows no such scope."""
    scopes = ["openid", "email", "profile"]
    supported = metadata.get("scopes_supported") or []
    entra = provider.email_trust == EmailTrust.ENTRA_EDOV
    if provider.groups_claim and ("groups" in supported or not entra):
        scopes.append("groups")
    return " ".join(scopes)


@dataclass(frozen=True)
class Started:
    authorization_url: str
    browser_secret: str  # goes into the browser's cookie; only its hash is stored


def check_loopback(uri: str) -> str:
    """A command-line client's redirect URI (RFC 8252 section 7.3): ``http`` to 127.0.0.1 or
    [::1] with a port, no query, fragment or user; ValueError otherwise."""
    parts = urlsplit(uri)
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError("must be http://127.0.0.1:<port>/<path>") from exc
    if (
        parts.scheme != "http"
        or parts.hostname not in ("127.0.0.1", "::1")
        or port is None
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
        or len(uri) > 200
    ):
        raise ValueError("must be http://127.0.0.1:<port>/<path>")
    return uri


def begin(
    ctx: Ctx,
    provider: SsoProvider,
    redirect_uri: str,
    *,
    cli_redirect: str | None = None,
    binding_challenge: str | None = None,
    source_ip: str | None = None,
) -> Started:
    """A new sign-in at ``provider``: the URL to send the browser to, and the browser's
    secret that binds the sign-in to it. A command-line client brings its own binding (the
    SHA-256 of a secret it keeps, ``binding_challenge``) and its loopback ``cli_redirect``;
    then no browser secret is made. ``source_ip``: the address that began it, as the begin
    throttle counts it (:func:`tongdao.sso.throttle.check_begin`)."""
    metadata = DISCOVERY.metadata(provider.issuer)
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    browser = "" if binding_challenge else secrets.token_urlsafe(32)
    with OAuth2Client(
        client_id=provider.client_id,
        scope=_scope(metadata, provider),
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    ) as oauth:
        url, _ = oauth.create_authorization_url(
            metadata["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
        )
    now = ctx.runtime.clock()
    # Sign-ins long expired are of no use, not even to say why a late callback is refused:
    # without this, anyone could grow the table without end (begin needs no account).
    ctx.session.execute(delete(SsoLogin).where(SsoLogin.expires_at < now - LOGIN_TTL))
    ctx.session.add(
        SsoLogin(
            provider_id=provider.id,
            state_hash=_hash(state),
            browser_hash=binding_challenge.lower() if binding_challenge else _hash(browser),
            cli_redirect=cli_redirect,
            nonce=nonce,
            verifier_sealed=ctx.runtime.cipher.seal(verifier, VERIFIER_PURPOSE),
            redirect_uri=redirect_uri,
            expires_at=now + LOGIN_TTL,
            source_ip=source_ip,
        )
    )
    ctx.session.flush()
    return Started(str(url), browser)


def cli_hand_on(ctx: Ctx, state: str, code: str, error: str) -> str | None:
    """For a command-line sign-in, where the console's callback sends the browser on: the
    CLI's loopback URI with the provider's answer (the CLI finishes the sign-in itself, with
    its secret); None for a console sign-in."""
    target = ctx.session.scalar(
        select(SsoLogin.cli_redirect).where(SsoLogin.state_hash == _hash(state))
    )
    if not target:
        return None
    query = {
        "state": state,
        **({"code": code} if code else {}),
        **({"error": error} if error else {}),
    }
    return f"{target}?{urlencode(query)}"


def _spend(ctx: Ctx, state: str, browser_secret: str) -> SsoLogin:
    """The sign-in this ``state`` belongs to, spent now; refused when unknown, of another
    browser, expired or already spent."""
    login = ctx.session.scalar(select(SsoLogin).where(SsoLogin.state_hash == _hash(state)))
    if login is None:
        raise SsoRefused("unknown state")
    if not browser_secret or not hmac.compare_digest(login.browser_hash, _hash(browser_secret)):
        raise SsoRefused("the sign-in was begun in another browser")
    now = ctx.runtime.clock()
    spent = rows_updated(
        ctx.session,
        update(SsoLogin)
        .where(SsoLogin.id == login.id, SsoLogin.used_at.is_(None))
        .values(used_at=now),
    )
    if spent != 1:
        raise SsoRefused("the state was used already (replay)")
    expires = login.expires_at
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=now.tzinfo)
    if expires <= now:
        raise SsoRefused("the sign-in took too long (state expired)")
    return login


def _exchange(ctx: Ctx, provider: SsoProvider, login: SsoLogin, code: str) -> dict[str, Any]:
    metadata = DISCOVERY.metadata(provider.issuer)
    methods = metadata.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    method = "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
    verifier = ctx.runtime.cipher.open(login.verifier_sealed, VERIFIER_PURPOSE)
    check_endpoint(metadata["token_endpoint"], provider.issuer, DISCOVERY.resolve)
    try:
        with OAuth2Client(
            client_id=provider.client_id,
            client_secret=ctx.runtime.cipher.open(provider.client_secret_sealed, SECRET_PURPOSE),
            redirect_uri=login.redirect_uri,
            token_endpoint_auth_method=method,
            timeout=HTTP_TIMEOUT,
        ) as oauth:
            token: dict[str, Any] = dict(
                oauth.fetch_token(
                    metadata["token_endpoint"],
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=verifier,
                )
            )
    except OAuthError as exc:
        raise SsoRefused(f"the provider refused the code ({exc.error})") from exc
    except (httpx2.HTTPError, httpx.HTTPError, ValueError) as exc:  # Authlib's client is httpx2
        raise ProviderUnavailable("the identity provider did not answer") from exc
    if not isinstance(token.get("id_token"), str):
        raise SsoRefused("the provider sent no ID token")
    return token


def validate_id_token(
    provider: SsoProvider, id_token: str, nonce: str, *, now: int | None = None
) -> dict[str, Any]:
    """The ID token's claims, once its signature (a key of the provider's JWKS, fetched
    again once for an unknown ``kid``) and its ``iss``, ``aud``, ``azp``, ``exp``, ``iat``,
    ``sub`` and ``nonce`` are right; SsoRefused otherwise."""
    metadata = DISCOVERY.metadata(provider.issuer)
    offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = [a for a in offered if a in ALGORITHMS] or ["RS256"]
    registry = JWSRegistry(algorithms=algorithms, strict_check_header=False)
    try:
        try:
            token = jwt.decode(id_token, DISCOVERY.keys(provider.issuer), registry=registry)
        except InvalidKeyIdError:  # signed under a key we have not seen: rotation
            token = jwt.decode(
                id_token, DISCOVERY.keys(provider.issuer, refresh=True), registry=registry
            )
    except InvalidKeyIdError as exc:
        raise SsoRefused("the ID token is signed by a key the provider does not publish") from exc
    except BadSignatureError as exc:
        raise SsoRefused("the ID token's signature is wrong") from exc
    except (JoseError, ValueError) as exc:
        raise SsoRefused(f"the ID token is malformed ({exc})") from exc
    claims = dict(token.claims)
    checks = jwt.JWTClaimsRegistry(
        now=now if now is not None else int(time.time()),
        leeway=LEEWAY_SECONDS,
        iss={"essential": True, "value": provider.issuer},
        aud={"essential": True, "value": provider.client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        checks.validate(claims)
    except ExpiredTokenError as exc:
        raise SsoRefused("the ID token has expired") from exc
    except (InvalidClaimError, MissingClaimError) as exc:
        raise SsoRefused(f"the ID token's claim is wrong ({exc.description})") from exc
    except JoseError as exc:
        raise SsoRefused(f"the ID token is not valid ({exc})") from exc
    subject = claims["sub"]
    if (
        not isinstance(subject, str)
        or not 1 <= len(subject) <= SUBJECT_MAX
        or not subject.isprintable()
    ):
        raise SsoRefused("the ID token's claim is wrong (sub: not 1 to 255 printable characters)")
    audience = claims["aud"]
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != provider.client_id:
        raise SsoRefused("the ID token's claim is wrong (azp)")
    return claims


def trusted_email(provider: SsoProvider, claims: dict[str, Any]) -> str | None:
    """The e-mail address the provider vouches for, normalised, or None; SsoRefused when it
    vouches for something Tongdao would not take as an address (too long, two ``@``, a
    mixed-script look-alike: the checks of :data:`tongdao.schemas.Email`).

    OpenID Connect providers say so with ``email_verified: true``. Microsoft Entra ID sends
    no ``email_verified``; its optional ``xms_edov`` claim ("email domain owner verified")
    is true when the address's domain is verified by the directory's owner, which is what it
    documents for this purpose (add ``email`` and ``xms_edov`` as optional ID token claims).
    """
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email:
        return None
    if provider.email_trust == EmailTrust.ENTRA_EDOV:
        vouched = claims.get("xms_edov") in (True, "true", "1", 1)
    else:
        vouched = claims.get("email_verified") in (True, "true")
    if not vouched:
        return None
    try:
        return EMAIL.validate_python(validation.normalise_email(email))
    except PydanticValidationError as exc:
        raise SsoRefused("the ID token's e-mail address is not a usable address") from exc


def _groups(provider: SsoProvider, claims: dict[str, Any]) -> set[str] | None:
    if not provider.groups_claim or provider.groups_claim not in claims:
        return None
    value = claims[provider.groups_claim]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return set()
    return {str(v) for v in value}


def apply_groups(ctx: Ctx, provider: SsoProvider, user: User, claims: dict[str, Any]) -> None:
    """Make the user's membership of every mapped group follow the groups claim; groups no
    mapping names are left as the admin set them."""
    values = _groups(provider, claims)
    if values is None or not provider.group_map:
        return
    mapped = {uuid.UUID(str(g)) for g in provider.group_map.values()}
    # a group the admin deleted since it was mapped is skipped (it cannot be joined)
    existing = set(
        ctx.session.scalars(
            select(Group.id).where(Group.tenant_id == user.tenant_id, Group.id.in_(mapped))
        )
    )
    wanted = {
        uuid.UUID(str(provider.group_map[v])) for v in values if v in provider.group_map
    } & existing
    current = {
        m.group_id: m
        for m in ctx.session.scalars(
            select(GroupMember).where(
                GroupMember.user_id == user.id, GroupMember.group_id.in_(mapped)
            )
        )
    }
    for group_id, membership in current.items():
        if group_id not in wanted:
            ctx.session.delete(membership)
    for group_id in sorted(wanted - set(current)):
        ctx.session.add(GroupMember(group_id=group_id, user_id=user.id, tenant_id=user.tenant_id))


def _user_for(
    ctx: Ctx, provider: SsoProvider, claims: dict[str, Any]
) -> tuple[User, SsoIdentity | None, str | None]:
    """The user the ID token is for (identity, if linked already; the trusted e-mail)."""
    issuer, subject = claims["iss"], claims["sub"]
    identity = ctx.session.scalar(
        select(SsoIdentity).where(SsoIdentity.issuer == issuer, SsoIdentity.subject == subject)
    )
    if identity is not None:
        user = ctx.session.get(User, identity.user_id)
        if user is None or user.tenant_id != provider.tenant_id:
            raise SsoRefused("the linked user is not a user of this tenant")
        return user, identity, None
    email = trusted_email(provider, claims)
    if email is None:
        raise SsoRefused("the provider does not vouch for the e-mail address")
    domain = email.rpartition("@")[2]
    if domain not in provider.allowed_domains:
        raise SsoRefused(f"the e-mail domain {domain} is not allowed for this provider")
    if domain not in approved_domains(ctx, provider.tenant_id):
        raise SsoRefused(f"the e-mail domain {domain} is not approved for this tenant")
    user = ctx.session.scalar(select(User).where(User.email == email))
    if user is not None:
        if user.tenant_id != provider.tenant_id:
            raise SsoRefused("the e-mail address belongs to an account outside this tenant")
        return user, None, email
    if not provider.jit_users:
        raise SsoRefused("no user of this tenant has this e-mail and just-in-time is off")
    name = claims.get("name") or " ".join(
        str(claims.get(k, "")) for k in ("given_name", "family_name")
    )
    user = User(
        tenant_id=provider.tenant_id,
        email=email,
        display_name=_one_line(str(name))[:100] or email,
        roles=[str(Role.EMPLOYEE)],
        password_hash=None,
    )
    ctx.session.add(user)
    ctx.session.flush()
    record(
        ctx.session,
        "sso_user_created",
        "user",
        user.id,
        tenant_id=user.tenant_id,
        after={"issuer": issuer, "subject": subject},
    )
    return user, None, email


def complete(
    ctx: Ctx,
    *,
    state: str,
    code: str,
    error: str,
    browser_secret: str,
    source_ip: str,
    user_agent: str | None,
) -> tuple[ApiToken, str, User]:
    """Finish a sign-in from the provider's redirect: a session for the user, or SsoRefused
    (committed with its audit record, and the state spent)."""
    provider: SsoProvider | None = None
    claims: dict[str, Any] = {}
    user: User | None = None
    try:
        login = _spend(ctx, state, browser_secret)
        provider = ctx.session.get(SsoProvider, login.provider_id)
        if provider is None or not provider.enabled:
            raise SsoRefused("the tenant's identity provider is off")
        if error:
            raise SsoRefused(f"the provider refused the sign-in ({_printable(error)[:100]})")
        if not code:
            raise SsoRefused("the provider sent no code")
        tenant = ctx.session.get(Tenant, provider.tenant_id)
        if tenant is None or tenant.state == TenantState.TERMINATED:
            raise SsoRefused("tenant is terminated")
        token = _exchange(ctx, provider, login, code)
        claims = validate_id_token(provider, token["id_token"], login.nonce)
        user, identity, _email = _user_for(ctx, provider, claims)
        if user.state != UserState.ACTIVE:
            raise SsoRefused("user is disabled")
    except SsoRefused as exc:
        _refused(ctx, provider, claims, user, exc.reason, source_ip)
        raise
    except ProviderUnavailable as exc:  # audited too, and the state stays spent
        reason = f"the identity provider did not answer ({exc.message})"
        _refused(ctx, provider, claims, user, reason, source_ip)
        raise
    actor = Actor(user.id, user.email, source_ip)
    set_actor(ctx.session, actor)
    now = ctx.runtime.clock()
    if identity is None:
        identity = SsoIdentity(
            tenant_id=provider.tenant_id,
            user_id=user.id,
            issuer=claims["iss"],
            subject=claims["sub"],
            last_sign_in_at=now,
        )
        ctx.session.add(identity)
    else:
        identity.last_sign_in_at = now
    apply_groups(ctx, provider, user, claims)
    session_token, secret = issue_token(
        ctx,
        user,
        kind="session",
        name="sso",
        scopes=ALL_SCOPES,
        ttl=timedelta(seconds=ctx.runtime.settings.session_ttl_seconds),
        source_ip=source_ip,
        user_agent=user_agent,
    )
    record(
        ctx.session,
        "login",
        "user",
        user.id,
        tenant_id=user.tenant_id,
        after={"method": "sso", "issuer": claims["iss"], "subject": claims["sub"]},
        actor=actor,
    )
    from tongdao.lifetime.service import signed_in

    signed_in(ctx, user)  # device lifetime: the clock starts again, held devices come back
    return session_token, secret, user


def _refused(
    ctx: Ctx,
    provider: SsoProvider | None,
    claims: dict[str, Any],
    user: User | None,
    reason: str,
    source_ip: str,
) -> None:
    label = _printable(claims.get("email") or claims.get("sub") or "single sign-on")[:320]
    record(
        ctx.session,
        "login_failed",
        "user",
        user.id if user else None,
        tenant_id=provider.tenant_id if provider else None,
        after={
            "reason": _printable(reason),
            "method": "sso",
            "issuer": _printable(claims["iss"]) if "iss" in claims else None,
            "subject": _printable(claims["sub"])[:SUBJECT_MAX] if "sub" in claims else None,
        },
        actor=Actor(user.id if user else None, label, source_ip),
    )
    ctx.session.commit()


def _printable(value: object) -> str:
    """A value from the provider or the browser as the audit log may keep it: a string with
    no control characters (PostgreSQL refuses NUL in text and JSON)."""
    return "".join(ch if ch.isprintable() else "\ufffd" for ch in str(value))


def _one_line(value: str) -> str:
    """A name from the provider as Tongdao shows names: one line, no control or format
    characters (a NUL, a line break, a right-to-left override that makes it read otherwise)."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
