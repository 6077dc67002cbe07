"""The quotas area's pages over HTTP: the billing clerk sets a tenant's limits, the tenant
admin a user's (within the tenant's), each success a 303 with a notice and the same stored
effect as the API's route (checked through the API); each refusal next to its field (422),
the typed values kept, nothing stored; another tenant's page is 404; employees get 403."""

from __future__ import annotations

from typing import Any

from tests.support.console import as_person
from tests.support.world import World

API = "/api/v1"
Q = "/console/quotas"


def _api(world: World, path: str, role: str = "billing_clerk") -> Any:
    resp = world.client.get(API + path, headers=world.actor(role).headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_clerk_sets_the_tenants_limits_and_sees_refusals_next_to_fields(world: World) -> None:
    clerk = as_person(world, world.operators["billing_clerk"])
    page = clerk.get(f"{Q}/tenants/{world.a.id}")
    assert page.status_code == 200
    assert "Save the limits" in page.text
    form = {
        "tenant_cap_mb": "5000",
        "user_cap_mb": "100",
        "user_rate_mbps": "20",
        "over_cap": "throttle",
        "throttle_mbps": "",
    }
    refused = clerk.post(f"{Q}/tenants/{world.a.id}", data=form)
    assert refused.status_code == 422
    assert 'id="f-throttle_mbps" name="throttle_mbps"' in refused.text
    assert 'aria-invalid="true"' in refused.text
    assert "required when traffic over a cap is throttled" in refused.text
    assert 'value="5000"' in refused.text  # typed values kept
    assert _api(world, f"/tenants/{world.a.id}/limits")["tenant_cap_mb"] is None  # nothing stored
    done = clerk.post(
        f"{Q}/tenants/{world.a.id}", data=form | {"throttle_mbps": "2"}, follow_redirects=False
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"{Q}/tenants/{world.a.id}?done=saved"
    stored = _api(world, f"/tenants/{world.a.id}/limits")
    assert (stored["tenant_cap_mb"], stored["user_rate_mbps"], stored["throttle_mbps"]) == (
        5000,
        20,
        2,
    )
    shown = clerk.get(done.headers["location"]).text
    assert "The limits were saved" in shown
    # The operator's overview picks a tenant.
    overview = clerk.get(Q)
    assert overview.status_code == 200 and "Tenant B" in overview.text


def test_tenant_admin_sets_a_users_limits_within_the_tenants(world: World) -> None:
    clerk = as_person(world, world.operators["billing_clerk"])
    clerk.post(f"{Q}/tenants/{world.a.id}", data={"user_cap_mb": "100", "over_cap": "block"})
    admin = as_person(world, world.a.admin)
    # The admin's menu entry goes to their own tenant; they read the tenant's limits only.
    assert admin.get(Q, follow_redirects=False).headers["location"] == f"{Q}/tenants/{world.a.id}"
    page = admin.get(f"{Q}/tenants/{world.a.id}")
    assert page.status_code == 200 and "Save the limits" not in page.text
    assert "employee@a.example" in page.text
    assert admin.post(f"{Q}/tenants/{world.a.id}", data={"user_cap_mb": "1"}).status_code == 403
    user = f"{Q}/tenants/{world.a.id}/users/{world.a.employee.user_id}"
    refused = admin.post(user, data={"cap_mb": "500", "rate_mbps": ""})
    assert refused.status_code == 422
    assert "at most 100 MB" in refused.text and 'value="500"' in refused.text
    done = admin.post(user, data={"cap_mb": "50", "rate_mbps": "10"}, follow_redirects=False)
    assert done.status_code == 303
    path = f"/tenants/{world.a.id}/users/{world.a.employee.user_id}/limits"
    stored = _api(world, path, "tenant_admin")
    assert (stored["cap_mb"], stored["rate_mbps"], stored["effective_cap_mb"]) == (50, 10, 50)
    # Another tenant's pages: 404; an employee: 403.
    assert admin.get(f"{Q}/tenants/{world.b.id}").status_code == 404
    other = f"{Q}/tenants/{world.b.id}/users/{world.b.employee.user_id}"
    assert admin.get(other).status_code == 404
    employee = as_person(world, world.a.employee)
    assert employee.get(f"{Q}/tenants/{world.a.id}").status_code == 403


def test_pages_in_simplified_chinese(world: World) -> None:
    admin = as_person(world, world.a.admin)
    admin.post("/console/language", data={"language": "zh_CN", "next": Q})
    page = admin.get(f"{Q}/tenants/{world.a.id}")
    assert page.status_code == 200
    assert "流量配额" in page.text and "本月尚无配额用量达到 80%。" in page.text
