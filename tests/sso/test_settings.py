"""A tenant admin's identity provider settings and e-mail domain claims, through the API:
field-keyed refusals, the client secret sealed and never shown, claims decided by the
compliance officer only, one tenant per approved domain, every change audited."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy import select

from tests.conftest import both_stores
from tests.sso.support import API, claim_and_approve, connect, session_of, sign_in
from tests.support.oidc_provider import OidcProvider
from tests.support.world import World
from tongdao.audit.models import AuditEvent
from tongdao.sso.models import SsoProvider
from tongdao.tenancy.models import GroupMember

BODY = {
    "name": "Contoso Entra ID",
    "issuer": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
    "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
    "client_secret": "the secret from the app registration",
    "email_trust": "entra_xms_edov",
}


@both_stores
def test_the_provider_is_set_with_field_keyed_refusals_and_a_sealed_secret(
    world: World,
) -> None:
    url = f"{API}/tenants/{world.a.id}/sso/provider"
    admin = world.a.admin.headers
    assert world.client.get(url, headers=admin).status_code == 404

    bad = {**BODY, "issuer": "http://idp.example.com", "allowed_domains": ["a.example", "x"]}
    bad.pop("client_secret")
    resp = world.client.put(url, json=bad, headers=admin)
    assert resp.status_code == 422, resp.text
    fields = resp.json()["error"]["fields"]
    assert set(fields) == {
        "issuer",
        "client_secret",
        "allowed_domains.0",
        "allowed_domains.1",
    }, fields
    assert "claim it first" in fields["allowed_domains.0"]
    with world.runtime.db.session() as session:
        assert session.scalar(select(SsoProvider)) is None  # nothing half-written

    claim_and_approve(world, world.a.id, world.a.admin, "A.Example.")
    resp = world.client.put(url, json={**BODY, "allowed_domains": ["a.example"]}, headers=admin)
    assert resp.status_code == 200, resp.text
    public = resp.json()
    assert "client_secret" not in public and public["client_secret_set"] is True
    assert public["allowed_domains"] == ["a.example"]
    assert public["redirect_uri"].endswith("/console/sso/callback")
    assert BODY["client_secret"] not in resp.text

    # Omitting the secret keeps it; the sealed value never reaches the audit log.
    keep = {k: v for k, v in BODY.items() if k != "client_secret"}
    assert world.client.put(url, json=keep, headers=admin).status_code == 200
    with world.runtime.db.session() as session:
        provider = session.scalar(select(SsoProvider))
        assert provider is not None
        assert provider.client_secret_sealed.startswith("v1:")
        assert BODY["client_secret"] not in provider.client_secret_sealed
        assert (
            world.runtime.cipher.open(provider.client_secret_sealed, "sso.client_secret")
            == BODY["client_secret"]
        )
        events = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_type == "sso_provider")
            .order_by(AuditEvent.seq)
        ).all()
    assert [e.action for e in events] == ["create", "update"]
    assert events[0].after["client_secret_sealed"] == "[encrypted]"
    assert events[0].tenant_id == world.a.id

    # Another tenant's admin: 404; an employee: 403; the operator admin reads, cannot write.
    assert world.client.get(url, headers=world.b.admin.headers).status_code == 404
    assert world.client.get(url, headers=world.a.employee.headers).status_code == 403
    assert world.client.get(url, headers=world.admin.headers).status_code == 200
    assert world.client.put(url, json=BODY, headers=world.admin.headers).status_code == 403

    # A group mapping names this tenant's groups; not another tenant's.
    group_b = world.client.post(
        f"{API}/tenants/{world.b.id}/groups",
        json={"name": "vpn-users"},
        headers=world.b.admin.headers,
    ).json()["id"]
    resp = world.client.put(
        url, json={**keep, "groups_claim": "groups", "group_map": {"vpn": group_b}}, headers=admin
    )
    assert resp.status_code == 422 and "group_map.vpn" in resp.json()["error"]["fields"], resp.text

    assert world.client.delete(url, headers=admin).status_code == 204
    assert world.client.get(url, headers=admin).status_code == 404


@both_stores
def test_domain_claims_are_decided_by_the_compliance_officer_for_one_tenant(
    world: World,
) -> None:
    officer = world.operators["compliance_officer"].headers
    claims = f"{API}/tenants/{world.a.id}/sso/domains"
    resp = world.client.post(
        claims, json={"domain": "not a domain", "evidence": "x" * 12}, headers=world.a.admin.headers
    )
    assert resp.status_code == 422 and set(resp.json()["error"]["fields"]) == {"domain"}, resp.text
    resp = world.client.post(
        claims, json={"domain": "a.example", "evidence": "short"}, headers=world.a.admin.headers
    )
    assert resp.status_code == 422 and set(resp.json()["error"]["fields"]) == {"evidence"}, (
        resp.text
    )

    claim = world.client.post(
        claims,
        json={"domain": "a.example", "evidence": "TXT tongdao-verify=1 at a.example"},
        headers=world.a.admin.headers,
    ).json()
    assert claim["state"] == "pending"
    decide = f"{claims}/{claim['id']}/decision"
    # Not the tenant admin, not the operator admin: the compliance officer decides.
    for who in (world.a.admin.headers, world.admin.headers):
        resp = world.client.post(decide, json={"decision": "approve"}, headers=who)
        assert resp.status_code == 403, resp.text
    resp = world.client.post(decide, json={"decision": "reject"}, headers=officer)
    assert resp.status_code == 422 and "reason" in resp.json()["error"]["fields"], resp.text
    resp = world.client.post(decide, json={"decision": "approve"}, headers=officer)
    assert resp.status_code == 200 and resp.json()["state"] == "approved", resp.text
    assert (
        world.client.post(decide, json={"decision": "approve"}, headers=officer).status_code == 409
    )

    # Tenant B claims the same domain: its claim can only be rejected.
    other = world.client.post(
        f"{API}/tenants/{world.b.id}/sso/domains",
        json={"domain": "a.example", "evidence": "we own it, trust us"},
        headers=world.b.admin.headers,
    ).json()
    decide_b = f"{API}/tenants/{world.b.id}/sso/domains/{other['id']}/decision"
    resp = world.client.post(decide_b, json={"decision": "approve"}, headers=officer)
    assert resp.status_code == 409, resp.text
    # B cannot see or act on A's claim (404), nor A on B's.
    assert (
        world.client.delete(f"{claims}/{other['id']}", headers=world.a.admin.headers).status_code
        == 404
    )
    listed = world.client.get(
        f"{API}/tenants/{world.b.id}/sso/domains", headers=world.b.admin.headers
    ).json()
    assert [c["tenant_id"] for c in listed["data"]] == [str(world.b.id)]

    with world.runtime.db.session() as session:
        actions = session.scalars(
            select(AuditEvent.action).where(AuditEvent.object_type == "sso_domain_claim")
        ).all()
    assert actions.count("create") == 2 and "update" in actions


def test_groups_from_the_provider_follow_the_directory_at_each_sign_in(
    world: World, app: FastAPI, oidc_providers: Callable[..., OidcProvider]
) -> None:
    provider = oidc_providers()
    admin = world.a.admin.headers
    groups = {}
    for name in ("engineers", "sales", "manual"):
        body = {"name": name}
        if name == "manual":  # a group the admin manages by hand stays as it is
            body["member_ids"] = [str(world.a.employee.user_id)]
        resp = world.client.post(f"{API}/tenants/{world.a.id}/groups", json=body, headers=admin)
        assert resp.status_code == 201, resp.text
        groups[name] = resp.json()["id"]
    connect(
        world,
        provider,
        groups_claim="groups",
        group_map={"eng": groups["engineers"], "sales-team": groups["sales"]},
    )
    user = provider.add_user("employee@a.example", groups=("eng", "unmapped"))

    def member_of() -> set[str]:
        with world.runtime.db.session() as session:
            rows = session.scalars(
                select(GroupMember.group_id).where(GroupMember.user_id == world.a.employee.user_id)
            ).all()
        names = {v: k for k, v in groups.items()}
        return {names[str(g)] for g in rows}

    manual = {"manual"}
    assert member_of() == manual
    assert session_of(sign_in(app, provider, user))
    assert member_of() == {"engineers"} | manual
    provider.set_user_groups(user, ("sales-team",))
    assert session_of(sign_in(app, provider, user))
    assert member_of() == {"sales"} | manual
    with world.runtime.db.session() as session:
        changes = session.scalars(
            select(AuditEvent.action).where(AuditEvent.object_type == "group_member")
        ).all()
    assert changes.count("create") >= 2 and "delete" in changes
