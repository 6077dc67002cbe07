"""The test OpenID Provider works end to end with Authlib as the relying party.

Groundwork for issue 15: the provider is django-oidc-provider in its own process
(``tests/support/oidc_provider.py``); the relying party (``tests/support/oidc_rp.py``) does
what Tongdao's SSO will do, with Authlib and joserfc.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyIdError,
    JoseError,
)
from joserfc.jwk import KeySet

from tests.support.oidc_provider import IdTokenFault, OidcClient, OidcProvider, SignInRefused
from tests.support.oidc_rp import REDIRECT_URI, RelyingParty


@pytest.fixture
def rp_for() -> Callable[[OidcProvider], RelyingParty]:
    return RelyingParty.for_provider


def header(id_token: str) -> dict[str, Any]:
    part = id_token.split(".")[0]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def test_sign_in_with_pkce_state_and_nonce_gives_a_valid_id_token(
    oidc_provider: OidcProvider, rp_for: Callable[[OidcProvider], RelyingParty]
) -> None:
    assert oidc_provider.started_in < 5, oidc_provider.started_in
    rp = rp_for(oidc_provider)
    assert "code" in rp.metadata["response_types_supported"]
    assert "RS256" in rp.metadata["id_token_signing_alg_values_supported"]
    user = oidc_provider.add_user(
        "li.na@example.com", groups=("engineering", "vpn-users"), given_name="Na", family_name="Li"
    )

    url, _, _, _ = rp.begin()
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
    assert query["nonce"] and query["state"]

    token, nonce = rp.sign_in(oidc_provider, user)
    claims = rp.validate(token, nonce)
    assert claims["iss"] == oidc_provider.issuer
    assert claims["aud"] == rp.client.client_id
    assert claims["sub"] == user.sub
    assert claims["nonce"] == nonce
    assert claims["email"] == "li.na@example.com"
    assert claims["email_verified"] is True
    assert claims["groups"] == ["engineering", "vpn-users"]


def test_the_code_is_bound_to_the_pkce_verifier(
    oidc_provider: OidcProvider, rp_for: Callable[[OidcProvider], RelyingParty]
) -> None:
    rp = rp_for(oidc_provider)
    user = oidc_provider.add_user("wang.wei@example.com")
    url, state, _, _ = rp.begin()
    with httpx.Client(timeout=10) as browser:
        callback = oidc_provider.sign_in(browser, url, user)
    with pytest.raises(Exception, match="invalid_grant"):
        rp.exchange(callback, state, generate_token(48))


@pytest.mark.parametrize(
    ("fault", "refusal", "match"),
    [
        ("bad_signature", BadSignatureError, None),
        ("foreign_key", BadSignatureError, None),
        ("wrong_audience", InvalidClaimError, "aud"),
        ("wrong_nonce", InvalidClaimError, "nonce"),
        ("wrong_issuer", InvalidClaimError, "iss"),
        ("expired", ExpiredTokenError, "expired"),
    ],
)
def test_a_bad_id_token_from_the_provider_is_refused(
    oidc_provider: OidcProvider,
    rp_for: Callable[[OidcProvider], RelyingParty],
    fault: IdTokenFault,
    refusal: type[JoseError],
    match: str | None,
) -> None:
    rp = rp_for(oidc_provider)
    user = oidc_provider.add_user("zhao.lei@example.com")
    token, nonce = rp.sign_in(oidc_provider, user)
    rp.validate(token, nonce)

    oidc_provider.inject_id_token_fault(fault)
    token, nonce = rp.sign_in(oidc_provider, user)
    with pytest.raises(refusal, match=match):
        rp.validate(token, nonce)
    # One token only: the next is good again.
    token, nonce = rp.sign_in(oidc_provider, user)
    assert rp.validate(token, nonce)["sub"] == user.sub


def test_groups_and_extra_claims_follow_the_directory(
    oidc_provider: OidcProvider, rp_for: Callable[[OidcProvider], RelyingParty]
) -> None:
    rp = rp_for(oidc_provider)
    user = oidc_provider.add_user("gao.fei@example.com", groups=("sales",))
    oidc_provider.set_user_groups(user, ("engineering", "vpn-users"))
    oidc_provider.set_user_claims(
        user, {"oid": "7d3f0c7e-0000-4000-8000-000000000001", "xms_edov": True}
    )
    token, nonce = rp.sign_in(oidc_provider, user)
    claims = rp.validate(token, nonce)
    assert claims["groups"] == ["engineering", "vpn-users"]
    assert claims["oid"] == "7d3f0c7e-0000-4000-8000-000000000001"
    assert claims["xms_edov"] is True


def test_an_expired_id_token_is_refused(
    oidc_providers: Callable[..., OidcProvider], rp_for: Callable[[OidcProvider], RelyingParty]
) -> None:
    provider = oidc_providers(id_token_expire=1)
    rp = rp_for(provider)
    token, nonce = rp.sign_in(provider, provider.add_user("sun.li@example.com"))
    time.sleep(2.1)
    with pytest.raises(JoseError, match="expired"):
        rp.validate(token, nonce, leeway=0)


def test_key_rotation_at_the_provider_is_followed(
    oidc_provider: OidcProvider, rp_for: Callable[[OidcProvider], RelyingParty]
) -> None:
    rp = rp_for(oidc_provider)
    user = oidc_provider.add_user("chen.jie@example.com")
    first, nonce = rp.sign_in(oidc_provider, user)
    rp.validate(first, nonce)
    old_kid = header(first["id_token"])["kid"]
    assert rp.jwks_fetches == 1

    new_kid = oidc_provider.rotate_signing_key()
    assert new_kid != old_kid
    second, nonce = rp.sign_in(oidc_provider, user)
    assert header(second["id_token"])["kid"] == new_kid
    claims = rp.validate(second, nonce)
    assert claims["sub"] == user.sub
    assert rp.jwks_fetches == 2
    assert rp.jwks is not None
    assert [key["kid"] for key in rp.jwks["keys"]] == [new_kid]
    with pytest.raises(InvalidKeyIdError):
        jwt.decode(first["id_token"], KeySet.import_key_set(rp.jwks))


def test_a_disabled_user_cannot_sign_in(
    oidc_provider: OidcProvider, rp_for: Callable[[OidcProvider], RelyingParty]
) -> None:
    rp = rp_for(oidc_provider)
    user = oidc_provider.add_user("liu.yang@example.com")
    rp.sign_in(oidc_provider, user)
    oidc_provider.set_user_active(user, False)
    with pytest.raises(SignInRefused):
        rp.sign_in(oidc_provider, user)
    oidc_provider.set_user_active(user, True)
    token, nonce = rp.sign_in(oidc_provider, user)
    assert rp.validate(token, nonce)["sub"] == user.sub


def test_two_providers_are_separate_and_one_can_omit_email_verified(
    oidc_providers: Callable[..., OidcProvider], rp_for: Callable[[OidcProvider], RelyingParty]
) -> None:
    okta_like = oidc_providers()
    entra_like = oidc_providers(email_verified="omit")
    rp_okta, rp_entra = rp_for(okta_like), rp_for(entra_like)
    assert okta_like.issuer != entra_like.issuer

    entra_user = entra_like.add_user("he.min@example.org")
    token, nonce = rp_entra.sign_in(entra_like, entra_user)
    claims = rp_entra.validate(token, nonce)
    assert claims["email"] == "he.min@example.org"
    assert "email_verified" not in claims

    # A user of one provider is unknown to the other.
    with httpx.Client(timeout=10) as browser, pytest.raises(SignInRefused):
        okta_like.sign_in(browser, rp_okta.begin()[0], entra_user)
    # The other provider's keys did not sign the token: refused even for the same client id.
    rp_okta.client = OidcClient(rp_entra.client.client_id, "x", REDIRECT_URI)
    rp_okta.fetch_jwks()
    with pytest.raises(InvalidKeyIdError):
        rp_okta.validate(token, nonce)
