"""Declarative CRUD endpoints over one shared base.

A :class:`Resource` names its model, its schema family (Create / Update / Public), its
filters and its domain hooks; :func:`mount` turns it into list / create / get / update /
delete routes that all pass through the same :class:`~tongdao.api.deps.Guard`.
"""

import uuid
from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Response, status
from pydantic import BaseModel, ConfigDict, TypeAdapter
from sqlalchemy import Row, Select, select
from sqlalchemy.orm import InstrumentedAttribute

from tongdao.api.deps import CtxDep, Guard
from tongdao.api.pagination import Page, PageParams, page_params, paginate
from tongdao.auth.permissions import Action
from tongdao.errors import Conflict
from tongdao.runtime import Ctx
from tongdao.store.base import TimestampedModel
from tongdao.tenancy.models import Tenant

M = TypeVar("M", bound=TimestampedModel)


class NoFilters(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Resource(Generic[M]):
    """Subclass per resource; override the hooks where the domain needs more."""

    name: ClassVar[str]  # permission key and path segment
    label: ClassVar[str]  # "device", for messages
    plural: ClassVar[str | None] = None  # operation ids; defaults to ``name``
    model: type[M]
    public: type[BaseModel]
    create_schema: type[BaseModel]
    update_schema: type[BaseModel]
    filters: type[BaseModel] = NoFilters
    tenant_scoped: ClassVar[bool] = True  # path carries {tenant_id}
    owner_attr: ClassVar[str | None] = None  # column holding the owning user's id
    # Lists read plain rows of the model's columns rather than ORM objects and validate the
    # page in one call (:meth:`to_public_rows`; loading 50 objects was a fifth of a list's
    # CPU under load, issue 10); only for resources whose public schema holds nothing but
    # columns named like their attributes.
    list_rows: ClassVar[bool] = False

    # --- queries -------------------------------------------------------------------------
    def base_query(self, guard: Guard, tenant: Tenant | None, action: Action) -> Select[Any]:
        stmt = select(self.model)
        tenant_column = getattr(self.model, "tenant_id", None)
        if tenant is not None and tenant_column is not None:
            stmt = stmt.where(tenant_column == tenant.id)
        owner = getattr(self.model, self.owner_attr) if self.owner_attr else None
        return guard.restrict(
            stmt, self.name, action, tenant_column=self.tenant_column(), owner_column=owner
        )

    def tenant_column(self) -> Any | None:
        """The column compared with a tenant-bound caller's tenant (None: operator-only)."""
        return getattr(self.model, "tenant_id", None)

    def apply_filters(self, stmt: Select[Any], filters: BaseModel) -> Select[Any]:
        """Equality on each filter that is set and names a column of the model."""
        for key, value in filters.model_dump(exclude_none=True).items():
            column = getattr(self.model, key, None)
            if column is not None:
                stmt = stmt.where(column == value)
        return stmt

    def load(self, guard: Guard, tenant: Tenant | None, object_id: uuid.UUID, action: Action) -> M:
        stmt = self.base_query(guard, tenant, action).where(self.model.id == object_id)
        obj: M | None = guard.ctx.session.scalar(stmt)
        return guard.visible(obj, self.name, action, what=self.label)

    # --- presentation ----------------------------------------------------------------------
    def to_public(self, ctx: Ctx, obj: M) -> BaseModel:
        return self.public.model_validate(obj, from_attributes=True)

    def to_public_many(self, ctx: Ctx, objs: Sequence[M]) -> list[BaseModel]:
        return [self.to_public(ctx, obj) for obj in objs]

    def to_public_rows(self, ctx: Ctx, rows: Sequence[Row[Any]]) -> list[BaseModel]:
        """A page of plain rows (``list_rows``), validated in one call."""
        adapter = _row_adapters.get(self.public)
        if adapter is None:
            adapter = _row_adapters[self.public] = TypeAdapter(list[self.public])  # type: ignore[name-defined]
        out: list[BaseModel] = adapter.validate_python([row._asdict() for row in rows])
        return out

    # --- domain hooks ----------------------------------------------------------------------
    def create(self, ctx: Ctx, tenant: Tenant | None, data: Any) -> M:
        raise NotImplementedError

    def update(self, ctx: Ctx, obj: M, data: Any) -> M:
        for key, value in data.model_dump(exclude_unset=True).items():
            setattr(obj, key, value)
        return obj

    def delete(self, ctx: Ctx, obj: M) -> None:
        ctx.session.delete(obj)


_row_adapters: dict[type[BaseModel], TypeAdapter[Any]] = {}


def ensure_unique(
    ctx: Ctx,
    column: InstrumentedAttribute[Any],
    value: object,
    *,
    own: uuid.UUID | None = None,
    tenant_id: uuid.UUID | None = None,
    what: str,
) -> None:
    """409, keyed by the column's name, when another row (of the tenant) holds ``value``."""
    if value is None:
        return
    model = column.class_
    stmt = select(model.id).where(column == value)
    if tenant_id is not None:
        stmt = stmt.where(model.tenant_id == tenant_id)
    other = ctx.session.scalar(stmt)
    if other is not None and other != own:
        field = column.key
        raise Conflict(
            f"{what} with this {field.replace('_', ' ')} exists", {field: "already in use"}
        )


async def _tenant_id_path(
    tenant_id: Annotated[uuid.UUID, Path(description="the tenant's id")],
) -> uuid.UUID | None:
    return tenant_id


async def _no_tenant() -> uuid.UUID | None:
    return None


def mount(router: APIRouter, resource: Resource[Any], path: str, *, tags: list[str | Enum]) -> None:
    """Register list / create / get / update / delete for ``resource`` under ``path``."""
    Public = resource.public
    Create = resource.create_schema
    Update = resource.update_schema
    Filters = resource.filters
    PageOfPublic = Page[Public]  # type: ignore[valid-type]
    TenantId = Annotated[
        uuid.UUID | None, Depends(_tenant_id_path if resource.tenant_scoped else _no_tenant)
    ]
    ObjectId = Annotated[uuid.UUID, Path(description=f"the {resource.label}'s id")]
    label = resource.label
    plural = resource.plural or resource.name

    def scope(
        ctx: Ctx, tenant_id: uuid.UUID | None, action: Action, object_id: uuid.UUID | None = None
    ) -> tuple[Guard, Tenant | None]:
        guard = Guard(ctx)
        tenant = guard.tenant(tenant_id) if tenant_id is not None else None
        if (
            object_id is not None
            and not guard.principal.is_operator
            and resource.tenant_column() is not None
            and not guard.principal.can(resource.name, action)
        ):
            # Out of the caller's scope (another tenant's object): 404 before any 403.
            resource.load(guard, tenant, object_id, Action.READ)
        guard.require(resource.name, action)
        return guard, tenant

    def list_objects(
        ctx: CtxDep,
        tenant_id: TenantId,
        page: Annotated[PageParams, Depends(page_params)],
        filters: Annotated[Filters, Query()],  # type: ignore[valid-type]
    ) -> Any:
        guard, tenant = scope(ctx, tenant_id, Action.READ)
        stmt = resource.apply_filters(resource.base_query(guard, tenant, Action.READ), filters)
        if resource.list_rows:
            stmt = stmt.with_only_columns(*resource.model.__table__.columns)
        rows, total, cursor = paginate(
            ctx.session, stmt, resource.model.id, page, rows=resource.list_rows
        )
        data = (
            resource.to_public_rows(ctx, rows)
            if resource.list_rows
            else resource.to_public_many(ctx, rows)
        )
        return PageOfPublic(data=data, count=total, next_cursor=cursor)

    def create_object(ctx: CtxDep, tenant_id: TenantId, body: Create) -> Any:  # type: ignore[valid-type]
        _guard, tenant = scope(ctx, tenant_id, Action.CREATE)
        obj = resource.create(ctx, tenant, body)
        ctx.session.flush()
        ctx.session.commit()
        return resource.to_public(ctx, obj)

    def get_object(ctx: CtxDep, tenant_id: TenantId, object_id: ObjectId) -> Any:
        guard, tenant = scope(ctx, tenant_id, Action.READ, object_id)
        return resource.to_public(ctx, resource.load(guard, tenant, object_id, Action.READ))

    def update_object(
        ctx: CtxDep,
        tenant_id: TenantId,
        object_id: ObjectId,
        body: Update,  # type: ignore[valid-type]
    ) -> Any:
        guard, tenant = scope(ctx, tenant_id, Action.UPDATE, object_id)
        obj = resource.update(ctx, resource.load(guard, tenant, object_id, Action.UPDATE), body)
        ctx.session.flush()
        ctx.session.commit()
        return resource.to_public(ctx, obj)

    def delete_object(ctx: CtxDep, tenant_id: TenantId, object_id: ObjectId) -> Response:
        guard, tenant = scope(ctx, tenant_id, Action.DELETE, object_id)
        resource.delete(ctx, resource.load(guard, tenant, object_id, Action.DELETE))
        ctx.session.flush()
        ctx.session.commit()
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    item = path + "/{object_id}"
    router.add_api_route(
        path,
        list_objects,
        methods=["GET"],
        response_model=PageOfPublic,
        tags=tags,
        summary=f"List {plural}",
        operation_id=f"list_{plural}",
    )
    router.add_api_route(
        path,
        create_object,
        methods=["POST"],
        response_model=Public,
        tags=tags,
        status_code=status.HTTP_201_CREATED,
        summary=f"Create a {label}",
        operation_id=f"create_{label}",
    )
    router.add_api_route(
        item,
        get_object,
        methods=["GET"],
        response_model=Public,
        tags=tags,
        summary=f"Get a {label}",
        operation_id=f"get_{label}",
    )
    router.add_api_route(
        item,
        update_object,
        methods=["PATCH"],
        response_model=Public,
        tags=tags,
        summary=f"Update a {label}",
        operation_id=f"update_{label}",
    )
    router.add_api_route(
        item,
        delete_object,
        methods=["DELETE"],
        status_code=status.HTTP_204_NO_CONTENT,
        tags=tags,
        summary=f"Delete a {label}",
        operation_id=f"delete_{label}",
        response_class=Response,
    )
