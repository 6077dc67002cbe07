"""The auditor's pages over HTTP: the audit log with its filters, names and diffs, machine
records left out by default, chain verification and the regulator export."""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from tests.api.test_gateway import activate, enrol, make_pop, state
from tests.conftest import both_stores
from tests.support.console import as_person
from tests.support.world import World
from tongdao.audit.models import AuditEvent
from tongdao.web.i18n import SHANGHAI
from tongdao.web.pages.audit import diff, local_to_utc

API = "/api/v1"
ACTION = re.compile(r'<span class="event-action">([^<]+)</span>')


def auditor_of(world: World) -> Any:
    return as_person(world, world.operators["auditor"])


def actions(html: str) -> list[str]:
    return ACTION.findall(html)


def records(html: str) -> str:
    """The page's list of records (not its filters or menus)."""
    return html[html.index('id="records-title"') :]


def gateway_acknowledges(world: World) -> None:
    """A PoP gateway enrols, polls and acknowledges twice (once with an error)."""
    activate(world, world.a.id)
    gw = enrol(world, make_pop(world, "bj1"))
    desired = state(world, gw)
    for body in ({"version": desired.version}, {"version": desired.version, "error": "nft"}):
        resp = world.client.post(f"{API}/gateway/ack", json=body, headers=gw)
        assert resp.status_code == 204, resp.text


def test_the_log_shows_people_with_names_and_diffs(world: World) -> None:
    resp = world.client.patch(
        f"{API}/tenants/{world.b.id}",
        json={"contact_name": "王经理"},
        headers=world.admin.headers,
    )
    assert resp.status_code == 200
    page = auditor_of(world).get("/console/audit", params={"object_type": "tenant"})
    assert page.status_code == 200, page.text
    assert "Asia/Shanghai" in page.text
    first = page.text.index('<li class="event"')
    newest = page.text[first : page.text.index("</li>", first)]
    # Newest first: the update, with the tenant's name beside its id and the change as a diff.
    assert '<span class="event-action">update</span>' in newest
    assert "<strong>Tenant B</strong>" in newest and str(world.b.id) in newest
    assert "operator_admin@operator.example" in newest
    assert '<td class="added">王经理</td>' in newest
    assert '<td class="removed"></td>' in newest  # the empty contact name it replaced


@both_stores
def test_the_filter_by_action_returns_only_that_action(world: World) -> None:
    auditor = auditor_of(world)
    everything = actions(auditor.get("/console/audit").text)
    assert len(set(everything)) > 1
    creates = auditor.get("/console/audit", params={"action": "verify_identity"})
    assert creates.status_code == 200
    found = actions(creates.text)
    assert found and set(found) == {"verify_identity"}
    # The same filter through the API returns the same records.
    api = world.client.get(
        f"{API}/audit/events",
        params={"action": "verify_identity", "machine": "false", "limit": 50},
        headers=world.operators["auditor"].headers,
    ).json()
    assert len(found) == api["count"] == 4


def test_filters_by_actor_object_kind_tenant_and_source_ip(world: World) -> None:
    auditor = auditor_of(world)
    by_actor = auditor.get(
        "/console/audit", params={"actor": "COMPLIANCE_OFFICER@operator.example"}
    )
    assert set(actions(by_actor.text)) >= {"create", "verify_identity"}
    assert "operator_admin@operator.example" not in by_actor.text
    licences = auditor.get("/console/audit", params={"object_type": "licence"})
    assert actions(licences.text) == ["create"]
    tenant_b = auditor.get("/console/audit", params={"tenant": str(world.b.id)})
    shown = records(tenant_b.text)
    assert str(world.b.id) in shown and str(world.a.id) not in shown
    nobody = auditor.get("/console/audit", params={"source_ip": "203.0.113.77"})
    assert actions(nobody.text) == []
    assert "No record matches" in nobody.text
    loopback = auditor.get("/console/audit", params={"source_ip": "testclient"})
    assert loopback.status_code == 422
    assert 'id="f-source_ip-error">not an IPv4 or IPv6 address<' in loopback.text


def test_the_time_range_is_entered_in_shanghai_time(world: World) -> None:
    auditor = auditor_of(world)
    now = datetime.now(SHANGHAI)
    recent = auditor.get(
        "/console/audit",
        params={"since": (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")},
    )
    assert actions(recent.text)
    # An hour ahead in Shanghai is 7 hours behind in UTC: read as UTC, it would match all.
    ahead = (now + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    assert actions(auditor.get("/console/audit", params={"since": ahead}).text) == []
    bad = auditor.get("/console/audit", params={"since": "yesterday"})
    assert bad.status_code == 422
    assert "Asia/Shanghai" in re.search(r'id="f-since-error">([^<]*)<', bad.text).group(1)  # type: ignore[union-attr]
    backwards = auditor.get(
        "/console/audit", params={"since": "2026-12-06T10:00", "until": "2026-12-06T09:00"}
    )
    assert backwards.status_code == 422
    assert local_to_utc("2026-12-06T08:00") == datetime(2026, 12, 6, 0, 0, tzinfo=UTC)


@both_stores
def test_machine_records_are_hidden_by_default(world: World) -> None:
    gateway_acknowledges(world)
    auditor = auditor_of(world)
    default = auditor.get("/console/audit", params={"object_type": "gateway"})
    # Enrolment made the gateway (a person's token redeemed), acknowledgements are telemetry.
    assert "gateway:" not in records(default.text)
    assert actions(default.text) == ["create"]
    included = auditor.get("/console/audit", params={"object_type": "gateway", "machine": "yes"})
    assert actions(included.text) == ["update", "update", "create"]
    assert "applied_version" in included.text and "apply_error" in included.text
    assert 'checked aria-describedby="f-machine-hint"' in included.text
    # The API's own filter agrees.
    people = world.client.get(
        f"{API}/audit/events",
        params={"object_type": "gateway", "machine": "false"},
        headers=world.operators["auditor"].headers,
    ).json()
    assert [e["action"] for e in people["data"]] == ["create"]


def test_pages_of_the_log_follow_the_cursor(world: World) -> None:
    for n in range(40):
        resp = world.client.post(
            f"{API}/tenants/{world.a.id}/groups",
            json={"name": f"team-{n}"},
            headers=world.a.admin.headers,
        )
        assert resp.status_code == 201, resp.text
    auditor = auditor_of(world)
    first = auditor.get("/console/audit", params={"action": "create"})
    total = int(re.search(r"(\d+) records match", first.text).group(1))  # type: ignore[union-attr]
    assert total > 50
    link = re.search(r'href="\?([^"]*cursor=[^"]+)"', first.text)
    assert link, "no next page link"
    href = link.group(1).replace("&amp;", "&")
    assert "action=create" in href
    second = auditor.get("/console/audit?" + href)
    assert second.status_code == 200
    ids_one = re.findall(r'id="event-(\d+)"', first.text)
    ids_two = re.findall(r'id="event-(\d+)"', second.text)
    assert len(ids_one) == 50 and ids_two and not set(ids_one) & set(ids_two)
    assert min(map(int, ids_one)) > max(map(int, ids_two))
    assert set(actions(second.text)) == {"create"}
    bad = auditor.get("/console/audit", params={"cursor": "%%%"})
    assert bad.status_code == 422


def test_a_tenant_admin_reads_their_own_tenants_records_only(world: World) -> None:
    admin_a = as_person(world, world.a.admin)
    page = admin_a.get("/console/audit")
    assert page.status_code == 200
    assert str(world.a.id) in page.text
    assert str(world.b.id) not in page.text and "Tenant B" not in page.text
    assert 'name="tenant"' not in page.text  # no tenant to choose
    assert "/console/audit/verify" not in page.text
    assert admin_a.get("/console/audit/verify").status_code == 403
    for person in (world.a.employee, world.operators["billing_clerk"]):
        assert as_person(world, person).get("/console/audit").status_code == 403


def test_verification_shows_an_intact_then_a_broken_chain(world: World) -> None:
    auditor = auditor_of(world)
    idle = auditor.get("/console/audit/verify")
    assert idle.status_code == 200 and "The chain is" not in idle.text
    intact = auditor.get("/console/audit/verify", params={"run": "1"})
    assert "The chain is intact." in intact.text
    report = world.client.get(
        f"{API}/audit/verify", headers=world.operators["auditor"].headers
    ).json()
    assert report["head_hash"] in intact.text
    with world.runtime.db.session() as session:
        victim = session.scalar(select(AuditEvent.id).order_by(AuditEvent.id).offset(3).limit(1))
        session.execute(update(AuditEvent).where(AuditEvent.id == victim).values(action="tampered"))
        session.commit()
    broken = auditor.get("/console/audit/verify", params={"run": "1"})
    assert "The chain is broken." in broken.text
    assert "edited" in broken.text


def _zip(body: bytes) -> tuple[dict[str, Any], list[str]]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        lines = archive.read("records.jsonl").decode().splitlines()
    return manifest, lines


def test_the_regulator_export_downloads_from_the_page(world: World) -> None:
    auditor = auditor_of(world)
    form = auditor.get("/console/audit/export")
    assert form.status_code == 200
    answer = auditor.get(
        "/console/audit/export/download",
        params={"format": "jsonl", "tenant": str(world.b.id), "user": "", "since": ""},
    )
    assert answer.status_code == 200, answer.text[:500]
    assert answer.headers["content-type"] == "application/zip"
    assert "attachment; filename=" in answer.headers["content-disposition"]
    manifest, lines = _zip(answer.content)
    assert manifest["filters"]["tenant_id"] == str(world.b.id)
    tenants = {json.loads(line)["tenant_id"] for line in lines}
    assert tenants == {str(world.b.id)}
    # The export is itself recorded, as the API's is.
    exports = world.client.get(
        f"{API}/audit/events",
        params={"action": "export"},
        headers=world.operators["auditor"].headers,
    ).json()["data"]
    assert exports[0]["actor"] == "auditor@operator.example"
    refused = auditor.get(
        "/console/audit/export/download",
        params={"format": "xml", "source_ip": "nowhere", "user": "nobody@x.example"},
    )
    assert refused.status_code == 422
    for name in ("format", "source_ip", "user"):
        assert re.search(rf'id="f-{name}-error">[^<]+<', refused.text), name


def test_a_tenant_admins_export_holds_their_tenant_only(world: World) -> None:
    admin_a = as_person(world, world.a.admin)
    page = admin_a.get("/console/audit/export")
    assert "your tenant" in page.text
    answer = admin_a.get("/console/audit/export/download", params={"format": "jsonl"})
    assert answer.status_code == 200
    _manifest, lines = _zip(answer.content)
    assert lines
    assert {json.loads(line)["tenant_id"] for line in lines} == {str(world.a.id)}
    foreign = admin_a.get(
        "/console/audit/export/download", params={"format": "jsonl", "tenant": str(world.b.id)}
    )
    assert foreign.status_code == 422
    assert re.search(r'id="f-tenant-error">[^<]+<', foreign.text) is None  # no such field
    assert "choose a tenant from the list" in foreign.text
    other_user = admin_a.get(
        "/console/audit/export/download", params={"user": "tenant_admin@b.example"}
    )
    assert other_user.status_code == 422


def test_the_diff_is_field_by_field() -> None:
    changes = diff({"a": 1, "b": "x", "same": True}, {"a": 2, "c": ["y"], "same": True})
    assert [(c.field, c.before, c.after) for c in changes] == [
        ("a", "1", "2"),
        ("b", "x", None),
        ("c", None, '["y"]'),
    ]
    assert [c.after for c in diff(None, {"k": "v"})] == ["v"]
