"""SCIM test helpers: a tenant's token, requests with it, a device on a PoP's gateway."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_gateway import activate, device, enrol, make_pop, state
from tests.support.world import World

PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"

__all__ = ["GROUP", "PATCH", "USER", "Scim", "activate", "device", "enrol", "make_pop", "state"]


class Scim:
    """Requests to /scim/v2 with one tenant's SCIM token."""

    def __init__(self, world: World, tenant_id: uuid.UUID, admin_headers: dict[str, str]) -> None:
        resp = world.client.post(
            f"/api/v1/tenants/{tenant_id}/scim-tokens",
            json={"name": "Entra ID"},
            headers=admin_headers,
        )
        assert resp.status_code == 201, resp.text
        self.token_id: str = resp.json()["token"]["id"]
        self.secret: str = resp.json()["secret"]
        self.client: TestClient = world.client

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}", "Content-Type": "application/scim+json"}

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        return self.client.request(
            method, f"/scim/v2{path}", json=body, params=params or None, headers=self.headers
        )

    def patch(self, path: str, *operations: dict[str, Any]) -> Any:
        return self.request("PATCH", path, {"schemas": [PATCH], "Operations": list(operations)})

    def find_user(self, user_name: str) -> dict[str, Any]:
        resp = self.request("GET", "/Users", filter=f'userName eq "{user_name}"')
        assert resp.status_code == 200, resp.text
        (found,) = resp.json()["Resources"]
        return dict(found)
