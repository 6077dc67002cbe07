"""Cross-border service per tenant (issue 14): applying with documents, the compliance
officer's decision, the gate on the inter-PoP peering, device configs and /paths, the link's
capacity, and expiry with a fake clock."""

from __future__ import annotations

import email
import email.policy
import io
import json
import os
import time
import uuid
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from PIL import Image
from sqlalchemy import select

from tests.api.test_gateway import activate, activate_site, enrol, make_pop, make_site, state
from tests.conftest import both_stores
from tests.support.privacy import consent_abroad, publish_notice
from tests.support.world import World
from tongdao.audit.models import AuditEvent
from tongdao.billing.money import shanghai_today
from tongdao.crossborder import expiry
from tongdao.crossborder.documents import MAX_BYTES
from tongdao.gateway.service import site_paths
from tongdao.network.models import Site
from tongdao.runtime import Ctx, Runtime
from tongdao.testing import crossborder
from tongdao.testing.keys import public_key

API = "/api/v1"


class Net:
    """Tenant A: a device at BJ, an HQ site at FRA, both gateways with published keys."""

    def __init__(self, world: World, *, link: bool = True, capacity: int = 100) -> None:
        self.world = world
        self.bj = make_pop(world, "bj")
        self.fra = make_pop(world, "fra", region="DE-FRA", host="203.0.113.20")
        self.gw_bj, self.gw_fra = enrol(world, self.bj), enrol(world, self.fra)
        activate(world, world.a.id)
        activate(world, world.b.id)
        self.device = self.make_device()
        self.site = make_site(
            world, ["198.18.7.0/24"], pop_id=self.fra, connector_public_key=public_key()
        )
        activate_site(world, self.site)
        for gw in (self.gw_bj, self.gw_fra):
            state(world, gw)
            resp = world.client.put(
                f"{API}/gateway/interfaces/{world.a.id}",
                json={"public_key": public_key()},
                headers=gw,
            )
            assert resp.status_code == 204, resp.text
        publish_notice(world.client, world.admin.headers)
        consent_abroad(world.client, world.a.id, world.a.employee.user_id, world.a.employee.headers)
        self.link: dict[str, Any] = {}
        if link:
            resp = world.client.post(
                f"{API}/links",
                json={
                    "name": "bj-fra",
                    "pop_a_id": self.bj,
                    "pop_b_id": self.fra,
                    "circuit_ref": "CU-1",
                    "approval_ref": "工信部国际〔2026〕7号",
                    "capacity_mbps": capacity,
                },
                headers=world.admin.headers,
            )
            assert resp.status_code == 201, resp.text
            self.link = resp.json()

    def make_device(self) -> dict[str, Any]:
        resp = self.world.client.post(
            f"{API}/tenants/{self.world.a.id}/devices",
            json={"name": "laptop", "public_key": public_key()},
            headers=self.world.a.employee.headers,
        )
        assert resp.status_code == 201, resp.text
        return dict(resp.json())

    def bj_pop_peers(self) -> list[Any]:
        return [p for p in state(self.world, self.gw_bj).tenants[0].peers if p.kind == "pop"]

    def conf(self) -> str:
        resp = self.world.client.get(
            f"{API}/tenants/{self.world.a.id}/devices/{self.device['id']}/wireguard.conf",
            headers=self.world.a.employee.headers,
        )
        assert resp.status_code == 200, resp.text
        return resp.text

    def paths(self) -> list[dict[str, Any]]:
        resp = self.world.client.get(
            f"{API}/tenants/{self.world.a.id}/sites/{self.site['id']}/paths",
            headers=self.world.a.admin.headers,
        )
        assert resp.status_code == 200, resp.text
        return list(resp.json())


def call(world: World, who: dict[str, str]) -> Any:
    def do(method: str, path: str, **kw: Any) -> Any:
        resp = world.client.request(method, API + path, headers=who, **kw)
        assert resp.status_code < 300, f"{method} {path}: {resp.status_code} {resp.text}"
        return resp.json() if resp.content else None

    return do


def uploader(world: World, who: dict[str, str]) -> Any:
    def up(path: str, kind: str, content: bytes, content_type: str) -> Any:
        resp = world.client.post(
            API + path,
            params={"kind": kind, "filename": f"{kind}.bin"},
            content=content,
            headers={**who, "Content-Type": content_type},
        )
        assert resp.status_code == 201, resp.text
        return resp.json()

    return up


def apply_a(world: World, net: Net, mbps: int = 20) -> dict[str, Any]:
    admin = world.a.admin.headers
    return crossborder.apply(
        call(world, admin), uploader(world, admin), str(world.a.id), [net.site["id"]], mbps
    )


def today(runtime: Runtime) -> Any:
    return shanghai_today(runtime.clock())


def approve(world: World, app_id: str, link_id: str, mbps: int, days: int = 365) -> Any:
    t = shanghai_today(world.runtime.clock())
    return world.client.post(
        f"{API}/crossborder/applications/{app_id}/approve",
        json={
            "approval_ref": "CU-XB-2026-0001",
            "link_id": link_id,
            "approved_mbps": mbps,
            "valid_from": t.isoformat(),
            "valid_to": (t + timedelta(days=days)).isoformat(),
        },
        headers=world.operators["compliance_officer"].headers,
    )


@both_stores
def test_only_an_approved_tenant_is_carried_across_the_border(world: World) -> None:
    net = Net(world)
    officer = world.operators["compliance_officer"].headers
    # A registered link, but no application: no peering abroad, no HQ route in the config,
    # and /paths names the missing step.
    assert net.bj_pop_peers() == []
    assert "198.18.7.0/24" not in net.conf()
    (path,) = net.paths()
    assert (path["up"], path["crossborder_step"]) == (False, "none")
    assert "apply" in path["reason"] and "crossborder.tenant_authorised" in path["reason"]

    app = apply_a(world, net, mbps=30)
    assert app["state"] == "submitted"
    assert {d["kind"] for d in app["documents"]} == {"business_licence", "commitment_letter"}
    assert all(len(d["sha256"]) == 64 for d in app["documents"])
    assert net.paths()[0]["crossborder_step"] == "submitted"
    status = call(world, world.a.admin.headers)("GET", f"/tenants/{world.a.id}/crossborder/status")
    assert (status["authorised"], status["step"]) == (False, "submitted")

    # The officer's queue holds it; review, then approve with the carrier's reference.
    queue = call(world, officer)("GET", "/crossborder/applications", params={"state": "submitted"})
    assert [a["id"] for a in queue["data"]] == [app["id"]]
    call(world, officer)("POST", f"/crossborder/applications/{app['id']}/review")
    assert net.paths()[0]["crossborder_step"] == "under_review"
    assert net.bj_pop_peers() == []
    resp = approve(world, app["id"], net.link["id"], 25)
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "approved"
    assert resp.json()["decided_by"] == str(world.operators["compliance_officer"].user_id)

    (peer,) = net.bj_pop_peers()
    assert "198.18.7.0/24" in peer.allowed_ips
    assert peer.link_rate_mbps == 25  # enforced on the gateway for this tenant
    assert "198.18.7.0/24" in net.conf()
    (path,) = net.paths()
    assert (path["up"], path["link"]) == (True, "bj-fra")
    status = call(world, world.a.admin.headers)("GET", f"/tenants/{world.a.id}/crossborder/status")
    assert (status["authorised"], status["approved_mbps"]) == (True, 25)
    # Tenant B has no authorisation of its own: nothing changes for it.
    b_status = call(world, world.b.admin.headers)(
        "GET", f"/tenants/{world.b.id}/crossborder/status"
    )
    assert b_status["step"] == "none"
    # Every step is in the audit log, with who did it.
    with world.runtime.db.session(write=False) as session:
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_type == "crossborder_application")
            .order_by(AuditEvent.seq)
        ).all()
        states = [(e.after or {}).get("state") for e in events]
        actors = {e.actor for e in events}
    assert states[-3:] == ["submitted", "under_review", "approved"]
    assert "compliance_officer@operator.example" in actors
    assert "tenant_admin@a.example" in actors


def test_a_rejection_says_why(world: World) -> None:
    net = Net(world)
    app = apply_a(world, net)
    resp = world.client.post(
        f"{API}/crossborder/applications/{app['id']}/reject",
        json={"reason": "the commitment letter is not stamped"},
        headers=world.operators["compliance_officer"].headers,
    )
    assert resp.status_code == 200, resp.text
    (path,) = net.paths()
    assert path["crossborder_step"] == "rejected"
    assert "the commitment letter is not stamped" in path["reason"]
    assert net.bj_pop_peers() == []
    # A rejected application cannot then be approved.
    assert approve(world, app["id"], net.link["id"], 10).status_code == 409


@both_stores
def test_deciding_is_the_compliance_officers_alone(world: World) -> None:
    net = Net(world)
    app = apply_a(world, net)
    body = {
        "approval_ref": "X-1",
        "link_id": net.link["id"],
        "approved_mbps": 10,
        "valid_from": "2026-01-01",
        "valid_to": "2099-01-01",
    }
    for who in (world.admin, world.a.admin, world.operators["auditor"]):
        resp = world.client.post(
            f"{API}/crossborder/applications/{app['id']}/approve", json=body, headers=who.headers
        )
        assert resp.status_code == 403, (who.role, resp.text)
        assert "compliance_officer" in resp.json()["error"]["message"]
        resp = world.client.post(
            f"{API}/crossborder/applications/{app['id']}/reject",
            json={"reason": "no"},
            headers=who.headers,
        )
        assert resp.status_code == 403
    # Another tenant's admin: the application does not exist for them.
    for method, path in (
        ("GET", f"/tenants/{world.a.id}/crossborder/applications/{app['id']}"),
        ("POST", f"/crossborder/applications/{app['id']}/approve"),
        ("GET", f"/tenants/{world.b.id}/crossborder/applications/{app['id']}"),
    ):
        resp = world.client.request(
            method, API + path, json=body if method == "POST" else None,
            headers=world.b.admin.headers,
        )  # fmt: skip
        assert resp.status_code == 404, (path, resp.text)
    listed = world.client.get(f"{API}/crossborder/applications", headers=world.b.admin.headers)
    assert listed.json()["data"] == []
    with world.runtime.db.session(write=False) as session:
        assert (
            session.scalar(
                select(AuditEvent.id).where(
                    AuditEvent.object_type == "crossborder_application",
                    AuditEvent.after["state"].as_string() == "approved",
                )
            )
            is None
        )


def _noise_png(side: int) -> bytes:
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(out, format="PNG")
    return out.getvalue()


def test_uploads_are_checked_by_content_and_size(world: World) -> None:
    net = Net(world, link=False)
    admin = world.a.admin.headers
    app = call(world, admin)(
        "POST",
        f"/tenants/{world.a.id}/crossborder/applications",
        json=crossborder.application_body([net.site["id"]]),
    )
    path = f"{API}/tenants/{world.a.id}/crossborder/applications/{app['id']}/documents"

    def post(content: Any, ctype: str, kind: str = "other", **extra: Any) -> Any:
        return world.client.post(
            path,
            params={"kind": kind},
            content=content,
            headers={**admin, "Content-Type": ctype, **extra},
        )

    png = crossborder.sample_png()
    pdf = crossborder.sample_pdf()
    refusals = {
        "empty": post(b"", "application/pdf"),
        "text called a PDF": post(b"just some text, not a PDF", "application/pdf"),
        "a PNG sent as a PDF": post(png, "application/pdf"),
        "a cut-off PDF": post(pdf[: len(pdf) // 3], "application/pdf"),
        "a cut-off PNG": post(png[:60], "image/png"),
        "a GIF": post(b"GIF89a" + b"\0" * 100, "image/gif"),
    }
    for what, resp in refusals.items():
        assert resp.status_code == 422, (what, resp.text)
        assert "file" in resp.json()["error"]["fields"], what
    # An unknown kind is a field error too.
    assert post(png, "image/png", kind="passport").status_code == 422
    # Over 10 MiB: refused from the declared length, before the body is read ...
    big = b"%PDF-1.4\n" + b"0" * MAX_BYTES
    resp = post(big, "application/pdf")
    assert resp.status_code == 413, resp.text
    assert "file" in resp.json()["error"]["fields"]

    # ... and when streamed without a length.
    def chunks() -> Iterator[bytes]:
        yield b"%PDF-1.4\n"
        for _ in range(12):
            yield b"0" * (1024 * 1024)

    resp = post(chunks(), "application/pdf")
    assert resp.status_code == 413, resp.text
    # Larger than the API's usual 1 MiB is fine here (and only here).
    large = _noise_png(800)
    assert 1024 * 1024 < len(large) < MAX_BYTES
    ok = post(large, "image/png", kind="business_licence")
    assert ok.status_code == 201, ok.text
    stored = ok.json()
    import hashlib

    assert stored["sha256"] == hashlib.sha256(large).hexdigest()
    assert stored["content_type"] == "image/png"
    elsewhere = world.client.post(
        f"{API}/tenants/{world.a.id}/sites",
        content=b"{" + b" " * (1024 * 1024 + 10) + b"}",
        headers={**admin, "Content-Type": "application/json"},
    )
    assert elsewhere.status_code == 413
    # The document comes back byte for byte.
    back = world.client.get(
        f"{API}/tenants/{world.a.id}/crossborder/documents/{stored['id']}", headers=admin
    )
    assert back.status_code == 200 and back.content == large
    assert back.headers["x-content-sha256"] == stored["sha256"]
    # Nothing refused was stored.
    listed = call(world, admin)(
        "GET", f"/tenants/{world.a.id}/crossborder/applications/{app['id']}"
    )
    assert [d["id"] for d in listed["documents"]] == [stored["id"]]
    # Submitting needs the commitment letter too.
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/crossborder/applications/{app['id']}/submit", headers=admin
    )
    assert resp.status_code == 422
    assert list(resp.json()["error"]["fields"]) == ["documents.commitment_letter"]


def test_application_input_is_field_keyed(world: World) -> None:
    net = Net(world, link=False)
    admin = world.a.admin.headers
    base = f"{API}/tenants/{world.a.id}/crossborder/applications"
    good = crossborder.application_body([net.site["id"]])
    for change, field in (
        ({"internal_use_only": False}, "internal_use_only"),
        ({"bandwidth_mbps": 0}, "bandwidth_mbps"),
        ({"term_end": "2025-01-01"}, "term_end"),
        ({"site_ids": [str(uuid.uuid4())]}, "site_ids.0"),
        ({"manager_email": "not-an-address"}, "manager_email"),
    ):
        resp = world.client.post(base, json={**good, **change}, headers=admin)
        assert resp.status_code == 422, (change, resp.text)
        assert field in resp.json()["error"]["fields"], (change, resp.json())
    # A domestic site is not what cross-border service is for.
    home = world.client.post(
        f"{API}/tenants/{world.a.id}/sites",
        json={"name": "office", "country": "CN", "purpose": "office",
              "prefixes": ["198.18.11.0/24"], "pop_id": net.bj},
        headers=admin,
    )  # fmt: skip
    assert home.status_code == 201, home.text
    resp = world.client.post(base, json={**good, "site_ids": [home.json()["id"]]}, headers=admin)
    assert resp.status_code == 422
    assert "site_ids.0" in resp.json()["error"]["fields"]
    # Tenant B cannot apply for tenant A.
    resp = world.client.post(base, json=good, headers=world.b.admin.headers)
    assert resp.status_code == 404


@both_stores
def test_approved_bandwidth_never_exceeds_the_links_capacity(world: World) -> None:
    net = Net(world, capacity=100)
    first = apply_a(world, net, mbps=80)
    assert approve(world, first["id"], net.link["id"], 80).status_code == 200
    second = apply_a(world, net, mbps=30)
    resp = approve(world, second["id"], net.link["id"], 30)
    assert resp.status_code == 409, resp.text
    message = resp.json()["error"]["message"]
    assert "100 Mbit/s" in message and "80 Mbit/s" in message and "at most 20" in message
    assert resp.json()["error"]["fields"] == {"approved_mbps": "at most 20 Mbit/s free"}
    assert approve(world, second["id"], net.link["id"], 20).status_code == 200
    # Nor can the link's capacity go under what is approved on it.
    resp = world.client.patch(
        f"{API}/links/{net.link['id']}", json={"capacity_mbps": 50}, headers=world.admin.headers
    )
    assert resp.status_code == 409, resp.text
    assert "100 Mbit/s" in resp.json()["error"]["message"]
    assert "capacity_mbps" in resp.json()["error"]["fields"]


@both_stores
def test_expiry_warns_twice_then_closes_the_path(world: World, runtime: Runtime) -> None:
    net = Net(world)
    app = apply_a(world, net)
    assert approve(world, app["id"], net.link["id"], 20, days=40).status_code == 200
    assert len(net.bj_pop_peers()) == 1
    start = runtime.clock()

    def run_at(days: int) -> expiry.ExpiryOutcome:
        runtime.clock = lambda: start + timedelta(days=days)
        return expiry.run(runtime)

    def mails(expected: int) -> list[tuple[str, str]]:
        """The cross-border mails delivered to the outbox, once there are ``expected``."""
        outbox = runtime.settings.data_dir / "outbox"
        found: list[tuple[str, str]] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            found = []
            for path in sorted(outbox.glob("*.eml")) if outbox.is_dir() else []:
                message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
                if "Cross-border" in str(message["Subject"]):
                    found.append((str(message["To"]), str(message["Subject"])))
            if len(found) >= expected:
                break
            time.sleep(0.1)
        assert len(found) == expected, found
        return found

    assert run_at(0).warned_30 == []
    out = run_at(10)  # 30 days left
    assert out.warned_30 == [uuid.UUID(app["id"])]
    sent = mails(2)
    assert {r for r, _ in sent} == {"tenant_admin@a.example", "compliance_officer@operator.example"}
    assert all("30 days" in subject for _, subject in sent)
    assert run_at(11).warned_30 == []  # once
    mails(2)
    out = run_at(34)  # 6 days left
    assert out.warned_7 == [uuid.UUID(app["id"])]
    assert run_at(35).warned_7 == []
    assert sum("6 days" in subject for _, subject in mails(4)) == 2
    assert len(net.bj_pop_peers()) == 1  # still valid on its last day
    assert run_at(40).expired == []
    out = run_at(41)
    assert out.expired == [uuid.UUID(app["id"])]
    assert sum("expired" in subject for _, subject in mails(6)) == 2
    # The path abroad is closed; the device still has its domestic service.
    assert net.bj_pop_peers() == []
    peers = state(world, net.gw_bj).tenants[0].peers
    assert [p.kind for p in peers] == ["device"]
    # (The test's API tokens have expired by now: ask the service /paths answers from.)
    with runtime.db.session(write=False) as session:
        site = session.get(Site, uuid.UUID(net.site["id"]))
        assert site is not None
        (expired_path,) = site_paths(Ctx(session=session, runtime=runtime), site)
    assert (expired_path.up, expired_path.crossborder_step) == (False, "expired")
    assert "apply again" in expired_path.reason
    with runtime.db.session(write=False) as session:
        event = session.scalar(select(AuditEvent).where(AuditEvent.action == "crossborder_expired"))
        assert event is not None and event.actor == "job:crossborder.expiry"
    assert run_at(42).expired == []


def test_the_letter_template_is_a_bilingual_pdf(world: World) -> None:
    from pypdf import PdfReader

    resp = world.client.get(f"{API}/crossborder/letter-template.pdf", headers=world.a.admin.headers)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/pdf"
    text = PdfReader(io.BytesIO(resp.content)).pages[0].extract_text()
    assert "信息安全承诺书" in text and "internal office use only" in text
    assert "仅用于本单位内部办公" in text
    # The CJK font is embedded (a subset).
    assert b"/FontFile2" in resp.content
    assert world.client.get(f"{API}/crossborder/letter-template.pdf").status_code == 401


def test_documents_are_in_the_regulator_export(world: World) -> None:
    net = Net(world)
    app = apply_a(world, net)
    resp = world.client.get(
        f"{API}/audit/export",
        params={"tenant_id": str(world.a.id), "format": "jsonl"},
        headers=world.operators["auditor"].headers,
    )
    assert resp.status_code == 200, resp.text
    archive = zipfile.ZipFile(io.BytesIO(resp.content))
    manifest = json.loads(archive.read("manifest.json"))
    listed = {d["sha256"]: d for d in manifest["documents"]}
    for doc in app["documents"]:
        entry = listed[doc["sha256"]]
        import hashlib

        assert hashlib.sha256(archive.read(entry["name"])).hexdigest() == doc["sha256"]
    # Tenant B's export holds none of A's.
    resp = world.client.get(
        f"{API}/audit/export", params={"format": "jsonl"}, headers=world.b.admin.headers
    )
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(resp.content)).read("manifest.json"))
    assert manifest["documents"] == []


def test_a_tenant_with_applications_keeps_them(world: World) -> None:
    """Deleting a tenant (allowed before it is active) is refused while it has applications:
    they and their documents are records to keep."""
    admin = world.b.admin.headers
    site = world.client.post(
        f"{API}/tenants/{world.b.id}/sites",
        json={"name": "hq", "country": "DE", "purpose": "hq", "prefixes": ["198.18.9.0/24"]},
        headers=admin,
    ).json()
    call(world, admin)(
        "POST",
        f"/tenants/{world.b.id}/crossborder/applications",
        json=crossborder.application_body([site["id"]]),
    )
    for user in call(world, world.admin.headers)("GET", f"/tenants/{world.b.id}/users")["data"]:
        call(world, world.admin.headers)("DELETE", f"/tenants/{world.b.id}/users/{user['id']}")
    call(world, world.admin.headers)("DELETE", f"/tenants/{world.b.id}/sites/{site['id']}")
    resp = world.client.delete(f"{API}/tenants/{world.b.id}", headers=world.admin.headers)
    assert resp.status_code == 409, resp.text
    assert "cross-border applications" in resp.json()["error"]["message"]


@both_stores
def test_the_job_runs_from_the_scheduler_and_the_cli(
    world: World, runtime: Runtime, tmp_path: Any, store_url: str
) -> None:
    from typer.testing import CliRunner

    from tests.store.test_billing_jobs import env_for
    from tongdao.cli import app as cli_app
    from tongdao.crossborder.models import CrossBorderApplication
    from tongdao.jobs import lease
    from tongdao.jobs.scheduler import Scheduler

    net = Net(world)
    app = apply_a(world, net)
    assert approve(world, app["id"], net.link["id"], 20, days=20).status_code == 200
    # The scheduler's tick runs the job: 20 days left, the 30-day warning goes out.
    scheduler = Scheduler(runtime, 0)
    scheduler.tick()
    with runtime.db.session(write=False) as session:
        row = session.get(CrossBorderApplication, uuid.UUID(app["id"]))
        assert row is not None and row.warned_30_at is not None and row.state == "approved"
    # Its validity ended yesterday (as if 21 days had passed): the CLI expires it.
    with runtime.db.session() as session:
        row = session.get(CrossBorderApplication, uuid.UUID(app["id"]))
        assert row is not None
        row.valid_from = row.valid_to = shanghai_today(runtime.clock()) - timedelta(days=1)
        session.commit()
    runner = CliRunner()
    env = env_for(tmp_path, store_url)
    assert lease.acquire(runtime.db, expiry.JOB, "replica-x", runtime.clock(), timedelta(minutes=5))
    held = runner.invoke(cli_app, ["crossborder", "expire"], env=env)
    assert held.exit_code == 3 and "lease" in held.output
    lease.release(runtime.db, expiry.JOB, "replica-x", runtime.clock())
    done = runner.invoke(cli_app, ["crossborder", "expire", "--json"], env=env)
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["expired"] == [app["id"]]
    assert net.bj_pop_peers() == []


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels in a few dozen bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_an_image_declaring_a_huge_size_is_a_field_error_not_a_500(world: World) -> None:
    """Pillow refuses to open an image of more than twice its pixel limit with an exception of
    its own (DecompressionBombError, not an OSError): the upload answers 422 on ``file``."""
    net = Net(world, link=False)
    admin = world.a.admin.headers
    app = call(world, admin)(
        "POST",
        f"/tenants/{world.a.id}/crossborder/applications",
        json=crossborder.application_body([net.site["id"]]),
    )
    path = f"{API}/tenants/{world.a.id}/crossborder/applications/{app['id']}/documents"
    for side in (12_000, 20_000, 65_535):
        resp = world.client.post(
            path,
            params={"kind": "other"},
            content=_png_header_only(side, side),
            headers={**admin, "Content-Type": "image/png"},
        )
        assert resp.status_code == 422, (side, resp.text)
        assert resp.json()["error"]["fields"]["file"] == "the image has too many pixels"
