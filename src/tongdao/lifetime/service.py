"""Device lifetime (what NetBird and Firezone call session expiry): a tenant may set N days; a
device whose user has not signed in (console or CLI) for N days is disabled, so it leaves the
desired state the PoPs get, until the user signs in again.

* The clock of a device starts at the latest of its user's last sign-in and the moment the
  tenant turned the lifetime on (so turning it on never disables a device at once for
  sign-ins made before it was recorded). Registering a device does not start it (an API
  token outlives the lifetime; a session is a sign-in anyway).
* A held device comes back by its user's sign-in; the user cannot enable it otherwise (their
  API token would be a way round). Anyone else setting its state ends the hold.
* :func:`expire` (the scheduled job ``devices.lifetime`` under its lease, and ``tongdao
  devices expire``) disables the active devices past their lifetime and remembers each in a
  :class:`LifetimeHold`; :func:`signed_in` (called by every successful sign-in) gives the
  user's held devices back (active, or pending while the owner's identity is unverified).
  Turning the lifetime off gives back every held device of the tenant.
* Each device changed is audited (the device's own change, and ``device_lifetime_expired`` /
  ``device_lifetime_restored`` saying why); the setting's changes are audited too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select

from tongdao.audit.recorder import Actor, record, set_actor
from tongdao.errors import ValidationError
from tongdao.lifetime.models import DeviceLifetime, LastSignIn, LifetimeHold
from tongdao.network.models import Device, DeviceState
from tongdao.runtime import Ctx, Runtime
from tongdao.tenancy.models import Tenant, User

JOB = "devices.lifetime"
JOB_ACTOR = Actor(None, f"job:{JOB}")
MAX_DAYS = 3650


def setting(ctx: Ctx, tenant_id: uuid.UUID) -> DeviceLifetime | None:
    return ctx.session.get(DeviceLifetime, tenant_id)


def set_days(ctx: Ctx, tenant: Tenant, days: int | None) -> DeviceLifetime | None:
    """Turn the lifetime on with ``days`` (1 to 3650), change it, or turn it off (None)."""
    current = setting(ctx, tenant.id)
    if days is None:
        if current is not None:
            ctx.session.delete(current)
            for hold in ctx.session.scalars(
                select(LifetimeHold)
                .where(LifetimeHold.tenant_id == tenant.id)
                .order_by(LifetimeHold.device_id)
            ):
                _release(ctx, hold, "lifetime_off")
        return None
    if isinstance(days, bool) or not 1 <= days <= MAX_DAYS:
        raise ValidationError({"days": f"a whole number of days from 1 to {MAX_DAYS}"})
    if current is None:
        current = DeviceLifetime(tenant_id=tenant.id, days=days, since=ctx.runtime.clock())
        ctx.session.add(current)
    elif current.days != days:
        current.days = days
    return current


def holds(ctx: Ctx, tenant_id: uuid.UUID) -> list[LifetimeHold]:
    return list(
        ctx.session.scalars(
            select(LifetimeHold)
            .where(LifetimeHold.tenant_id == tenant_id)
            .order_by(LifetimeHold.since, LifetimeHold.device_id)
        )
    )


def held(ctx: Ctx, device_ids: list[uuid.UUID]) -> dict[uuid.UUID, LifetimeHold]:
    """The holds of these devices, by device id (for showing why a device is disabled)."""
    if not device_ids:
        return {}
    return {
        h.device_id: h
        for h in ctx.session.scalars(
            select(LifetimeHold).where(LifetimeHold.device_id.in_(device_ids))
        )
    }


def last_sign_in(ctx: Ctx, user_id: uuid.UUID) -> datetime | None:
    row = ctx.session.get(LastSignIn, user_id)
    return row.at if row is not None else None


def _release(ctx: Ctx, hold: LifetimeHold, why: str) -> None:
    device = ctx.session.get(Device, hold.device_id)
    if device is not None and device.state == DeviceState.DISABLED:
        owner = ctx.session.get(User, device.user_id)
        verified = owner is not None and owner.identity_verified_at is not None
        device.state = DeviceState.ACTIVE if verified else DeviceState.PENDING
        record(
            ctx.session,
            "device_lifetime_restored",
            "device",
            device.id,
            tenant_id=device.tenant_id,
            user_id=device.user_id,
            after={"why": why, "state": device.state},
        )
    ctx.session.delete(hold)


def device_state_set(ctx: Ctx, device: Device, state: str) -> None:
    """Someone sets a device's state (the device service, before the change): a held device
    comes back only by its user's sign-in, not by the user's API token; anyone else's
    decision (an admin's, a leaver's revocation) ends the hold, so a later sign-in does not
    undo it."""
    hold = ctx.session.get(LifetimeHold, device.id)
    if hold is None:
        return
    if state == DeviceState.ACTIVE and ctx.user_id == device.user_id:
        raise ValidationError(
            {"state": "the device lifetime took this device off: sign in again to bring it back"}
        )
    ctx.session.delete(hold)


def signed_in(ctx: Ctx, user: User) -> None:
    """A user signed in (console, CLI): their clock starts again and the devices the lifetime
    took off the gateways come back."""
    now = ctx.runtime.clock()
    row = ctx.session.get(LastSignIn, user.id)
    if row is None:
        ctx.session.add(LastSignIn(user_id=user.id, at=now))
    else:
        row.at = now
    for hold in ctx.session.scalars(
        select(LifetimeHold).where(LifetimeHold.user_id == user.id).order_by(LifetimeHold.device_id)
    ):
        _release(ctx, hold, "signed_in")


@dataclass
class ExpiryOutcome:
    disabled: list[uuid.UUID] = field(default_factory=list)


def expire(ctx: Ctx, now: datetime | None = None) -> ExpiryOutcome:
    """Disable every active device past its tenant's lifetime (in ``ctx``'s transaction)."""
    now = now or ctx.runtime.clock()
    outcome = ExpiryOutcome()
    for lifetime in ctx.session.scalars(
        select(DeviceLifetime).order_by(DeviceLifetime.tenant_id)
    ).all():
        cutoff = now - timedelta(days=lifetime.days)
        if lifetime.since > cutoff:
            continue  # turned on less than N days ago: nobody's clock has run out
        rows = ctx.session.execute(
            select(Device, LastSignIn.at)
            .outerjoin(LastSignIn, LastSignIn.user_id == Device.user_id)
            .where(Device.tenant_id == lifetime.tenant_id, Device.state == DeviceState.ACTIVE)
            .order_by(Device.id)
        ).all()
        for device, signed in rows:
            # The user's sign-ins only: a device registered (or re-keyed) with a long-lived API
            # token does not start the clock again.
            start = max(t for t in (signed, lifetime.since) if t is not None)
            if start > cutoff:
                continue
            device.state = DeviceState.DISABLED
            # One hold per device: a hold left behind (the device enabled some other way)
            # is taken over, never doubled (that failed the run for every tenant).
            hold = ctx.session.get(LifetimeHold, device.id)
            if hold is None:
                ctx.session.add(
                    LifetimeHold(
                        device_id=device.id,
                        tenant_id=device.tenant_id,
                        user_id=device.user_id,
                        since=now,
                    )
                )
            else:
                hold.user_id, hold.since = device.user_id, now
            record(
                ctx.session,
                "device_lifetime_expired",
                "device",
                device.id,
                tenant_id=device.tenant_id,
                user_id=device.user_id,
                after={
                    "days": lifetime.days,
                    "last_sign_in": signed.isoformat() if signed else None,
                },
            )
            outcome.disabled.append(device.id)
    return outcome


def run(
    runtime: Runtime, now: datetime | None = None, *, actor: Actor = JOB_ACTOR
) -> ExpiryOutcome:
    """One run of the job, in a transaction of its own."""
    with runtime.db.session() as session:
        set_actor(session, actor)
        outcome = expire(Ctx(session=session, runtime=runtime), now)
        session.commit()
    return outcome


class LeaseHeld(Exception):
    """Another replica (or command) is running the job."""


def run_job(runtime: Runtime, holder: str) -> ExpiryOutcome:
    """The job under its lease (:mod:`tongdao.jobs.lease`); raises :class:`LeaseHeld`."""
    from tongdao.jobs import lease
    from tongdao.jobs.scheduler import LEASE_TTL

    db = runtime.db
    if not lease.acquire(db, JOB, holder, runtime.clock(), LEASE_TTL):
        raise LeaseHeld(JOB)
    try:
        return run(runtime)
    finally:
        lease.release(db, JOB, holder, runtime.clock(), done=runtime.clock().isoformat())
