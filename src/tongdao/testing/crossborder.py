"""The two PoPs and the registered link every cross-border topology uses (the demo and the
namespace tests): ``cn-bj-1`` in Beijing and ``de-fra-1`` in Frankfurt, created through the
public API by an operator admin."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ApiCall = Callable[..., Any]  # (method, path, json=...) -> the decoded response body

BJ_ENDPOINT = "198.51.100.1"
FRA_ENDPOINT = "203.0.113.2"
PORTS_PER_POP = 5


def create_pops(admin: ApiCall, base: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """``cn-bj-1`` with ports ``base``..``base+4``, ``de-fra-1`` with the next five."""
    pops = [
        admin(
            "POST",
            "/pops",
            json={
                "name": name,
                "region": region,
                "country": region[:2],
                "endpoint_host": host,
                "port_min": base + offset,
                "port_max": base + offset + PORTS_PER_POP - 1,
            },
        )
        for name, region, host, offset in (
            ("cn-bj-1", "CN-BJ", BJ_ENDPOINT, 0),
            ("de-fra-1", "DE-FRA", FRA_ENDPOINT, PORTS_PER_POP),
        )
    ]
    return pops[0], pops[1]


def link_pops(
    admin: ApiCall, bj: dict[str, Any], fra: dict[str, Any], circuit_ref: str, approval_ref: str
) -> dict[str, Any]:
    """The registered cross-border link ``bj-fra`` with its circuit and approval references."""
    link: dict[str, Any] = admin(
        "POST",
        "/links",
        json={
            "name": "bj-fra",
            "pop_a_id": bj["id"],
            "pop_b_id": fra["id"],
            "circuit_ref": circuit_ref,
            "approval_ref": approval_ref,
            "capacity_mbps": 100,
        },
    )
    return link


def sample_png() -> bytes:
    """A small real PNG (a scanned licence stands in)."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def sample_pdf() -> bytes:
    """A real PDF: the commitment letter template itself."""
    from tongdao.crossborder.letter import template_pdf

    return template_pdf("Example operator")


def application_body(site_ids: list[str], bandwidth_mbps: int = 20) -> dict[str, Any]:
    return {
        "internal_use_only": True,
        "site_ids": site_ids,
        "bandwidth_mbps": bandwidth_mbps,
        "headcount": 40,
        "manager_name": "Li Na",
        "manager_phone": "+8613800138000",
        "manager_email": "it@example.com",
        "term_start": "2026-01-01",
        "term_end": "2030-12-31",
    }


def apply(
    tenant_admin: ApiCall,
    upload: Callable[[str, str, bytes, str], Any],
    tenant_id: str,
    site_ids: list[str],
    bandwidth_mbps: int = 20,
) -> dict[str, Any]:
    """A tenant admin's application with both required documents, submitted.

    ``upload(path, kind, content, content_type)`` posts a document (raw body)."""
    base = f"/tenants/{tenant_id}/crossborder/applications"
    app: dict[str, Any] = tenant_admin(
        "POST", base, json=application_body(site_ids, bandwidth_mbps)
    )
    path = f"{base}/{app['id']}/documents"
    upload(path, "business_licence", sample_png(), "image/png")
    upload(path, "commitment_letter", sample_pdf(), "application/pdf")
    submitted: dict[str, Any] = tenant_admin("POST", f"{base}/{app['id']}/submit")
    return submitted


def approve(
    officer: ApiCall,
    app_id: str,
    link_id: str,
    approved_mbps: int,
    valid_from: str,
    valid_to: str,
    approval_ref: str = "CU-XB-2026-0001",
) -> dict[str, Any]:
    approved: dict[str, Any] = officer(
        "POST",
        f"/crossborder/applications/{app_id}/approve",
        json={
            "approval_ref": approval_ref,
            "link_id": link_id,
            "approved_mbps": approved_mbps,
            "valid_from": valid_from,
            "valid_to": valid_to,
        },
    )
    return approved


def http_uploader(api_base: str, headers: dict[str, str]) -> Callable[[str, str, bytes, str], Any]:
    """``upload`` for :func:`apply` over HTTP (``api_base`` ends in ``/api/v1``)."""
    import httpx

    def up(path: str, kind: str, content: bytes, content_type: str) -> Any:
        resp = httpx.post(
            api_base + path,
            params={"kind": kind},
            content=content,
            headers={**headers, "Content-Type": content_type},
            timeout=30,
        )
        if resp.status_code != 201:
            raise RuntimeError(f"POST {path}: {resp.status_code} {resp.text}")
        return resp.json()

    return up


def authorise(
    tenant_admin: ApiCall,
    upload: Callable[[str, str, bytes, str], Any],
    officer: ApiCall,
    tenant_id: str,
    site_ids: list[str],
    link_id: str,
    mbps: int = 20,
    days: int = 365,
) -> dict[str, Any]:
    """Apply and have the compliance officer approve, valid from today (Asia/Shanghai)."""
    from datetime import UTC, datetime, timedelta

    from tongdao.billing.money import shanghai_today

    app = apply(tenant_admin, upload, tenant_id, site_ids, mbps)
    today = shanghai_today(datetime.now(UTC))
    return approve(
        officer,
        app["id"],
        link_id,
        mbps,
        today.isoformat(),
        (today + timedelta(days=days)).isoformat(),
    )
