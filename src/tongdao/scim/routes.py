"""The SCIM 2.0 endpoints at ``/scim/v2/`` (RFC 7644), authenticated by a tenant's SCIM token:
the token decides the tenant, so one tenant's identity provider sees only that tenant's users
and groups (another tenant's answer 404). Errors are SCIM error bodies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError as PydanticError
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    ETag,
    Filter,
    ListResponse,
    Meta,
    Patch,
    PatchOp,
    Required,
    ResourceType,
    ResponseParameters,
    SCIMException,
    SearchRequest,
    ServiceProviderConfig,
    Sort,
)
from scim2_models import Error as ScimErrorBody
from scim2_models import Group as ScimGroupResource
from scim2_models import Schema as ScimSchema
from scim2_models import User as ScimUserResource

from tongdao.api.deps import AnonCtxDep
from tongdao.errors import AuthenticationError
from tongdao.runtime import Ctx
from tongdao.scim import service
from tongdao.scim.service import ScimError
from tongdao.tenancy.models import Tenant

router = APIRouter(prefix="/scim/v2", include_in_schema=False)
MEDIA = "application/scim+json"
MAX_RESULTS = 200
# Operations in one PATCH (each costs a pass over the resource; identity providers send few).
MAX_OPERATIONS = 1000
# The attributes Tongdao keeps (the Schemas endpoint publishes only these).
USER_ATTRIBUTES = ("userName", "name", "displayName", "active", "emails", "groups")
GROUP_ATTRIBUTES = ("displayName", "members")


def scim_response(body: dict[str, Any], status: int = 200, location: str | None = None) -> Response:
    headers = {"Location": location} if location else None
    return JSONResponse(body, status_code=status, media_type=MEDIA, headers=headers)


def error_response(status: int, detail: str, scim_type: str | None = None) -> Response:
    body = ScimErrorBody(status=status, detail=detail, scim_type=scim_type)
    return scim_response(body.model_dump(), status)


class Scope:
    """The request's unit of work and the token's tenant."""

    def __init__(self, ctx: Ctx, tenant: Tenant, base: str) -> None:
        self.ctx = ctx
        self.tenant = tenant
        self.base = base


def get_scope(request: Request, ctx: AnonCtxDep) -> Scope:
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ScimError(401, "send 'Authorization: Bearer <SCIM token>'")
    try:
        token = service.authenticate(ctx, secret.strip())
    except AuthenticationError as exc:
        raise ScimError(401, exc.message) from exc
    tenant = ctx.session.get(Tenant, token.tenant_id)
    assert tenant is not None
    return Scope(ctx, tenant, str(request.base_url).rstrip("/") + "/scim/v2")


ScopeDep = Annotated[Scope, Depends(get_scope)]
JsonBody = Annotated[Any, Body()]


def _params(attributes: str | None, excluded: str | None) -> ResponseParameters[Any] | None:
    if not attributes and not excluded:
        return None
    try:
        return ResponseParameters.model_validate(
            {"attributes": attributes, "excludedAttributes": excluded}
        )
    except PydanticError as exc:
        raise ScimError(400, f"attributes: {exc.errors()[0]['msg']}", "invalidValue") from exc


def _parse(model: Any, body: Any, context: Context) -> Any:
    if not isinstance(body, dict):
        raise ScimError(400, "the body must be a JSON object", "invalidSyntax")
    try:
        return model.model_validate(body, scim_ctx=context)
    except SCIMException as exc:
        raise ScimError(exc.status, exc.detail or str(exc), exc.scim_type) from exc
    except PydanticError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ScimError(400, f"{where}: {first['msg']}", "invalidValue") from exc


def _page(
    items: list[Any],
    start_index: int,
    count: int | None,
    attributes: str | None,
    excluded: str | None,
    model: Any,
) -> Response:
    start = max(start_index, 1)
    size = MAX_RESULTS if count is None else min(max(count, 0), MAX_RESULTS)
    chosen = items[start - 1 : start - 1 + size]
    listing = ListResponse[model](
        total_results=len(items), start_index=start, items_per_page=len(chosen), resources=chosen
    )
    body = listing.model_dump(
        scim_ctx=Context.SEARCH_RESPONSE, response_parameters=_params(attributes, excluded)
    )
    return scim_response(body)


def _one(
    resource: Any, context: Context, attributes: str | None = None, excluded: str | None = None
) -> dict[str, Any]:
    dumped: dict[str, Any] = resource.model_dump(
        scim_ctx=context, response_parameters=_params(attributes, excluded)
    )
    return dumped


StartIndex = Annotated[int, Query(alias="startIndex")]
Count = Annotated[int | None, Query()]
Attributes = Annotated[str | None, Query()]
Excluded = Annotated[str | None, Query(alias="excludedAttributes")]
FilterQuery = Annotated[str | None, Query(alias="filter", max_length=2000)]


def _commit(scope: Scope) -> None:
    scope.ctx.session.commit()


# --- users -------------------------------------------------------------------------------------
@router.get("/Users")
def list_users(
    scope: ScopeDep,
    filter_: FilterQuery = None,
    start_index: StartIndex = 1,
    count: Count = None,
    attributes: Attributes = None,
    excluded: Excluded = None,
) -> Response:
    users = service.list_users(scope.ctx, scope.tenant.id, scope.base, filter_)
    return _page(users, start_index, count, attributes, excluded, ScimUserResource)


@router.get("/Users/{user_id}")
def get_user(
    scope: ScopeDep, user_id: str, attributes: Attributes = None, excluded: Excluded = None
) -> Response:
    user = service.read_user(scope.ctx, scope.tenant.id, user_id, scope.base)
    return scim_response(_one(user, Context.RESOURCE_QUERY_RESPONSE, attributes, excluded))


@router.post("/Users")
def create_user(scope: ScopeDep, body: JsonBody) -> Response:
    resource = _parse(ScimUserResource, body, Context.RESOURCE_CREATION_REQUEST)
    user = service.create_user(scope.ctx, scope.tenant, resource, scope.base)
    _commit(scope)
    location = user.meta.location if user.meta else None
    return scim_response(_one(user, Context.RESOURCE_CREATION_RESPONSE), 201, location)


@router.put("/Users/{user_id}")
def replace_user(scope: ScopeDep, user_id: str, body: JsonBody) -> Response:
    service.get_user(scope.ctx, scope.tenant.id, user_id)
    resource = _parse(ScimUserResource, body, Context.RESOURCE_REPLACEMENT_REQUEST)
    user = service.replace_user(
        scope.ctx, scope.tenant, user_id, resource, scope.base, how="scim_replace"
    )
    _commit(scope)
    return scim_response(_one(user, Context.RESOURCE_REPLACEMENT_RESPONSE))


@router.patch("/Users/{user_id}")
def patch_user(scope: ScopeDep, user_id: str, body: JsonBody) -> Response:
    current = service.read_user(scope.ctx, scope.tenant.id, user_id, scope.base)
    operation = _patch_op(ScimUserResource[Any], body)
    _apply_patch(operation, current)
    user = service.replace_user(
        scope.ctx, scope.tenant, user_id, current, scope.base, how="scim_patch"
    )
    _commit(scope)
    return scim_response(_one(user, Context.RESOURCE_PATCH_RESPONSE))


@router.delete("/Users/{user_id}")
def delete_user(scope: ScopeDep, user_id: str) -> Response:
    service.delete_user(scope.ctx, scope.tenant, user_id)
    _commit(scope)
    return Response(status_code=204)


def _patch_op(model: Any, body: Any) -> Any:
    operations = body.get("Operations") if isinstance(body, dict) else None
    if isinstance(operations, list) and len(operations) > MAX_OPERATIONS:
        raise ScimError(400, f"Operations: at most {MAX_OPERATIONS} in one request", "invalidValue")
    return _parse(PatchOp[model], body, Context.RESOURCE_PATCH_REQUEST)


def _apply_patch(operation: Any, resource: Any) -> None:
    try:
        operation.patch(resource)
        type(resource).model_validate(
            resource.model_dump(scim_ctx=Context.DEFAULT), scim_ctx=Context.DEFAULT
        )
    except SCIMException as exc:
        raise ScimError(exc.status, exc.detail or str(exc), exc.scim_type) from exc
    except (PydanticError, ValueError, TypeError) as exc:
        raise ScimError(400, f"Operations: {exc}", "invalidValue") from exc


def _search(body: Any) -> SearchRequest[Any]:
    request: SearchRequest[Any] = _parse(SearchRequest, body, Context.SEARCH_REQUEST)
    return request


@router.post("/Users/.search")
def search_users(scope: ScopeDep, body: JsonBody) -> Response:
    request = _search(body)
    filter_ = str(request.filter) if request.filter is not None else None
    users = service.list_users(scope.ctx, scope.tenant.id, scope.base, filter_)
    return _page(
        users,
        request.start_index or 1,
        request.count,
        _joined(request.attributes),
        _joined(request.excluded_attributes),
        ScimUserResource,
    )


def _joined(paths: Any) -> str | None:
    return ",".join(str(p) for p in paths) if paths else None


# --- groups ------------------------------------------------------------------------------------
@router.get("/Groups")
def list_groups(
    scope: ScopeDep,
    filter_: FilterQuery = None,
    start_index: StartIndex = 1,
    count: Count = None,
    attributes: Attributes = None,
    excluded: Excluded = None,
) -> Response:
    groups = service.list_groups(scope.ctx, scope.tenant.id, scope.base, filter_)
    return _page(groups, start_index, count, attributes, excluded, ScimGroupResource)


@router.get("/Groups/{group_id}")
def get_group(
    scope: ScopeDep, group_id: str, attributes: Attributes = None, excluded: Excluded = None
) -> Response:
    group = service.read_group(scope.ctx, scope.tenant.id, group_id, scope.base)
    return scim_response(_one(group, Context.RESOURCE_QUERY_RESPONSE, attributes, excluded))


@router.post("/Groups")
def create_group(scope: ScopeDep, body: JsonBody) -> Response:
    resource = _parse(ScimGroupResource, body, Context.RESOURCE_CREATION_REQUEST)
    group = service.create_group(scope.ctx, scope.tenant, resource, scope.base)
    _commit(scope)
    location = group.meta.location if group.meta else None
    return scim_response(_one(group, Context.RESOURCE_CREATION_RESPONSE), 201, location)


@router.put("/Groups/{group_id}")
def replace_group(scope: ScopeDep, group_id: str, body: JsonBody) -> Response:
    service.get_group(scope.ctx, scope.tenant.id, group_id)
    resource = _parse(ScimGroupResource, body, Context.RESOURCE_REPLACEMENT_REQUEST)
    group = service.replace_group(scope.ctx, scope.tenant, group_id, resource, scope.base)
    _commit(scope)
    return scim_response(_one(group, Context.RESOURCE_REPLACEMENT_RESPONSE))


@router.patch("/Groups/{group_id}")
def patch_group(scope: ScopeDep, group_id: str, body: JsonBody) -> Response:
    current = service.read_group(scope.ctx, scope.tenant.id, group_id, scope.base)
    operation = _patch_op(ScimGroupResource, body)
    _apply_patch(operation, current)
    group = service.replace_group(scope.ctx, scope.tenant, group_id, current, scope.base)
    _commit(scope)
    return scim_response(_one(group, Context.RESOURCE_PATCH_RESPONSE))


@router.delete("/Groups/{group_id}")
def delete_group(scope: ScopeDep, group_id: str) -> Response:
    service.delete_group(scope.ctx, scope.tenant, group_id)
    _commit(scope)
    return Response(status_code=204)


@router.post("/Groups/.search")
def search_groups(scope: ScopeDep, body: JsonBody) -> Response:
    request = _search(body)
    filter_ = str(request.filter) if request.filter is not None else None
    groups = service.list_groups(scope.ctx, scope.tenant.id, scope.base, filter_)
    return _page(
        groups,
        request.start_index or 1,
        request.count,
        _joined(request.attributes),
        _joined(request.excluded_attributes),
        ScimGroupResource,
    )


# --- discovery ---------------------------------------------------------------------------------
def service_provider_config(base: str) -> ServiceProviderConfig:
    return ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=False),
        authentication_schemes=[
            AuthenticationScheme(
                type="oauthbearertoken",
                name="Bearer token",
                description="The tenant's SCIM token, made by a tenant admin in the console",
                primary=True,
            )
        ],
        meta=Meta(resource_type="ServiceProviderConfig", location=f"{base}/ServiceProviderConfig"),
    )


def _schema(model: Any, keep: tuple[str, ...], base: str) -> ScimSchema:
    schema: ScimSchema = model.to_schema()
    schema.attributes = [a for a in schema.attributes or [] if a.name in keep]
    for attribute in schema.attributes:
        if attribute.name == "emails":
            # A Tongdao user is known by an e-mail address: a user comes with one.
            attribute.required = Required.true
            for sub in attribute.sub_attributes or []:
                if sub.name == "value":
                    sub.required = Required.true
        if attribute.name == "members":
            # Tongdao keeps who is a member, not a label for each membership.
            attribute.sub_attributes = [
                sub for sub in attribute.sub_attributes or [] if sub.name != "display"
            ]
    schema.meta = Meta(resource_type="Schema", location=f"{base}/Schemas/{schema.id}")
    return schema


def schemas(base: str) -> list[ScimSchema]:
    return [
        _schema(ScimUserResource, USER_ATTRIBUTES, base),
        _schema(ScimGroupResource, GROUP_ATTRIBUTES, base),
    ]


def resource_types(base: str) -> list[ResourceType]:
    out = []
    for model in (ScimUserResource, ScimGroupResource):
        resource_type = ResourceType.from_resource(model)
        resource_type.meta = Meta(
            resource_type="ResourceType", location=f"{base}/ResourceTypes/{resource_type.id}"
        )
        out.append(resource_type)
    return out


@router.get("/ServiceProviderConfig")
def get_service_provider_config(scope: ScopeDep) -> Response:
    return scim_response(service_provider_config(scope.base).model_dump())


@router.get("/Schemas")
def list_schemas(scope: ScopeDep) -> Response:
    items = schemas(scope.base)
    listing = ListResponse[ScimSchema](
        total_results=len(items), start_index=1, items_per_page=len(items), resources=items
    )
    return scim_response(listing.model_dump(scim_ctx=Context.SEARCH_RESPONSE))


@router.get("/Schemas/{schema_id}")
def get_schema(scope: ScopeDep, schema_id: str) -> Response:
    for item in schemas(scope.base):
        if item.id == schema_id:
            return scim_response(item.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    raise ScimError(404, "schema not found")


@router.get("/ResourceTypes")
def list_resource_types(scope: ScopeDep) -> Response:
    items = resource_types(scope.base)
    listing = ListResponse[ResourceType](
        total_results=len(items), start_index=1, items_per_page=len(items), resources=items
    )
    return scim_response(listing.model_dump(scim_ctx=Context.SEARCH_RESPONSE))


@router.get("/ResourceTypes/{type_id}")
def get_resource_type(scope: ScopeDep, type_id: str) -> Response:
    for item in resource_types(scope.base):
        if item.id == type_id:
            return scim_response(item.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))
    raise ScimError(404, "resource type not found")


@router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(scope: ScopeDep, rest: str, request: Request) -> Response:
    """Anything else under /scim/v2: 405 for a method an endpoint does not take, 501 for a
    search over every resource type at once (``POST /.search``), else a SCIM 404."""
    head = rest.split("/", 1)[0]
    if head in ("ServiceProviderConfig", "ResourceTypes", "Schemas", "Users", "Groups"):
        raise ScimError(405, f"{request.method} is not allowed on /{head}")
    if rest == ".search":
        raise ScimError(501, "search one resource type at a time (/Users/.search, /Groups/.search)")
    raise ScimError(404, f"no such SCIM endpoint: /{rest[:100]}")


def install(app: FastAPI) -> None:
    """The SCIM endpoints and their error bodies."""

    async def on_scim_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ScimError)
        response = error_response(exc.status, exc.detail, exc.scim_type)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response

    handler: Callable[..., Any] = on_scim_error
    app.add_exception_handler(ScimError, handler)
    app.include_router(router)
