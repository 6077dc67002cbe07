"""Faults and bad input (issue 10): cursors and dates at their extremes answer 422, never 500;
a WireGuard public key is used once in the whole data plane; a site moved across the border
re-enters approval; look-alike e-mail addresses are normalised (NFKC) or refused."""

from __future__ import annotations

import base64
import threading
import uuid
from functools import partial
from typing import Any

import pytest

from tests.api.test_gateway import activate, enrol, make_pop
from tests.conftest import both_stores
from tests.support.world import PASSWORD, World, make_user
from tongdao.testing.keys import public_key

API = "/api/v1"


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def field_error(resp: Any, status: int, field: str) -> str:
    assert resp.status_code == status, resp.text
    fields: dict[str, str] = resp.json()["error"]["fields"]
    assert field in fields, fields
    return fields[field]


# --- cursors and dates ---------------------------------------------------------------------------
@both_stores
@pytest.mark.parametrize(
    "decoded", ["9" * 47, "-" + "9" * 46, str(2**63), str(-(2**63) - 1), "1e9", "١٢"]
)
def test_an_audit_cursor_out_of_range_is_422(world: World, decoded: str) -> None:
    resp = world.client.get(
        f"{API}/audit/events", params={"cursor": b64(decoded)}, headers=world.admin.headers
    )
    field_error(resp, 422, "cursor")


@both_stores
def test_audit_cursors_still_page(world: World) -> None:
    h = world.admin.headers
    first = world.client.get(f"{API}/audit/events", params={"limit": 2}, headers=h).json()
    assert first["next_cursor"] is not None
    resp = world.client.get(
        f"{API}/audit/events", params={"limit": 2, "cursor": first["next_cursor"]}, headers=h
    )
    assert resp.status_code == 200, resp.text
    seqs = [e["seq"] for e in first["data"] + resp.json()["data"]]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 4


EXTREME_DATES = [
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01",
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-12:00",
    "1969-12-31T23:59:59Z",
]


@both_stores
def test_dates_at_the_extremes_answer_422_never_500(world: World) -> None:
    pop = make_pop(world, "bj")
    paths = [
        f"{API}/audit/events",
        f"{API}/audit/export",
        f"{API}/tenants/{world.a.id}/usage",
        f"{API}/pops/{pop}/usage",
    ]
    for path in paths:
        for param in ("since", "until"):
            for value in EXTREME_DATES:
                resp = world.client.get(path, params={param: value}, headers=world.admin.headers)
                message = field_error(resp, 422, param)
                assert "1970-01-01" in message, (path, param, value, message)
        # In range still works.
        resp = world.client.get(
            path, params={"until": "2026-01-02T00:00:00+08:00"}, headers=world.admin.headers
        )
        assert resp.status_code == 200, (path, resp.text)


# --- WireGuard keys ------------------------------------------------------------------------------
def _iface(world: World, pop: str, tenant_id: uuid.UUID, key: str) -> Any:
    return world.client.put(
        f"{API}/pops/{pop}/interfaces/{tenant_id}",
        json={"public_key": key},
        headers=world.admin.headers,
    )


def _device(world: World, key: str, tenant: str = "a") -> Any:
    t = world.a if tenant == "a" else world.b
    return world.client.post(
        f"{API}/tenants/{t.id}/devices",
        json={"name": "laptop", "public_key": key},
        headers=t.employee.headers,
    )


_SITES = iter(range(100, 200))


def _site(world: World, key: str | None, name: str, tenant: str = "a") -> Any:
    t = world.a if tenant == "a" else world.b
    return world.client.post(
        f"{API}/tenants/{t.id}/sites",
        json={
            "name": name,
            "country": "CN",
            "purpose": "office",
            "prefixes": [f"198.18.{next(_SITES)}.0/24"],
            "connector_public_key": key,
        },
        headers=t.admin.headers,
    )


@both_stores
def test_a_wireguard_key_is_used_once_in_the_data_plane(world: World) -> None:
    pop = make_pop(world, "bj")
    iface_key, connector_key, device_key = public_key(), public_key(), public_key()
    assert _iface(world, pop, world.a.id, iface_key).status_code == 200
    assert _site(world, connector_key, "office").status_code == 201
    assert _device(world, device_key).status_code == 201

    # A device with the PoP interface's key, or a connector's, in the tenant or another one.
    for key in (iface_key, connector_key):
        for tenant in ("a", "b"):
            assert "in use" in field_error(_device(world, key, tenant), 409, "public_key")
    # A site connector with a device's or an interface's key.
    for key in (device_key, iface_key):
        field_error(_site(world, key, f"s-{key[:4]}"), 409, "connector_public_key")
    site = _site(world, None, "later").json()
    resp = world.client.patch(
        f"{API}/tenants/{world.a.id}/sites/{site['id']}",
        json={"connector_public_key": device_key},
        headers=world.a.admin.headers,
    )
    field_error(resp, 409, "connector_public_key")
    # A PoP interface (this tenant's or another's, by the operator or the gateway) with a
    # device's, a connector's or another interface's key.
    for key in (device_key, connector_key):
        field_error(_iface(world, pop, world.a.id, key), 409, "public_key")
    field_error(_iface(world, pop, world.b.id, iface_key), 409, "public_key")
    activate(world, world.a.id)
    gw = enrol(world, pop)
    resp = world.client.put(
        f"{API}/gateway/interfaces/{world.a.id}", json={"public_key": device_key}, headers=gw
    )
    field_error(resp, 409, "public_key")
    # A device changing its key to a connector's.
    dev = _device(world, public_key()).json()
    resp = world.client.patch(
        f"{API}/tenants/{world.a.id}/devices/{dev['id']}",
        json={"public_key": connector_key},
        headers=world.a.employee.headers,
    )
    field_error(resp, 409, "public_key")
    # Each object keeps its own key when it is saved again.
    assert _iface(world, pop, world.a.id, iface_key).status_code == 200
    resp = world.client.patch(
        f"{API}/tenants/{world.a.id}/devices/{dev['id']}",
        json={"public_key": dev["public_key"], "name": "renamed"},
        headers=world.a.employee.headers,
    )
    assert resp.status_code == 200, resp.text


def _race(calls: list[Any]) -> list[int]:
    """Start ``calls`` together from threads; their status codes."""
    statuses: list[int] = []
    barrier = threading.Barrier(len(calls))

    def call(fn: Any) -> None:
        barrier.wait(timeout=10)
        statuses.append(fn().status_code)

    threads = [threading.Thread(target=call, args=(fn,)) for fn in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return statuses


@both_stores
def test_one_key_under_concurrent_writers(world: World) -> None:
    """A device, a site connector and two PoP interfaces race for one key: one wins, the
    others get 409 (the per-table unique indexes cannot see across tables; the lock can)."""
    pops = [make_pop(world, name, host=f"198.51.100.{20 + i}") for i, name in enumerate("pq")]
    for round_ in range(3):
        key = public_key()
        statuses = _race(
            [
                partial(_device, world, key),
                partial(_site, world, key, f"race-{round_}"),
                partial(_iface, world, pops[0], world.b.id, key),
                partial(_iface, world, pops[1], world.a.id, key),
            ]
        )
        assert sorted(statuses) in ([200, 409, 409, 409], [201, 409, 409, 409]), statuses


# --- a site moved across the border --------------------------------------------------------------
@both_stores
def test_moving_an_active_site_across_the_border_re_enters_approval(world: World) -> None:
    bj = make_pop(world, "bj")
    sh = make_pop(world, "sh", region="CN-SH", host="198.51.100.11")
    fra = make_pop(world, "fra", region="DE-HE", host="203.0.113.20")
    h = world.a.admin.headers
    resp = world.client.post(
        f"{API}/tenants/{world.a.id}/sites",
        json={
            "name": "beijing-office",
            "country": "CN",
            "purpose": "office",
            "pop_id": bj,
            "prefixes": ["198.18.60.0/24"],
        },
        headers=h,
    )
    assert resp.status_code == 201, resp.text
    site = world.approve_site(resp.json())
    url = f"{API}/tenants/{world.a.id}/sites/{site['id']}"
    resp = world.client.patch(url, json={"state": "active"}, headers=world.admin.headers)
    assert resp.status_code == 200, resp.text

    # Within China: still active, still approved.
    resp = world.client.patch(url, json={"pop_id": sh}, headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.json()["state"] == "active"
    assert resp.json()["approved_prefixes"] == ["198.18.60.0/24"]

    # Abroad: the declarations go back to the compliance officer, the site stops being routed.
    resp = world.client.patch(url, json={"pop_id": fra}, headers=h)
    assert resp.status_code == 200, resp.text
    moved = resp.json()
    assert moved["state"] == "pending"
    assert moved["approved_prefixes"] == []
    assert [d["state"] for d in moved["declarations"]] == ["pending"]
    events = world.client.get(
        f"{API}/audit/events",
        params={"object_id": site["id"], "action": "update"},
        headers=world.admin.headers,
    ).json()["data"]
    assert events and events[0]["after"]["state"] == "pending", events[:1]
    # The tenant admin cannot put it back; after the approval the operator activates it.
    resp = world.client.patch(url, json={"state": "active"}, headers=h)
    assert resp.status_code == 403, resp.text
    site = world.approve_site(moved)
    assert site["approved_prefixes"] == ["198.18.60.0/24"]
    resp = world.client.patch(url, json={"state": "active"}, headers=world.admin.headers)
    assert resp.status_code == 200, resp.text

    # And back into China: across the border again, so approved again.
    resp = world.client.patch(url, json={"pop_id": bj}, headers=h)
    assert resp.json()["state"] == "pending", resp.text
    assert [d["state"] for d in resp.json()["declarations"]] == ["pending"]


# --- look-alike e-mail addresses -----------------------------------------------------------------
def _user(world: World, email: str) -> Any:
    return world.client.post(
        f"{API}/tenants/{world.a.id}/users",
        json={"email": email, "display_name": "Li Na"},
        headers=world.a.admin.headers,
    )


def test_full_width_e_mail_addresses_are_normalised(world: World) -> None:
    resp = _user(world, "ＬＩ.Ｎａ@Ａcme.example")
    assert resp.status_code == 201, resp.text
    assert resp.json()["email"] == "li.na@acme.example"
    field_error(_user(world, "li.na@acme.example"), 409, "email")
    field_error(_user(world, "li.na@ａｃｍｅ.example"), 409, "email")
    # Ligatures and the like fold too (NFKC).
    assert _user(world, "ﬁona@acme.example").json()["email"] == "fiona@acme.example"
    # Lists find the user by any form of the address.
    resp = world.client.get(
        f"{API}/tenants/{world.a.id}/users",
        params={"email": "Ｌｉ.na@acme.example"},
        headers=world.a.admin.headers,
    )
    assert [u["email"] for u in resp.json()["data"]] == ["li.na@acme.example"]


@pytest.mark.parametrize(
    "email",
    [
        "lі.na@acme.example",  # Cyrillic і in a Latin local part
        "li.na@аcme.example",  # Cyrillic а in a Latin domain label
        "li.na@acme.exаmple",  # in the top-level label
        "αlice@acme.example",  # Greek alpha
        "аdmin@acme.example",  # Cyrillic а
    ],
)
def test_mixed_script_look_alikes_are_refused(world: World, email: str) -> None:
    message = field_error(_user(world, email), 422, "email")
    assert "mixes" in message, message
    resp = world.client.post(
        f"{API}/operator/staff",
        json={"email": email, "display_name": "Look Alike", "roles": ["auditor"]},
        headers=world.admin.headers,
    )
    field_error(resp, 422, "email")


@pytest.mark.parametrize(
    "email", ["иван@почта.example", "李娜@acme.example", "li娜@acme.example", "δοκιμή@acme.example"]
)
def test_single_script_and_han_with_latin_are_accepted(world: World, email: str) -> None:
    assert _user(world, email).status_code == 201


def test_login_looks_up_the_normalised_address(world: World) -> None:
    make_user(world.runtime, "wang.fang@a.example", ["employee"], world.a.id)
    resp = world.client.post(
        f"{API}/auth/login", json={"email": "Ｗang.Ｆang@a.example", "password": PASSWORD}
    )
    assert resp.status_code == 200, resp.text


# --- migration 0012 ------------------------------------------------------------------------------
@both_stores
def test_migration_normalises_emails_and_frees_duplicate_interface_keys(
    world: World, store_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    from sqlalchemy import create_engine, text

    from tongdao.store import migrate

    for email in ("li@x.example", "zhao@x.example", "zhao2@x.example"):
        assert _user(world, email).status_code == 201
    pop = make_pop(world, "bj")
    key = public_key()
    assert _iface(world, pop, world.a.id, key).status_code == 200
    assert _iface(world, pop, world.b.id, public_key()).status_code == 200
    world.runtime.db.dispose()

    migrate.downgrade(store_url, "0011_report_bounds")
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            # What the code before 0012 let in: other forms of addresses, a shared key.
            for old, new in (
                ("li@x.example", "ＬＩ@x.example"),
                ("zhao2@x.example", "ＺＨＡＯ@x.example"),
            ):
                conn.execute(
                    text("UPDATE users SET email = :new WHERE email = :old"),
                    {"new": new, "old": old},
                )
            conn.execute(
                text("UPDATE pop_tenant_interfaces SET public_key = :key WHERE tenant_id = :b"),
                {"key": key, "b": world.b.id if "sqlite" not in store_url else world.b.id.hex},
            )
        caplog.set_level("WARNING")
        migrate.upgrade(store_url)
        with engine.connect() as conn:
            emails = set(conn.execute(text("SELECT email FROM users")).scalars())
            keys = dict(
                conn.execute(text("SELECT tenant_id, public_key FROM pop_tenant_interfaces")).all()
            )
    finally:
        engine.dispose()
    assert {"li@x.example", "zhao@x.example", "ＺＨＡＯ@x.example"} <= emails
    assert sorted(keys.values(), key=str) == sorted([key, None], key=str)
    assert "normal form 'zhao@x.example'" in caplog.text
    assert "had the WireGuard key of interface" in caplog.text


# --- a store error that is a bug -----------------------------------------------------------------
def test_a_store_error_that_is_a_bug_stays_a_500_in_json(world: World, app: Any) -> None:
    """Not every driver error is an outage: a missing table is a bug, answered 500 (in the
    error envelope) with its traceback logged, never a 503 that would hide it."""
    from fastapi.testclient import TestClient
    from sqlalchemy import text

    with world.runtime.db.engine.begin() as conn:
        conn.execute(text("DROP TABLE groups"))
    client = TestClient(app, raise_server_exceptions=False)
    resp = client.get(f"{API}/tenants/{world.a.id}/groups", headers=world.a.admin.headers)
    assert resp.status_code == 500, resp.text
    assert resp.json()["error"]["code"] == "internal_error"
    assert "retry-after" not in resp.headers
