"""A relying party for tests of the OpenID Provider fixture, as Tongdao's SSO will be one.

Discovery; an authorization URL with PKCE (S256), ``state`` and ``nonce`` (Authlib's
OAuth2Client); the code exchanged with the verifier; the ID token's signature checked against
the provider's JWKS, fetched again once for an unknown ``kid`` (joserfc, Authlib's JOSE
library), then issuer, audience, expiry, nonce and at_hash (Authlib's CodeIDToken).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from tests.support.oidc_provider import OidcClient, OidcProvider, OidcUser

REDIRECT_URI = "http://127.0.0.1:8080/console/sso/callback"
SCOPE = "openid email profile groups"


@dataclass
class RelyingParty:
    """A relying party as Tongdao's will be: discovery, PKCE + state + nonce, validated token."""

    issuer: str
    client: OidcClient
    metadata: dict[str, Any] = field(default_factory=dict)
    jwks: dict[str, Any] | None = None
    jwks_fetches: int = 0

    @classmethod
    def for_provider(cls, provider: OidcProvider) -> RelyingParty:
        """A new client registered at ``provider``, its metadata discovered."""
        rp = cls(provider.issuer, provider.add_client(REDIRECT_URI))
        rp.discover()
        return rp

    def discover(self) -> None:
        response = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10)
        response.raise_for_status()
        self.metadata = response.json()
        assert self.metadata["issuer"] == self.issuer

    def fetch_jwks(self) -> dict[str, Any]:
        response = httpx.get(self.metadata["jwks_uri"], timeout=10)
        response.raise_for_status()
        self.jwks_fetches += 1
        self.jwks = response.json()
        return self.jwks

    def oauth(self) -> OAuth2Client:
        return OAuth2Client(
            client_id=self.client.client_id,
            client_secret=self.client.client_secret,
            scope=SCOPE,
            redirect_uri=self.client.redirect_uri,
            code_challenge_method="S256",
            token_endpoint_auth_method="client_secret_basic",
            timeout=10,
        )

    def begin(self) -> tuple[str, str, str, str]:
        """Returns (authorization URL, state, nonce, code verifier)."""
        nonce = generate_token(24)
        verifier = generate_token(48)
        with self.oauth() as oauth:
            url, state = oauth.create_authorization_url(
                self.metadata["authorization_endpoint"], nonce=nonce, code_verifier=verifier
            )
        return url, state, nonce, verifier

    def exchange(self, callback: str, state: str, verifier: str) -> dict[str, Any]:
        query = parse_qs(urlsplit(callback).query)
        assert callback.startswith(self.client.redirect_uri)
        assert query["state"] == [state]
        with self.oauth() as oauth:
            token: dict[str, Any] = oauth.fetch_token(
                self.metadata["token_endpoint"],
                grant_type="authorization_code",
                code=query["code"][0],
                code_verifier=verifier,
            )
        return token

    def validate(self, token: dict[str, Any], nonce: str, *, leeway: int = 60) -> CodeIDToken:
        """Signature by a key of the provider's JWKS (refetched once for an unknown kid), then
        issuer, audience, expiry, nonce and at_hash by Authlib's CodeIDToken."""
        registry = JWSRegistry(algorithms=["RS256"], strict_check_header=False)
        keys = self.jwks or self.fetch_jwks()
        try:
            decoded = jwt.decode(token["id_token"], KeySet.import_key_set(keys), registry=registry)
        except InvalidKeyIdError:
            keys = self.fetch_jwks()
            decoded = jwt.decode(token["id_token"], KeySet.import_key_set(keys), registry=registry)
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            # Authlib checks aud only through azp unless told: name the audience here.
            {
                "iss": {"essential": True, "values": [self.issuer]},
                "aud": {"essential": True, "values": [self.client.client_id]},
            },
            {
                "nonce": nonce,
                "client_id": self.client.client_id,
                "access_token": token["access_token"],
            },
        )
        claims.validate(now=int(time.time()), leeway=leeway)
        return claims

    def sign_in(self, provider: OidcProvider, user: OidcUser) -> tuple[dict[str, Any], str]:
        url, state, nonce, verifier = self.begin()
        with httpx.Client(timeout=10) as browser:
            callback = provider.sign_in(browser, url, user)
        return self.exchange(callback, state, verifier), nonce
