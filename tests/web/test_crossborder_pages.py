"""The cross-border console pages: a tenant admin applies, uploads and submits; the compliance
officer's queue and decision; refusals next to their fields; another tenant's application is
404; only the officer decides."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from tests.support.console import as_person
from tests.support.world import World
from tongdao.billing.money import shanghai_today
from tongdao.crossborder.models import CrossBorderApplication, CrossBorderDocument
from tongdao.testing import crossborder

API = "/api/v1"


def overseas_site(world: World) -> dict[str, Any]:
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/sites",
        json={"name": "hq", "country": "DE", "purpose": "hq", "prefixes": ["198.18.7.0/24"]},
        headers=world.a.admin.headers,
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def link(world: World) -> str:
    pops = []
    for name, region, host in (("bj", "CN-BJ", "198.51.100.1"), ("fra", "DE-FRA", "203.0.113.2")):
        resp = world.client.post(
            f"{API}/pops",
            json={"name": name, "region": region, "country": region[:2], "endpoint_host": host,
                  "port_min": 51820, "port_max": 51829},
            headers=world.admin.headers,
        )  # fmt: skip
        assert resp.status_code == 201, resp.text
        pops.append(resp.json()["id"])
    resp = world.client.post(
        f"{API}/links",
        json={"name": "bj-fra", "pop_a_id": pops[0], "pop_b_id": pops[1], "circuit_ref": "CU-1",
              "approval_ref": "工信部国际〔2026〕7号", "capacity_mbps": 100},
        headers=world.admin.headers,
    )  # fmt: skip
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def form(site_id: str, **over: str) -> dict[str, Any]:
    return {
        "site_ids": [site_id],
        "bandwidth_mbps": "20",
        "headcount": "40",
        "manager_name": "Li Na",
        "manager_phone": "+8613800138000",
        "manager_email": "it@example.com",
        "term_start": "2026-01-01",
        "term_end": "2030-12-31",
        "internal_use_only": "yes",
        **over,
    }


def multipart(page: Any, path: str, kind: str, name: str, content: bytes, ctype: str) -> Any:
    return page.http.post(
        path,
        data={"csrf_token": page.csrf, "kind": kind},
        files={"file": (name, content, ctype)},
    )


def test_apply_upload_submit_then_the_officer_approves(world: World) -> None:
    site = overseas_site(world)
    link_id = link(world)
    admin = as_person(world, world.a.admin)
    page = admin.get("/console/crossborder")
    assert page.status_code == 200
    assert "No application yet" in page.text and "hq (DE)" in page.text
    assert admin.get("/console/crossborder/letter.pdf").content.startswith(b"%PDF-")

    resp = admin.post("/console/crossborder", form(site["id"]), follow_redirects=False)
    assert resp.status_code == 303, resp.text
    detail = resp.headers["location"].split("?")[0]
    app_id = detail.rsplit("/", 1)[1]
    page = admin.get(detail + "?done=created")
    assert "saved as a draft" in page.text
    # Submitting without documents: told which are missing.
    resp = admin.post(f"{detail}/submit")
    assert resp.status_code == 422
    assert "upload this document before submitting" in resp.text
    # A text file called a PDF is refused next to the file field; nothing is stored.
    resp = multipart(
        admin, f"{detail}/documents", "business_licence", "x.pdf", b"hello", "application/pdf"
    )
    assert resp.status_code == 422
    assert re.search(r'id="f-file-error">[^<]*PDF, PNG or JPEG', resp.text)
    for kind, name, content, ctype in (
        ("business_licence", "licence.png", crossborder.sample_png(), "image/png"),
        ("commitment_letter", "承诺书.pdf", crossborder.sample_pdf(), "application/pdf"),
    ):
        resp = multipart(admin, f"{detail}/documents", kind, name, content, ctype)
        assert resp.status_code == 303, resp.text
    with world.runtime.db.session(write=False) as session:
        docs = session.scalars(select(CrossBorderDocument)).all()
        assert sorted(d.kind for d in docs) == ["business_licence", "commitment_letter"]
        doc_id = docs[0].id
    assert admin.get(f"/console/crossborder/documents/{doc_id}").status_code == 200
    resp = admin.post(f"{detail}/submit", follow_redirects=False)
    assert resp.status_code == 303

    officer = as_person(world, world.operators["compliance_officer"])
    queue = officer.get("/console/crossborder-queue")
    assert queue.status_code == 200 and f"/console/crossborder/{app_id}" in queue.text
    assert officer.post(f"{detail}/review", follow_redirects=False).status_code == 303
    today = shanghai_today(world.runtime.clock())
    approval = {
        "approval_ref": "CU-XB-1",
        "link_id": link_id,
        "approved_mbps": "150",
        "valid_from": today.isoformat(),
        "valid_to": (today + timedelta(days=365)).isoformat(),
    }
    # Over the link's capacity: refused with the numbers, next to the bandwidth.
    resp = officer.post(f"{detail}/approve", approval)
    assert resp.status_code == 409
    assert re.search(r'id="f-approved_mbps-error">at most 100 Mbit/s free', resp.text)
    resp = officer.post(
        f"{detail}/approve", {**approval, "approved_mbps": "20"}, follow_redirects=False
    )
    assert resp.status_code == 303, resp.text
    with world.runtime.db.session(write=False) as session:
        app = session.get(CrossBorderApplication, uuid.UUID(app_id))
        assert app is not None
        assert (app.state, app.approved_mbps, app.approval_ref) == ("approved", 20, "CU-XB-1")
    page = admin.get("/console/crossborder")
    assert "Authorised: your path abroad is open." in page.text


def test_refusals_show_next_to_their_fields(world: World) -> None:
    site = overseas_site(world)
    admin = as_person(world, world.a.admin)
    resp = admin.post(
        "/console/crossborder",
        form(site["id"], internal_use_only="", bandwidth_mbps="0", term_end="2020-01-01"),
    )
    assert resp.status_code == 422
    assert re.search(r'id="f-bandwidth_mbps-error">[^<]+<', resp.text)
    # Without the undertaking (the rest valid): told why, next to the box.
    resp = admin.post("/console/crossborder", form(site["id"], internal_use_only=""))
    assert resp.status_code == 422
    assert re.search(r'id="f-internal_use_only-error">[^<]*internal office use only', resp.text)
    assert 'value="Li Na"' in resp.text  # what was typed is kept
    with world.runtime.db.session(write=False) as session:
        assert session.scalar(select(CrossBorderApplication.id)) is None


def test_other_tenants_and_other_roles(world: World) -> None:
    site = overseas_site(world)
    admin = as_person(world, world.a.admin)
    resp = admin.post("/console/crossborder", form(site["id"]), follow_redirects=False)
    detail = resp.headers["location"].split("?")[0]
    other = as_person(world, world.b.admin)
    assert other.get(detail).status_code == 404
    assert other.post(f"{detail}/submit").status_code == 404
    # Only the compliance officer decides: the operator admin and the tenant admin get 403.
    for who in (world.admin, world.a.admin):
        resp = as_person(world, who).post(f"{detail}/reject", {"reason": "no"})
        assert resp.status_code == 403, who.role
        assert "compliance_officer" in resp.text
    assert as_person(world, world.a.employee).get("/console/crossborder").status_code == 403
    assert as_person(world, world.a.admin).get("/console/crossborder-queue").status_code == 404
