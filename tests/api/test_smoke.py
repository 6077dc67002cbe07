from tests.support.world import World


def test_world_builds(world: World) -> None:
    resp = world.client.get("/api/v1/tenants", headers=world.admin.headers)
    assert resp.status_code == 200
    assert resp.json()["count"] == 2
