"""The per-address throttle of beginning a single sign-on (``POST /auth/sso/begin`` and the
console's SSO form), the sign-in's own (:func:`tongdao.auth.service._check_throttle`) applied
to a request that needs no account.

Beginning needs nothing but an e-mail address, and each begin stores a sign-in in flight
(``sso_logins``) and sends the person to the provider. From one address (an IPv6 one by its
/64, :func:`tongdao.auth.service.throttle_address`), the failed sign-ins and the single sign-ons
begun and not finished over ``login_window_seconds`` count together: at
``login_address_max_failures`` the next begin is refused (429 with ``Retry-After``) until the
oldest of them leaves the window, before the address's domain is looked up (so a throttled
caller learns nothing, not even whether a domain has single sign-on). A finished sign-on stops
counting, as a success does not count as a failure; an address throttled for password sign-in
is throttled here too, so the provider's path is no way around it.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from tongdao.auth.models import LoginAttempt
from tongdao.auth.service import as_aware, one_at_a_time, retry_after, throttle_address
from tongdao.errors import Throttled
from tongdao.runtime import Ctx
from tongdao.sso.models import SsoLogin
from tongdao.sso.oidc import LOGIN_TTL


def check_begin(ctx: Ctx, source_ip: str) -> str:
    """Refuse (:class:`~tongdao.errors.Throttled`) a begin from an address over the limit;
    the address as counted (to store with the sign-in)."""
    settings = ctx.runtime.settings
    address = throttle_address(source_ip)
    # One begin per address at a time counts, checks and stores, so a burst cannot pass the
    # check before its rows are written.
    one_at_a_time(ctx.session, "tongdao-sso-begin", address)
    now = ctx.runtime.clock()
    since = now - timedelta(seconds=settings.login_window_seconds)
    failed, oldest_failure = ctx.session.execute(
        select(func.count(), func.min(LoginAttempt.at)).where(
            LoginAttempt.success.is_(False),
            LoginAttempt.at > since,
            LoginAttempt.source_ip == address,
        )
    ).one()
    # When a sign-in began, on the runtime's clock: its expiry less its lifetime.
    begun, first_expiry = ctx.session.execute(
        select(func.count(), func.min(SsoLogin.expires_at)).where(
            SsoLogin.source_ip == address,
            SsoLogin.expires_at > since + LOGIN_TTL,
            SsoLogin.used_at.is_(None),
        )
    ).one()
    oldest_begin = as_aware(first_expiry, now) - LOGIN_TTL if first_expiry is not None else None
    if failed + begun >= settings.login_address_max_failures:
        oldest = min(as_aware(t, now) for t in (oldest_failure, oldest_begin) if t is not None)
        until = oldest + timedelta(seconds=settings.login_window_seconds)
        wait = retry_after(until, now)
        raise Throttled(f"too many sign-ins from this address; try again in {wait} s", wait)
    return address
