"""Claims of the test provider: e-mail (with or without ``email_verified``, see
``OIDC_IDP_EMAIL_VERIFIED``) and a ``groups`` claim for the ``groups`` scope, as Okta sends it."""

from __future__ import annotations

import os
from typing import Any

from oidc_provider.lib.claims import ScopeClaims


def userinfo(claims: dict[str, Any], user: Any) -> dict[str, Any]:
    claims["name"] = f"{user.first_name} {user.last_name}".strip() or None
    claims["given_name"] = user.first_name or None
    claims["family_name"] = user.last_name or None
    claims["preferred_username"] = user.username
    claims["email"] = user.email or None
    # "omit" behaves as Microsoft Entra ID does: no email_verified claim at all.
    verified = os.environ.get("OIDC_IDP_EMAIL_VERIFIED", "true")
    claims["email_verified"] = None if verified == "omit" else verified == "true"
    return claims


class GroupsScopeClaims(ScopeClaims):  # type: ignore[misc]
    info_groups = ("Groups", "The groups you belong to.")

    def scope_groups(self) -> dict[str, Any]:
        return {"groups": sorted(g.name for g in self.user.groups.all())}
