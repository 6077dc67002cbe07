"""Request dependencies: the runtime, a session per request, the caller, and the access guard.

Tenant scoping lives here and nowhere else: :class:`Guard` resolves a path's tenant (another
tenant's answers 404), checks the role grant (403), and restricts queries to what the caller
may see (an employee's own devices).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from tongdao.audit.recorder import Actor, set_actor
from tongdao.auth.permissions import Action, roles_allowed
from tongdao.auth.principal import Principal
from tongdao.auth.second_factor import ENROL_FIRST, EnrolmentRequired, enrolment_allowed
from tongdao.auth.service import authenticate_token
from tongdao.errors import AuthenticationError, NotFound, PermissionDenied
from tongdao.runtime import Ctx, Runtime
from tongdao.tenancy.models import Tenant

M = TypeVar("M")

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


# The dependencies that do no I/O are ``async def``: FastAPI runs a plain ``def`` dependency
# in a worker thread, and each such hop cost a request about as much CPU as a statement
# (issue 10: the server is CPU-bound under load). Those that query the store stay ``def``.
async def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def is_write(request: Request) -> bool:
    return request.method not in READ_METHODS


async def get_session(request: Request, runtime: RuntimeDep) -> AsyncIterator[Session]:
    """The request's session; its transaction is the endpoint's to commit.

    Making the session does no I/O. Closing it does only when a transaction is still open
    (an error, or an endpoint that only read or did not commit): then on PostgreSQL the
    ROLLBACK runs in a worker thread, as it did when this was a ``def``.
    """
    session = runtime.db.new_session(write=is_write(request), one_write=True)
    try:
        yield session
    except BaseException:
        if runtime.db.is_sqlite:
            _rollback_and_close(session)
        else:
            await run_in_threadpool(_rollback_and_close, session)
        raise
    if session.in_transaction() and not runtime.db.is_sqlite:
        await run_in_threadpool(_rollback_and_close, session)
    else:
        # Nothing to end, or an SQLite transaction: its ROLLBACK (a read's, or a write's
        # the endpoint did not commit) touches only this process's file locks, no network
        # and no wait, so it costs less here than a hop to a worker thread.
        _rollback_and_close(session)


def _rollback_and_close(session: Session) -> None:
    try:
        session.rollback()
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def source_ip(request: Request) -> str:
    """The client's address: the TCP peer, or, when that peer is one of
    TONGDAO_TRUSTED_PROXIES, the address it forwarded (``tongdao server`` has uvicorn rewrite
    ``request.client`` for those proxies only)."""
    return request.client.host if request.client else "unknown"


async def get_ctx(request: Request, session: SessionDep, runtime: RuntimeDep) -> Ctx:
    """An unauthenticated unit of work (login)."""
    return Ctx(session=session, runtime=runtime, source_ip=source_ip(request))


AnonCtxDep = Annotated[Ctx, Depends(get_ctx)]


def reads_apart(request: Request, ctx: Ctx) -> bool:
    """Whether a dependency must do its reads (who is calling) in a read transaction of its
    own: on an SQLite write request.

    Sync dependencies and the endpoint run in different worker threads, one after the other.
    Were the dependency's first query to begin the request's write transaction, it would take
    SQLite's write lock (queueing on the file's gate) in the dependency's thread, and the
    endpoint would need another thread to finish it. With as many writers waiting for the
    lock as there are threads (TONGDAO_REQUEST_THREADS), the holder's endpoint would never
    get one until the busy timeout. Reading apart, the write lock is taken in the endpoint,
    and held only for the write; a bad credential is refused without waiting for it. The
    check reads the committed state of this moment: a credential revoked from then on is
    refused from the commit of its revocation."""
    return is_write(request) and ctx.runtime.db.write_gate is not None


@contextmanager
def read_apart(ctx: Ctx) -> Iterator[Ctx]:
    """A context like ``ctx`` on a read transaction of its own (see :func:`reads_apart`)."""
    with ctx.runtime.db.session(write=False) as session:
        yield Ctx(session=session, runtime=ctx.runtime, source_ip=ctx.source_ip)


def adopt(ctx: Ctx, apart: Ctx, obj: M) -> M:
    """``obj``, read in ``apart``, as an object of ``ctx``'s session, without a query (so
    without beginning its transaction): changes to it are written by the endpoint's flush."""
    apart.session.expunge(obj)
    return ctx.session.merge(obj, load=False)


def get_auth_ctx(request: Request, ctx: AnonCtxDep) -> Ctx:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationError("authentication required: send 'Authorization: Bearer <token>'")
    if reads_apart(request, ctx):
        with read_apart(ctx) as check:
            ctx.principal = authenticate_token(check, secret.strip())
    else:
        ctx.principal = authenticate_token(ctx, secret.strip())
    if ctx.principal.enrolment_only and not enrolment_allowed(request.url.path):
        raise EnrolmentRequired(ENROL_FIRST)
    set_actor(ctx.session, Actor(ctx.principal.user_id, ctx.principal.email, ctx.source_ip))
    return ctx


CtxDep = Annotated[Ctx, Depends(get_auth_ctx)]


class Guard:
    """The one place that decides what a caller may see and do."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.principal: Principal = ctx.require_principal()

    def tenant(self, tenant_id: uuid.UUID) -> Tenant:
        """The tenant named in a path, or 404 when it is not the caller's to see."""
        tenant = self.ctx.session.get(Tenant, tenant_id)
        if tenant is None or not self.principal.sees_tenant(tenant_id):
            raise NotFound("tenant not found")
        return tenant

    def require(self, resource: str, action: Action) -> None:
        if not self.principal.can(resource, action):
            if action is not Action.READ and "write" not in self.principal.scopes:
                raise PermissionDenied(
                    f"your roles do not allow {action.value} on {resource} (this token is "
                    "read-only)"
                )
            roles = ", ".join(roles_allowed(resource, action)) or "no role"
            raise PermissionDenied(
                f"your roles do not allow {action.value} on {resource}; it is for: {roles}"
            )

    def restrict(
        self,
        stmt: Select[Any],
        resource: str,
        action: Action,
        *,
        tenant_column: Any | None = None,
        owner_column: Any | None = None,
    ) -> Select[Any]:
        """Narrow a query to the rows the caller may see."""
        if tenant_column is not None and not self.principal.is_operator:
            stmt = stmt.where(tenant_column == self.principal.tenant_id)
        if owner_column is not None and self.principal.own_only(resource, action):
            stmt = stmt.where(owner_column == self.principal.user_id)
        return stmt

    def visible(
        self,
        obj: M | None,
        resource: str,
        action: Action,
        *,
        owner: uuid.UUID | None = None,
        tenant_id: uuid.UUID | None = None,
        what: str = "object",
    ) -> M:
        """An object the caller may act on, or 404 (never 403 for something out of scope)."""
        if obj is None:
            raise NotFound(f"{what} not found")
        if tenant_id is not None and not self.principal.sees_tenant(tenant_id):
            raise NotFound(f"{what} not found")
        if (
            owner is not None
            and self.principal.own_only(resource, action)
            and owner != self.principal.user_id
        ):
            raise NotFound(f"{what} not found")
        return obj


async def get_guard(ctx: CtxDep) -> Guard:
    return Guard(ctx)


GuardDep = Annotated[Guard, Depends(get_guard)]
