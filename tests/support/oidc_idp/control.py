"""Test-only control API of the test provider, standing in for the provider's admin console.

Every call needs ``Authorization: Bearer <OIDC_IDP_CONTROL_TOKEN>``; bodies are JSON. It writes
django-oidc-provider's own models (``Client``, ``RSAKey``) and Django's users and groups, which
the provider reads on every request: nothing here issues or signs a token.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from oidc_provider.models import Client, ResponseType, RSAKey

from tests.support.oidc_idp import faults

View = Callable[..., JsonResponse]


def _control(view: View) -> View:
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        expected = f"Bearer {os.environ['OIDC_IDP_CONTROL_TOKEN']}"
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return JsonResponse({"error": "unauthorized"}, status=401)
        body = json.loads(request.body or b"{}")
        return view(body, *args, **kwargs)

    return csrf_exempt(require_POST(wrapped))


def new_rsa_key() -> RSAKey:
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode()
    return RSAKey.objects.create(key=pem)


@_control
def create_client(body: dict[str, Any]) -> JsonResponse:
    client = Client.objects.create(
        name=body.get("name", body["client_id"]),
        client_type="confidential",
        client_id=body["client_id"],
        client_secret=body["client_secret"],
        jwt_alg="RS256",
        require_consent=False,
        reuse_consent=True,
    )
    client.redirect_uris = list(body["redirect_uris"])
    client.save()
    client.response_types.add(ResponseType.objects.get(value="code"))
    return JsonResponse({"client_id": client.client_id}, status=201)


@_control
def create_user(body: dict[str, Any]) -> JsonResponse:
    with transaction.atomic():
        user = User.objects.create_user(
            username=body["username"],
            email=body.get("email", ""),
            password=body["password"],
            first_name=body.get("given_name", ""),
            last_name=body.get("family_name", ""),
        )
        for name in body.get("groups", []):
            user.groups.add(Group.objects.get_or_create(name=name)[0])
    return JsonResponse({"sub": str(user.pk)}, status=201)


@_control
def set_user_active(body: dict[str, Any], username: str) -> JsonResponse:
    updated = User.objects.filter(username=username).update(is_active=bool(body["active"]))
    if not updated:
        return JsonResponse({"error": "no such user"}, status=404)
    return JsonResponse({"username": username, "active": bool(body["active"])})


@_control
def rotate_key(body: dict[str, Any]) -> JsonResponse:
    """Replace the signing key: a new key signs from now on, the old one leaves the JWKS."""
    with transaction.atomic():
        old = [key.kid for key in RSAKey.objects.all()]
        RSAKey.objects.all().delete()
        kid = new_rsa_key().kid
    return JsonResponse({"kid": kid, "retired": old})


@_control
def set_user_groups(body: dict[str, Any], username: str) -> JsonResponse:
    user = User.objects.filter(username=username).first()
    if user is None:
        return JsonResponse({"error": "no such user"}, status=404)
    user.groups.set([Group.objects.get_or_create(name=name)[0] for name in body["groups"]])
    return JsonResponse({"username": username, "groups": sorted(body["groups"])})


@_control
def set_user_claims(body: dict[str, Any], username: str) -> JsonResponse:
    """Extra claims in this user's ID tokens from now on (e.g. Entra's oid, tid, xms_edov)."""
    if not User.objects.filter(username=username).exists():
        return JsonResponse({"error": "no such user"}, status=404)
    faults.set_user_claims(username, body["claims"])
    return JsonResponse({"username": username, "claims": body["claims"]})


@_control
def add_fault(body: dict[str, Any]) -> JsonResponse:
    """The next ID token issued gets this defect (see ``faults.FAULTS``)."""
    try:
        faults.add_fault(body["id_token"])
    except ValueError:
        return JsonResponse({"error": f"unknown fault, one of {sorted(faults.FAULTS)}"}, status=400)
    return JsonResponse({"id_token": body["id_token"]})
