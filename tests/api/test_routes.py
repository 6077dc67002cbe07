"""No two API routes match one path and method.

The app includes its routers in the order of how often they are requested (issue 10: FastAPI
tries routes in order, and that scan was a fifth of a request's CPU). That order may only
change how soon a route is found, never which route answers: so no concrete path may match
two routes with the same method.
"""

from __future__ import annotations

import itertools

from tests.support.world import World


def _overlap(a: str, b: str) -> bool:
    """Whether some concrete path matches both templates (``{name}`` is one segment)."""
    sa, sb = a.strip("/").split("/"), b.strip("/").split("/")
    if any(":path}" in s for s in sa + sb):
        return True  # a catch-all parameter: assume the worst
    if len(sa) != len(sb):
        return False
    return all(
        x == y or x.startswith("{") or y.startswith("{") for x, y in zip(sa, sb, strict=True)
    )


def test_overlap_finds_templates_matching_one_path() -> None:
    assert _overlap("/tenants/{tenant_id}/devices", "/tenants/{id}/devices")
    assert _overlap("/tenants/{tenant_id}/devices", "/tenants/me/{what}")
    assert not _overlap("/tenants/{tenant_id}/devices", "/tenants/{tenant_id}/sites")
    assert not _overlap("/tenants/{tenant_id}", "/tenants/{tenant_id}/devices")


def test_no_two_api_routes_match_one_path_and_method(world: World) -> None:
    spec = world.client.get("/api/v1/openapi.json").json()
    routes = [
        (method.upper(), path)
        for path, operations in spec["paths"].items()
        for method in operations
        if method in {"get", "put", "post", "patch", "delete", "head", "options"}
    ]
    assert len(routes) > 100
    clashes = [
        (m1, p1, p2)
        for (m1, p1), (m2, p2) in itertools.combinations(routes, 2)
        if m1 == m2 and _overlap(p1, p2)
    ]
    assert clashes == []
