"""Cross-border console, the review's findings (stop 21): the compliance officer revokes an
approval from its page (a reason required, shown next to the field); the console's letter names
the operator, as the API's does; the console's forms still send whole numbers."""

from __future__ import annotations

import io
import re
import uuid
from datetime import timedelta

from pypdf import PdfReader

from tests.support.console import as_person
from tests.support.world import World
from tests.web.test_crossborder_pages import form, link, multipart, overseas_site
from tongdao.billing.money import shanghai_today
from tongdao.crossborder.models import CrossBorderApplication
from tongdao.testing import crossborder


def approved_application(world: World) -> str:
    site = overseas_site(world)
    link_id = link(world)
    admin = as_person(world, world.a.admin)
    resp = admin.post("/console/crossborder", form(site["id"]), follow_redirects=False)
    assert resp.status_code == 303, resp.text
    detail = resp.headers["location"].split("?")[0]
    for kind, name, content, ctype in (
        ("business_licence", "licence.png", crossborder.sample_png(), "image/png"),
        ("commitment_letter", "letter.pdf", crossborder.sample_pdf(), "application/pdf"),
    ):
        resp = multipart(admin, f"{detail}/documents", kind, name, content, ctype)
        assert resp.status_code == 303, resp.text
    assert admin.post(f"{detail}/submit", follow_redirects=False).status_code == 303
    # Documents are fixed once submitted: the upload form is gone and an upload is refused.
    assert f'action="{detail}/documents"' not in admin.get(detail).text
    resp = multipart(
        admin, f"{detail}/documents", "other", "x.png", crossborder.sample_png(), "image/png"
    )
    assert resp.status_code == 409
    assert "documents are added to a draft only" in resp.text
    officer = as_person(world, world.operators["compliance_officer"])
    today = shanghai_today(world.runtime.clock())
    resp = officer.post(
        f"{detail}/approve",
        {"approval_ref": "CU-XB-1", "link_id": link_id, "approved_mbps": "20",
         "valid_from": today.isoformat(), "valid_to": (today + timedelta(days=365)).isoformat()},
        follow_redirects=False,
    )  # fmt: skip
    assert resp.status_code == 303, resp.text
    return detail


def test_the_officer_revokes_an_approval_from_its_page(world: World) -> None:
    detail = approved_application(world)
    app_id = detail.rsplit("/", 1)[1]
    officer = as_person(world, world.operators["compliance_officer"])
    page = officer.get(detail)
    assert f'action="{detail}/revoke"' in page.text
    # The tenant admin and the operator admin see no such button and may not revoke.
    assert "/revoke" not in as_person(world, world.a.admin).get(detail).text
    assert (
        as_person(world, world.admin).post(f"{detail}/revoke", {"reason": "x"}).status_code == 403
    )
    # Without a reason: told so next to the field.
    resp = officer.post(f"{detail}/revoke", {"reason": ""})
    assert resp.status_code == 422
    assert re.search(r'id="f-reason-error">[^<]+<', resp.text)
    resp = officer.post(
        f"{detail}/revoke", {"reason": "carrier withdrew it"}, follow_redirects=False
    )
    assert resp.status_code == 303, resp.text
    page = officer.get(resp.headers["location"])
    assert "The authorisation is revoked" in page.text and "carrier withdrew it" in page.text
    with world.runtime.db.session(write=False) as session:
        app = session.get(CrossBorderApplication, uuid.UUID(app_id))
        assert app is not None and (app.state, app.reason) == ("revoked", "carrier withdrew it")
    tenant_page = as_person(world, world.a.admin).get("/console/crossborder")
    assert "Revoked: see the reason" in tenant_page.text
    queue = officer.get("/console/crossborder-queue?state=revoked")
    assert f"/console/crossborder/{app_id}" in queue.text
    zh = officer.get(detail, headers={"Accept-Language": "zh-CN"})
    assert zh.status_code == 200


def test_the_consoles_letter_names_the_operator(world: World) -> None:
    body = {
        "legal_name": "Tongdao Beijing JV Ltd",
        "legal_name_zh": "通道（北京）科技有限公司",
        "uscc": "91110000802100433B",
    }
    resp = world.client.put("/api/v1/operator", json=body, headers=world.admin.headers)
    assert resp.status_code == 200, resp.text
    pdf = as_person(world, world.a.admin).get("/console/crossborder/letter.pdf")
    assert pdf.status_code == 200
    text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert "Tongdao Beijing JV Ltd" in text and "通道（北京）科技有限公司" in text
    api = world.client.get("/api/v1/crossborder/letter-template.pdf", headers=world.a.admin.headers)
    assert "Tongdao Beijing JV Ltd" in PdfReader(io.BytesIO(api.content)).pages[0].extract_text()
