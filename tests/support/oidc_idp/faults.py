"""What the test provider's next ID token gets wrong, and extra claims per user.

Set through the control API (``control.py``) and kept in this process's memory: the provider
is one process, started fresh for each test. ``id_token_hook`` (django-oidc-provider's
``OIDC_IDTOKEN_PROCESSING_HOOK``) applies the claim faults before the token is signed;
``SignatureFaults`` (a middleware) spoils the signature of a token already signed.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from django.http import HttpRequest, HttpResponse

CLAIM_FAULTS = frozenset({"wrong_audience", "wrong_nonce", "wrong_issuer", "expired"})
SIGNATURE_FAULTS = frozenset({"bad_signature", "foreign_key"})
FAULTS = CLAIM_FAULTS | SIGNATURE_FAULTS

_lock = threading.Lock()
_pending: list[str] = []
_user_claims: dict[str, dict[str, Any]] = {}


def add_fault(kind: str) -> None:
    if kind not in FAULTS:
        raise ValueError(kind)
    with _lock:
        _pending.append(kind)


def _take(kinds: frozenset[str]) -> str | None:
    with _lock:
        if _pending and _pending[0] in kinds:
            return _pending.pop(0)
    return None


def set_user_claims(username: str, claims: dict[str, Any]) -> None:
    with _lock:
        _user_claims[username] = dict(claims)


def id_token_hook(id_token: dict[str, Any], user: Any, **_: Any) -> dict[str, Any]:
    with _lock:
        id_token.update(_user_claims.get(user.username, {}))
    fault = _take(CLAIM_FAULTS)
    if fault == "wrong_audience":
        id_token["aud"] = "another-client"
    elif fault == "wrong_nonce":
        id_token["nonce"] = "not-the-nonce-you-sent"
    elif fault == "wrong_issuer":
        id_token["iss"] = "http://127.0.0.1:9/openid"
    elif fault == "expired":
        now = int(time.time())
        id_token["iat"], id_token["exp"] = now - 3600, now - 1800
    return id_token


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SignatureFaults:
    """Django middleware: on the token endpoint, spoil the next signed ID token if asked."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.rstrip("/").endswith("/openid/token") or response.status_code != 200:
            return response
        fault = _take(SIGNATURE_FAULTS)
        if fault is None:
            return response
        body = json.loads(response.content)
        head, payload, signature = body["id_token"].split(".")
        claims = json.loads(_unb64(payload))
        if fault == "bad_signature":
            # The claims changed after signing: the signature no longer matches.
            claims["email"] = "ceo@example.com"
            body["id_token"] = f"{head}.{_b64(json.dumps(claims).encode())}.{signature}"
        else:
            # Signed by a key the provider never published, under the real key's kid.
            rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            kid = json.loads(_unb64(head)).get("kid")
            body["id_token"] = jwt.encode(claims, rogue, algorithm="RS256", headers={"kid": kid})
        response.content = json.dumps(body).encode()
        response["Content-Length"] = str(len(response.content))
        return response
