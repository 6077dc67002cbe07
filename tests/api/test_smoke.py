from tests.support.world import World


def test_world_builds(world: World) -> None:
    resp = world.client.get("/api/v1/tenants", headers=world.admin.headers)
    assert resp.status_code == 200
    assert resp.json()["count"] == 2


def test_openapi_has_unique_operation_ids(world: World) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        spec = world.client.get("/api/v1/openapi.json").json()
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    for path in (
        "/api/v1/operator",
        "/api/v1/pops",
        "/api/v1/links",
        "/api/v1/tenants",
        "/api/v1/tenants/{tenant_id}/users",
        "/api/v1/tenants/{tenant_id}/groups",
        "/api/v1/tenants/{tenant_id}/devices",
        "/api/v1/tenants/{tenant_id}/sites",
        "/api/v1/tenants/{tenant_id}/policies",
        "/api/v1/tenants/{tenant_id}/devices/{device_id}/wireguard.conf",
    ):
        assert path in spec["paths"], path
