"""Privacy notices, consents, and a user's personal data: export and erasure.

Consent that counts ("current"): not revoked, given to a notice no older than the latest one
published with ``reconsent_required``. A user without a current transfer-abroad consent is not
routed abroad (:mod:`tongdao.gateway.service`, :func:`tongdao.network.service.device_config`).

Erasure pseudonymises the user row (it stays: devices, consents, audit events and connection
records refer to it), revokes the devices, ends the sessions and revokes a transfer-abroad
consent. Records younger than rule ``logs.retention`` are logs the law requires and are kept
as they are; older ones lose their personal fields: connection records the device's public
address, audit records (about the user, or made by them) their personal fields through
:func:`tongdao.audit.retention.erase_personal`, which keeps the hash chain verifiable.
Deleting a user or device outright while their connection records are within retention is
refused.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, func, select, update
from sqlalchemy.orm import Session

from tongdao.api.crud import ensure_unique
from tongdao.audit.recorder import actor_of, record, set_actor
from tongdao.audit.retention import erase_personal
from tongdao.auth.models import ApiToken
from tongdao.compliance import retention as rp
from tongdao.compliance.rules import ComplianceRefusal, rule
from tongdao.errors import Conflict, PermissionDenied, ValidationError
from tongdao.gateway.models import UsageRecord
from tongdao.gateway.periods import as_utc, exact_sum, joined, shanghai_report_day
from tongdao.network.models import Device, DeviceState
from tongdao.privacy import schemas as s
from tongdao.privacy.models import (
    Consent,
    ConsentKind,
    ConsentMethod,
    ConsentVia,
    PrivacyNotice,
)
from tongdao.runtime import Ctx
from tongdao.tenancy.models import Group, GroupMember, IdType, User, UserState

ERASED_NAME = "erased user"
ERASED_DEVICE_NAME = "erased"


def erased_email(user_id: uuid.UUID) -> str:
    return f"erased-{user_id.hex}@erased.invalid"


# --- notices ---------------------------------------------------------------------------------
def current_notice(session: Session) -> PrivacyNotice | None:
    return session.scalar(select(PrivacyNotice).order_by(PrivacyNotice.seq.desc()).limit(1))


def notice_public(notice: PrivacyNotice) -> s.NoticePublic:
    return s.NoticePublic.model_validate(
        {
            **{k: getattr(notice, k) for k in s.NoticePublic.model_fields if hasattr(notice, k)},
            "published_at": notice.created_at,
        }
    )


def publish_notice(ctx: Ctx, data: s.NoticeCreate) -> PrivacyNotice:
    ensure_unique(ctx, PrivacyNotice.version, data.version, what="a notice")
    last = ctx.session.scalar(select(func.max(PrivacyNotice.seq)))
    notice = PrivacyNotice(
        version=data.version,
        seq=int(last or 0) + 1,
        title=data.title,
        text=data.text,
        transfer_abroad_text=data.transfer_abroad_text,
        reconsent_required=data.reconsent_required,
        published_by=ctx.user_id,
    )
    ctx.session.add(notice)
    return notice


def _cutoff_seq() -> Any:
    """The oldest notice seq a consent may be given to and still count (a scalar subquery)."""
    return (
        select(func.coalesce(func.max(PrivacyNotice.seq), 0))
        .where(PrivacyNotice.reconsent_required.is_(True))
        .scalar_subquery()
    )


def _current_consents(kind: ConsentKind) -> list[ColumnElement[bool]]:
    return [
        Consent.kind == kind,
        Consent.revoked_at.is_(None),
        PrivacyNotice.seq >= _cutoff_seq(),
    ]


def abroad_consenting_users(session: Session, tenant_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
    """Users of these tenants with a current consent to transfer abroad (one query)."""
    ids = list(tenant_ids)
    if not ids:
        return set()
    stmt = (
        select(Consent.user_id)
        .join(PrivacyNotice, PrivacyNotice.id == Consent.notice_id)
        .where(Consent.tenant_id.in_(ids), *_current_consents(ConsentKind.TRANSFER_ABROAD))
    )
    return set(session.scalars(stmt))


def consents_abroad(session: Session, user_id: uuid.UUID) -> bool:
    stmt = (
        select(Consent.id)
        .join(PrivacyNotice, PrivacyNotice.id == Consent.notice_id)
        .where(Consent.user_id == user_id, *_current_consents(ConsentKind.TRANSFER_ABROAD))
        .limit(1)
    )
    return session.scalar(stmt) is not None


def refuse_abroad_without_consent(session: Session, user_id: uuid.UUID, what: str) -> None:
    if not consents_abroad(session, user_id):
        raise ComplianceRefusal(
            "pi.notice_and_consent",
            f"{what} is abroad and the device's owner has no current consent to transfer abroad",
            {"pop_id": "the owner has not consented to transfer abroad"},
        )


# --- consents --------------------------------------------------------------------------------
def list_consents(session: Session, user: User) -> list[s.ConsentPublic]:
    cutoff = int(session.scalar(select(_cutoff_seq())) or 0)
    rows = session.execute(
        select(Consent, PrivacyNotice.version, PrivacyNotice.seq)
        .join(PrivacyNotice, PrivacyNotice.id == Consent.notice_id)
        .where(Consent.user_id == user.id)
        .order_by(Consent.given_at.desc(), Consent.id.desc())
    ).all()
    return [
        consent_public(c, version, c.revoked_at is None and seq >= cutoff)
        for c, version, seq in rows
    ]


def consent_public(consent: Consent, notice_version: str, current: bool) -> s.ConsentPublic:
    return s.ConsentPublic.model_validate(
        {
            **{k: getattr(consent, k) for k in s.ConsentPublic.model_fields if hasattr(consent, k)},
            "notice_version": notice_version,
            "current": current,
        }
    )


def give_consent(ctx: Ctx, user: User, data: s.ConsentCreate) -> s.ConsentPublic:
    """Record a consent to the current notice: by the person, or by an admin with evidence."""
    from tongdao.tenancy.service import refuse_if_erased

    refuse_if_erased(user)
    principal = ctx.require_principal()
    notice = current_notice(ctx.session)
    if notice is None:
        raise ComplianceRefusal(
            "pi.notice_and_consent",
            "no privacy notice is published yet; the operator publishes one before consents "
            "are recorded",
        )
    if data.notice_version != notice.version:
        raise ValidationError(
            {"notice_version": f"consent is given to the current notice, version {notice.version}"}
        )
    own = principal.user_id == user.id
    via = _credential(ctx)
    if own and via is not ConsentVia.SESSION:
        r = rule("pi.notice_and_consent")
        raise PermissionDenied(
            "a consent of your own is given in your own signed-in session (the console or "
            "`tongdao login`), not with an API token, which a script or someone else may hold "
            f"(rule {r.id}: {r.text}; source: {r.source})"
        )
    if not own and data.evidence is None:
        raise ValidationError(
            {
                "evidence": "a consent recorded on someone else's behalf needs a reference to "
                "their signed consent"
            }
        )
    kind = ConsentKind(data.kind)
    accepted = _has(ctx.session, user, notice, ConsentKind.NOTICE)
    if kind is ConsentKind.TRANSFER_ABROAD and accepted is None:
        raise ComplianceRefusal(
            "pi.notice_and_consent",
            f"the consent to transfer abroad is separate from, and comes after, accepting the "
            f"notice: accept notice {notice.version} first",
            {"kind": f"accept notice {notice.version} first"},
        )
    existing = _has(ctx.session, user, notice, kind)
    if existing is not None:
        return consent_public(existing, notice.version, True)  # given already: no duplicate
    consent = Consent(
        tenant_id=user.tenant_id,
        user_id=user.id,
        notice_id=notice.id,
        kind=kind,
        method=ConsentMethod.SELF if own else ConsentMethod.RECORDED,
        evidence=data.evidence,
        given_at=ctx.runtime.clock(),
        recorded_by=principal.user_id,
        given_via=via,
        source_ip=ctx.source_ip,
    )
    ctx.session.add(consent)
    ctx.session.flush()
    return consent_public(consent, notice.version, True)


def _credential(ctx: Ctx) -> ConsentVia:
    """Whether the caller came with a signed-in session or an API token."""
    token = ctx.session.get(ApiToken, ctx.require_principal().token_id)
    return (
        ConsentVia.SESSION
        if token is not None and token.kind == "session"
        else (ConsentVia.API_TOKEN)
    )


def _has(session: Session, user: User, notice: PrivacyNotice, kind: ConsentKind) -> Consent | None:
    return session.scalar(
        select(Consent)
        .where(
            Consent.user_id == user.id,
            Consent.notice_id == notice.id,
            Consent.kind == kind,
            Consent.revoked_at.is_(None),
        )
        .limit(1)
    )


def revoke_transfer_abroad(ctx: Ctx, user: User) -> int:
    """Revoke the user's consent to transfer abroad (idempotent); the records stay."""
    now = ctx.runtime.clock()
    revoked = 0
    for consent in ctx.session.scalars(
        select(Consent).where(
            Consent.user_id == user.id,
            Consent.kind == ConsentKind.TRANSFER_ABROAD,
            Consent.revoked_at.is_(None),
        )
    ):
        consent.revoked_at = now
        consent.revoked_by = ctx.user_id
        revoked += 1
    return revoked


# --- retention -------------------------------------------------------------------------------
def retention_note(margin_days: int = rp.DEFAULT_MARGIN_DAYS) -> s.RetentionNote:
    r = rule("logs.retention")
    return s.RetentionNote(rule=r.id, months=rp.months(), margin_days=margin_days, text=r.text)


def retention_cutoff(now: datetime, margin_days: int = rp.DEFAULT_MARGIN_DAYS) -> datetime:
    return rp.retention_cutoff(now, margin_days)


def _device_records(tenant_id: uuid.UUID, device_ids: Sequence[uuid.UUID]) -> list[Any]:
    return [
        UsageRecord.tenant_id == tenant_id,
        UsageRecord.peer_kind == "device",
        UsageRecord.peer_ref.in_([str(d) for d in device_ids]),
    ]


def records_in_retention(
    session: Session,
    tenant_id: uuid.UUID,
    device_ids: Sequence[uuid.UUID],
    now: datetime,
    margin_days: int = rp.DEFAULT_MARGIN_DAYS,
) -> tuple[int, datetime | None]:
    """How many connection records of these devices the retention rule still holds, and the
    end of the youngest one's period."""
    if not device_ids:
        return 0, None
    count, youngest = session.execute(
        select(func.count(), func.max(UsageRecord.period_end)).where(
            *_device_records(tenant_id, device_ids),
            UsageRecord.period_end >= retention_cutoff(now, margin_days),
        )
    ).one()
    return int(count), as_utc(youngest)


def refuse_deleting_logged_devices(
    ctx: Ctx, tenant_id: uuid.UUID, device_ids: Sequence[uuid.UUID], instead: str
) -> None:
    """Refuse a delete that would orphan connection records still within retention."""
    margin = ctx.runtime.settings.retention_margin_days
    count, _youngest = records_in_retention(
        ctx.session, tenant_id, device_ids, ctx.runtime.clock(), margin
    )
    if count:
        period = rp.describe(margin)
        raise ComplianceRefusal(
            "logs.retention",
            f"{count} connection record(s) of the last {period} belong to "
            f"{'this device' if len(device_ids) == 1 else 'these devices'} and must be kept "
            f"with their owner; {instead}",
        )


# --- export ----------------------------------------------------------------------------------
def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _connection_days(
    session: Session, tenant_id: uuid.UUID, device_ids: Sequence[uuid.UUID]
) -> list[s.ConnectionDay]:
    if not device_ids:
        return []
    where = _device_records(tenant_id, device_ids)
    # Asia/Shanghai days, as every period in Tongdao (a record ending 23:30 UTC is the next day's).
    day = shanghai_report_day(session).label("day")
    endpoints: dict[tuple[str, date], list[str]] = defaultdict(list)
    for ref, d, endpoint in session.execute(
        select(UsageRecord.peer_ref, day, UsageRecord.endpoint)
        .where(*where, UsageRecord.endpoint.is_not(None))
        .group_by(UsageRecord.peer_ref, day, UsageRecord.endpoint)
        .order_by(UsageRecord.endpoint)
    ):
        endpoints[(str(ref), _as_date(d))].append(str(endpoint))
    rows = session.execute(
        select(
            UsageRecord.peer_ref,
            day,
            *exact_sum(UsageRecord.rx_bytes),
            *exact_sum(UsageRecord.tx_bytes),
            func.max(UsageRecord.last_handshake),
        )
        .where(*where)
        .group_by(UsageRecord.peer_ref, day)
    ).all()
    out = [
        s.ConnectionDay(
            device_id=str(ref),
            day=_as_date(d),
            rx_bytes=joined(rx_high, rx_low),
            tx_bytes=joined(tx_high, tx_low),
            endpoints=endpoints.get((str(ref), _as_date(d)), []),
            last_handshake=as_utc(handshake),
        )
        for ref, d, rx_high, rx_low, tx_high, tx_low, handshake in rows
    ]
    return sorted(out, key=lambda r: (r.day, r.device_id))


def export_personal_data(ctx: Ctx, user: User) -> s.PersonalDataExport:
    """Everything Tongdao holds about the person, ID number decrypted; the export itself is
    written to the audit log (committed before the data is handed out)."""
    from tongdao.tenancy.service import _open_id_number

    assert user.tenant_id is not None
    session = ctx.session
    devices = list(
        session.scalars(select(Device).where(Device.user_id == user.id).order_by(Device.id))
    )
    device_ids = [d.id for d in devices]
    groups = list(
        session.scalars(
            select(Group.name)
            .join(GroupMember, GroupMember.group_id == Group.id)
            .where(GroupMember.user_id == user.id)
            .order_by(Group.name)
        )
    )
    now = ctx.runtime.clock()
    export = s.PersonalDataExport(
        exported_at=now,
        user_id=user.id,
        tenant_id=user.tenant_id,
        account=s.AccountExport.model_validate(user, from_attributes=True),
        identity=s.IdentityExport(
            legal_name=user.legal_name,
            id_type=IdType(user.id_type) if user.id_type else None,
            id_number=_open_id_number(ctx, user),
            mobile=user.mobile,
            verified_at=user.identity_verified_at,
        ),
        groups=groups,
        devices=[s.DeviceExport.model_validate(d, from_attributes=True) for d in devices],
        consents=list_consents(session, user),
        connection_days=_connection_days(session, user.tenant_id, device_ids),
        retention=retention_note(ctx.runtime.settings.retention_margin_days),
    )
    # The request's own transaction only reads; the record of the export commits on its own,
    # before anything is returned.
    with ctx.runtime.db.session() as audit:
        set_actor(audit, actor_of(session))
        record(
            audit,
            "export_personal_data",
            "user",
            user.id,
            tenant_id=user.tenant_id,
            after={
                "devices": len(devices),
                "consents": len(export.consents),
                "connection_days": len(export.connection_days),
                "id_number_decrypted": user.id_number_sealed is not None,
            },
        )
        audit.flush()  # flushed before commit: the audit chain numbers what is flushed
        audit.commit()
    return export


# --- erasure ---------------------------------------------------------------------------------
def erase_personal_data(ctx: Ctx, user: User) -> s.ErasureReport:
    """Pseudonymise the user and keep what the retention rule requires (see the module)."""
    principal = ctx.require_principal()
    assert user.tenant_id is not None
    if user.id == principal.user_id:
        raise Conflict(
            "you cannot erase your own account while using it; another tenant admin or a "
            "compliance officer erases it on your request"
        )
    session = ctx.session
    now = ctx.runtime.clock()
    margin = ctx.runtime.settings.retention_margin_days
    device_ids = list(session.scalars(select(Device.id).where(Device.user_id == user.id)))
    already = user.erased_at is not None
    revoked_devices = revoked_consents = sessions = blanked = 0
    if not already:
        for device in session.scalars(select(Device).where(Device.user_id == user.id)):
            if device.state != DeviceState.REVOKED:
                device.state = DeviceState.REVOKED
                revoked_devices += 1
            device.name = ERASED_DEVICE_NAME
        revoked_consents = revoke_transfer_abroad(ctx, user)
        for token in session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)):
            session.delete(token)
            sessions += 1
        for membership in list(user.memberships):
            session.delete(membership)
        user.email = erased_email(user.id)
        user.display_name = ERASED_NAME
        user.password_hash = None
        user.totp_secret_sealed = None
        user.totp_enabled = False
        user.legal_name = user.id_type = user.id_number_sealed = None
        user.id_number_last4 = None
        user.id_number_length = None
        user.mobile = None
        user.identity_verified_at = None
        user.identity_verified_by = None
        user.state = UserState.DISABLED
        user.erased_at = now
        session.flush()
    if device_ids:
        # Records past retention lose the device's public address; younger ones stay whole.
        result = cast(
            CursorResult[Any],
            session.execute(
                update(UsageRecord)
                .where(
                    *_device_records(user.tenant_id, device_ids),
                    UsageRecord.period_end < retention_cutoff(now, margin),
                    UsageRecord.endpoint.is_not(None),
                )
                .values(endpoint=None)
                .execution_options(synchronize_session=False)
            ),
        )
        blanked = int(result.rowcount or 0)
    # A consent stays as the record of what was consented to, when and how; past retention it
    # loses the address it was given from.
    consent_addresses = cast(
        CursorResult[Any],
        session.execute(
            update(Consent)
            .where(
                Consent.user_id == user.id,
                Consent.given_at < retention_cutoff(now, margin),
                Consent.source_ip.is_not(None),
            )
            .values(source_ip=None)
            .execution_options(synchronize_session=False)
        ),
    )
    consents_blanked = int(consent_addresses.rowcount or 0)
    # The audit log: records about the user, and who-fields of records they made, lose their
    # personal fields where older than the retention period (tamper-evidently, see
    # tongdao.audit.chain); younger ones are kept whole.
    audit_blanked = erase_personal(
        session, user.id, now=now, tenant_id=user.tenant_id, margin_days=margin
    )
    kept, youngest = records_in_retention(session, user.tenant_id, device_ids, now, margin)
    report = s.ErasureReport(
        user_id=user.id,
        erased_at=user.erased_at or now,
        devices_revoked=revoked_devices,
        consents_revoked=revoked_consents,
        sessions_ended=sessions,
        connection_records_kept=kept,
        kept_until=None if youngest is None else rp.kept_until(youngest, margin),
        endpoints_blanked=blanked,
        consent_addresses_blanked=consents_blanked,
        audit_records_blanked=audit_blanked,
        retention=retention_note(margin),
    )
    if not already or blanked or consents_blanked or audit_blanked:
        record(
            session,
            "erase_personal_data",
            "user",
            user.id,
            tenant_id=user.tenant_id,
            after=report.model_dump(mode="json", exclude={"retention"}),
        )
    return report
