"""Cross-border service, the review's findings (stop 21): a terminated tenant's bandwidth is
freed and the officer can revoke an approval; a link with live approvals is neither deleted nor
disabled; a PoP abroad serves a tenant's devices only under its authorisation; documents are
added to a draft only, and counted; image pixels are capped; numbers are strict; the console's
letter names the operator; the validity of an approval is sane; an upload is authorised before
its body is read."""

from __future__ import annotations

import io
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from tests.api.test_crossborder import API, Net, apply_a, approve, call, uploader
from tests.api.test_gateway import state
from tests.conftest import both_stores
from tests.support.console import as_person
from tests.support.world import World
from tongdao.audit.models import AuditEvent
from tongdao.billing.money import shanghai_today
from tongdao.crossborder.documents import MAX_PIXELS
from tongdao.crossborder.service import MAX_DOCUMENTS, MAX_OPEN, lock_link
from tongdao.testing import crossborder
from tongdao.testing.keys import public_key


def _events(world: World, app_id: str) -> list[AuditEvent]:
    with world.runtime.db.session(write=False) as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(
                    AuditEvent.object_type == "crossborder_application",
                    AuditEvent.object_id == app_id,
                )
                .order_by(AuditEvent.seq)
            )
        )


def _b_applies(world: World, net: Net, mbps: int) -> dict[str, Any]:
    site = world.client.post(
        f"{API}/tenants/{world.b.id}/sites",
        json={"name": "hq", "country": "DE", "purpose": "office",
              "prefixes": ["198.18.9.0/24"], "pop_id": net.fra},
        headers=world.b.admin.headers,
    )  # fmt: skip
    assert site.status_code == 201, site.text
    admin = world.b.admin.headers
    return crossborder.apply(
        call(world, admin), uploader(world, admin), str(world.b.id), [site.json()["id"]], mbps
    )


def _app(world: World, app_id: str) -> dict[str, Any]:
    got: dict[str, Any] = call(world, world.admin.headers)(
        "GET", f"/tenants/{world.a.id}/crossborder/applications/{app_id}"
    )
    return got


@both_stores
def test_terminating_a_tenant_revokes_its_approvals_and_frees_the_link(world: World) -> None:
    net = Net(world, capacity=100)
    first = apply_a(world, net, mbps=80)
    assert approve(world, first["id"], net.link["id"], 80).status_code == 200
    draft = call(world, world.a.admin.headers)(
        "POST",
        f"/tenants/{world.a.id}/crossborder/applications",
        json=crossborder.application_body([net.site["id"]]),
    )
    resp = world.client.patch(
        f"{API}/tenants/{world.a.id}",
        json={"state": "terminated", "state_reason": "contract ended"},
        headers=world.admin.headers,
    )
    assert resp.status_code == 200, resp.text
    ended = _app(world, first["id"])
    assert (ended["state"], ended["reason"]) == ("revoked", "the tenant was terminated")
    assert _app(world, draft["id"])["state"] == "rejected"
    assert all(t.tenant_id != world.a.id for t in state(world, net.gw_bj).tenants)
    # Tenant B gets the whole link.
    b_app = _b_applies(world, net, 50)
    resp = approve(world, b_app["id"], net.link["id"], 50)
    assert resp.status_code == 200, resp.text
    # Each end is a recorded change, by the operator admin who terminated the tenant.
    (last,) = _events(world, first["id"])[-1:]
    assert (last.before or {}).get("state") == "approved"
    assert (last.after or {}).get("state") == "revoked"
    assert last.actor == "operator_admin@operator.example"


@both_stores
def test_the_compliance_officer_revokes_an_approval(world: World) -> None:
    net = Net(world, capacity=100)
    app = apply_a(world, net, mbps=80)
    assert approve(world, app["id"], net.link["id"], 80).status_code == 200
    assert net.bj_pop_peers() != []
    path = f"{API}/crossborder/applications/{app['id']}/revoke"
    officer = world.operators["compliance_officer"].headers
    # Only the compliance officer revokes; a reason is required.
    resp = world.client.post(path, json={"reason": "x"}, headers=world.admin.headers)
    assert resp.status_code == 403, resp.text
    resp = world.client.post(path, json={"reason": "x"}, headers=world.a.admin.headers)
    assert resp.status_code in (403, 404), resp.text
    resp = world.client.post(path, json={"reason": "  "}, headers=officer)
    assert resp.status_code == 422 and "reason" in resp.json()["error"]["fields"]
    resp = world.client.post(path, json={}, headers=officer)
    assert resp.status_code == 422 and "reason" in resp.json()["error"]["fields"]
    assert _app(world, app["id"])["state"] == "approved"

    resp = world.client.post(path, json={"reason": "carrier withdrew CU-XB-1"}, headers=officer)
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "revoked"
    # The path closes at once and the status says why.
    assert net.bj_pop_peers() == []
    assert "198.18.7.0/24" not in net.conf()
    status = call(world, world.a.admin.headers)("GET", f"/tenants/{world.a.id}/crossborder/status")
    assert (status["authorised"], status["step"]) == (False, "revoked")
    assert "carrier withdrew CU-XB-1" in status["message"]
    # The bandwidth is free again.
    b_app = _b_applies(world, net, 100)
    assert approve(world, b_app["id"], net.link["id"], 100).status_code == 200
    # Revoked once; a second time is a conflict.
    resp = world.client.post(path, json={"reason": "again"}, headers=officer)
    assert resp.status_code == 409, resp.text
    last = _events(world, app["id"])[-1]
    assert (last.after or {}).get("state") == "revoked"
    assert last.actor == "compliance_officer@operator.example"


@both_stores
def test_a_link_with_live_approvals_is_not_deleted_or_disabled(world: World) -> None:
    net = Net(world)
    app = apply_a(world, net)
    assert approve(world, app["id"], net.link["id"], 10).status_code == 200
    link = f"{API}/links/{net.link['id']}"
    resp = world.client.delete(link, headers=world.admin.headers)
    assert resp.status_code == 409, resp.text
    error = resp.json()["error"]
    assert app["id"] in error["message"] and "Tenant A" in error["message"]
    assert f"applications.{app['id']}" in error["fields"] and "link" in error["fields"]
    resp = world.client.patch(link, json={"state": "disabled"}, headers=world.admin.headers)
    assert resp.status_code == 409, resp.text
    assert "state" in resp.json()["error"]["fields"]
    status = call(world, world.a.admin.headers)("GET", f"/tenants/{world.a.id}/crossborder/status")
    assert status["authorised"] is True
    # Once revoked, the link goes; the ended approval loses it as a recorded change, and is
    # not an authorisation without its link.
    officer = world.operators["compliance_officer"].headers
    revoke = f"{API}/crossborder/applications/{app['id']}/revoke"
    assert world.client.post(revoke, json={"reason": "link closes"}, headers=officer).is_success
    resp = world.client.delete(link, headers=world.admin.headers)
    assert resp.status_code == 204, resp.text
    assert _app(world, app["id"])["link_id"] is None
    assert (_events(world, app["id"])[-1].after or {}).get("link_id") is None
    status = call(world, world.a.admin.headers)("GET", f"/tenants/{world.a.id}/crossborder/status")
    assert status["authorised"] is False


def test_a_pop_abroad_serves_a_tenants_devices_only_under_its_authorisation(
    world: World,
) -> None:
    """A device pinned to the PoP abroad would meet the tenant's sites there: without an
    authorisation the PoP abroad does not carry it (the sites are still served)."""
    net = Net(world)
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/devices",
        json={"name": "phone", "public_key": public_key(), "pop_id": net.fra},
        headers=world.a.employee.headers,
    )
    assert resp.status_code == 201, resp.text

    def fra_kinds() -> list[str]:
        (tenant,) = state(world, net.gw_fra).tenants
        return sorted(p.kind for p in tenant.peers)

    assert fra_kinds() == ["site"]
    app = apply_a(world, net)
    assert approve(world, app["id"], net.link["id"], 10).status_code == 200
    assert fra_kinds() == ["device", "pop", "site"]
    officer = world.operators["compliance_officer"].headers
    revoke = f"{API}/crossborder/applications/{app['id']}/revoke"
    assert world.client.post(revoke, json={"reason": "ended"}, headers=officer).is_success
    assert fra_kinds() == ["site"]


def test_documents_are_added_to_a_draft_only_and_counted(world: World) -> None:
    net = Net(world, link=False)
    admin = world.a.admin.headers
    base = f"{API}/tenants/{world.a.id}/crossborder/applications"
    draft = call(world, admin)(
        "POST",
        f"/tenants/{world.a.id}/crossborder/applications",
        json=crossborder.application_body([net.site["id"]]),
    )

    def upload(app_id: str) -> Any:
        return world.client.post(
            f"{base}/{app_id}/documents",
            params={"kind": "other", "filename": "x.png"},
            content=crossborder.sample_png(),
            headers={**admin, "Content-Type": "image/png"},
        )

    for _ in range(MAX_DOCUMENTS):
        assert upload(draft["id"]).status_code == 201
    resp = upload(draft["id"])
    assert resp.status_code == 409, resp.text
    assert "file" in resp.json()["error"]["fields"]
    assert len(_app(world, draft["id"])["documents"]) == MAX_DOCUMENTS
    # After submission the documents are fixed: not while submitted, nor under review.
    submitted = apply_a(world, net)
    assert upload(submitted["id"]).status_code == 409
    officer = world.operators["compliance_officer"].headers
    call(world, officer)("POST", f"/crossborder/applications/{submitted['id']}/review")
    resp = upload(submitted["id"])
    assert resp.status_code == 409 and "file" in resp.json()["error"]["fields"]
    assert len(_app(world, submitted["id"])["documents"]) == 2
    # At most MAX_OPEN open applications per tenant (two so far).
    for _ in range(MAX_OPEN - 2):
        created = world.client.post(
            base, json=crossborder.application_body([net.site["id"]]), headers=admin
        )
        assert created.status_code == 201
    resp = world.client.post(
        base, json=crossborder.application_body([net.site["id"]]), headers=admin
    )
    assert resp.status_code == 409, resp.text
    assert "applications" in resp.json()["error"]["fields"]


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (width, height)).save(out, format="PNG")
    return out.getvalue()


def test_an_image_over_the_pixel_cap_is_refused_and_a_scan_is_not(world: World) -> None:
    net = Net(world, link=False)
    admin = world.a.admin.headers
    app = call(world, admin)(
        "POST",
        f"/tenants/{world.a.id}/crossborder/applications",
        json=crossborder.application_body([net.site["id"]]),
    )
    path = f"{API}/tenants/{world.a.id}/crossborder/applications/{app['id']}/documents"

    def post(content: bytes) -> Any:
        return world.client.post(
            path, params={"kind": "other"}, content=content,
            headers={**admin, "Content-Type": "image/png"},
        )  # fmt: skip

    # An A4 page scanned at 300 dpi is fine ...
    scan = post(_png(2480, 3508))
    assert scan.status_code == 201, scan.text
    # ... a small file that decodes to hundreds of MB is not.
    assert MAX_PIXELS <= 12_000_000
    bomb = _png(4000, 3001)
    assert len(bomb) < 1024 * 1024
    resp = post(bomb)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"]["fields"]["file"] == "the image has too many pixels"


def test_numbers_are_strict(world: World) -> None:
    net = Net(world)
    admin = world.a.admin.headers
    base = f"{API}/tenants/{world.a.id}/crossborder/applications"
    good = crossborder.application_body([net.site["id"]])
    for field in ("bandwidth_mbps", "headcount"):
        for bad in (True, "7", 7.5):
            resp = world.client.post(base, json={**good, field: bad}, headers=admin)
            assert resp.status_code == 422, (field, bad, resp.text)
            assert field in resp.json()["error"]["fields"], (field, bad)
    draft = call(world, admin)("POST", f"/tenants/{world.a.id}/crossborder/applications", json=good)
    resp = world.client.patch(f"{base}/{draft['id']}", json={"headcount": "9"}, headers=admin)
    assert resp.status_code == 422 and "headcount" in resp.json()["error"]["fields"]
    app = apply_a(world, net)
    t = shanghai_today(world.runtime.clock())
    body = {"approval_ref": "X", "link_id": net.link["id"], "valid_from": t.isoformat(),
            "valid_to": (t + timedelta(days=30)).isoformat()}  # fmt: skip
    for bad in (True, "10"):
        resp = world.client.post(
            f"{API}/crossborder/applications/{app['id']}/approve",
            json={**body, "approved_mbps": bad},
            headers=world.operators["compliance_officer"].headers,
        )
        assert resp.status_code == 422 and "approved_mbps" in resp.json()["error"]["fields"]


def test_an_approvals_validity_is_sane(world: World) -> None:
    net = Net(world)
    app = apply_a(world, net)  # term 2026-01-01 .. 2030-12-31
    t = shanghai_today(world.runtime.clock())
    officer = world.operators["compliance_officer"].headers

    def try_approve(valid_from: str, valid_to: str) -> Any:
        return world.client.post(
            f"{API}/crossborder/applications/{app['id']}/approve",
            json={"approval_ref": "X", "link_id": net.link["id"], "approved_mbps": 10,
                  "valid_from": valid_from, "valid_to": valid_to},
            headers=officer,
        )  # fmt: skip

    for valid_from, valid_to, field in (
        ("9999-12-31", "9999-12-31", "valid_from"),
        ("0001-01-01", t.isoformat(), "valid_from"),
        ((t - timedelta(days=2)).isoformat(), t.isoformat(), "valid_from"),
        ((t + timedelta(days=366)).isoformat(), "2030-12-31", "valid_from"),
        (t.isoformat(), (t - timedelta(days=1)).isoformat(), "valid_to"),
        (t.isoformat(), "2031-01-01", "valid_to"),
    ):
        resp = try_approve(valid_from, valid_to)
        assert resp.status_code == 422, (valid_from, valid_to, resp.text)
        assert field in resp.json()["error"]["fields"], (valid_from, valid_to, resp.json())
    assert _app(world, app["id"])["state"] == "submitted"
    yesterday = (t - timedelta(days=1)).isoformat()
    assert try_approve(yesterday, "2030-12-31").status_code == 200


def test_an_upload_is_authorised_before_its_body_is_read(world: World) -> None:
    """Another tenant, an employee or an operator is answered without the body being read:
    a streamed body that never ends does not hold the answer."""
    net = Net(world, link=False)
    app = call(world, world.a.admin.headers)(
        "POST",
        f"/tenants/{world.a.id}/crossborder/applications",
        json=crossborder.application_body([net.site["id"]]),
    )
    read = {"chunks": 0}

    def endless() -> Any:
        while True:
            read["chunks"] += 1
            if read["chunks"] > 20:
                raise AssertionError("the body was read")
            yield b"0" * (1024 * 1024)

    path = f"{API}/tenants/{world.a.id}/crossborder/applications/{app['id']}/documents"
    for who, expected in (
        (world.b.admin.headers, 404),
        (world.a.employee.headers, 403),
        (world.operators["auditor"].headers, 403),
    ):
        read["chunks"] = 0
        resp = world.client.post(
            path,
            params={"kind": "other"},
            content=endless(),
            headers={**who, "Content-Type": "image/png"},
        )
        assert resp.status_code == expected, (who, resp.text)
        assert read["chunks"] <= 1, who
    # The console's upload too (another tenant's application is not found).
    read["chunks"] = 0
    resp = as_person(world, world.b.admin).http.post(
        f"/console/crossborder/{app['id']}/documents",
        content=endless(),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert resp.status_code == 404, resp.text
    assert read["chunks"] <= 1


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_approving_waits_for_the_links_row_lock(world: World) -> None:
    """Two decisions on one link do not read the same committed sum: approve (and a capacity
    change) lock the link's row first, so while another transaction holds it, they wait."""
    net = Net(world, capacity=100)
    app = apply_a(world, net, mbps=60)
    done: dict[str, Any] = {}

    def decide() -> None:
        done["resp"] = approve(world, app["id"], net.link["id"], 60)

    def lower() -> None:
        done["lower"] = world.client.patch(
            f"{API}/links/{net.link['id']}",
            json={"capacity_mbps": 50},
            headers=world.admin.headers,
        )

    for work, key in ((decide, "resp"), (lower, "lower")):
        with world.runtime.db.session() as session:
            assert lock_link(session, uuid.UUID(net.link["id"])) is not None
            worker = threading.Thread(target=work)
            worker.start()
            worker.join(timeout=2)
            assert worker.is_alive(), f"{key} did not wait for the link's lock"
            session.rollback()
        worker.join(timeout=30)
        assert not worker.is_alive()
    assert done["resp"].status_code == 200, done["resp"].text
    # Lowering under the approved 60 Mbit/s, decided after the lock, is refused.
    assert done["lower"].status_code == 409, done["lower"].text
