"""Terraform actions routes (seed 002): parse, one service call, serialize."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from terrapod.actions import service
from terrapod.actions.schemas import (
    ActionDocument,
    ActionFilterOptionsDocument,
    ActionList,
    InvocationFilterOptionsDocument,
    InvocationList,
    ResourceGroupList,
    RunSummaryList,
    serialize_action,
    serialize_group,
    serialize_invocation,
    serialize_invoked_by,
    serialize_providers,
    serialize_summary,
)
from terrapod.deps import PrincipalDep, SessionDep
from terrapod.errors import BadRequest
from terrapod.jsonapi.documents import document
from terrapod.jsonapi.models import (
    JSONAPIRouteResponse,
    authenticated,
    openapi_extra,
    page_parameters,
    query_parameter,
    responses,
)
from terrapod.jsonapi.pagination import page_document, page_params, pagination
from terrapod.workspaces import service as workspaces

router = APIRouter(
    prefix="/api/v2",
    tags=["terraform-actions"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)

_BOUNDS = ("gte", "gt", "lte", "lt")
_STRING = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}


def _time_parameters(prefix: str, what: str) -> list[dict[str, Any]]:
    return [
        query_parameter(f"{prefix}[{bound}]", _TIME, f"{what} ({bound}), RFC 3339")
        for bound in _BOUNDS
    ]


def _list(request: Request, name: str, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    """A comma-separated filter; each value one of ``allowed`` when given."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return ()
    values = tuple(v.strip() for v in raw.split(",") if v.strip())
    if allowed is not None:
        for value in values:
            if value not in allowed:
                raise BadRequest(f"{name}: {value[:60]!r} is not one of {', '.join(allowed)}")
    return values


def _time(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} must be an RFC 3339 timestamp, got {raw[:60]!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _range(request: Request, prefix: str) -> service.TimeRange:
    return service.TimeRange(**{b: _time(request, f"{prefix}[{b}]") for b in _BOUNDS})


def _q(request: Request) -> str | None:
    q = request.query_params.get("q")
    if q is not None and len(q) > 256:
        raise BadRequest("q must be at most 256 characters")
    return q or None


def _invocation_meta(
    request: Request, total: int, page_total: int, page: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    meta, links = pagination(request, page, page_total)
    meta["counts"] = {"invocations": {"total": total}}
    return meta, links


@router.get(
    "/workspaces/{workspace_id}/terraform-actions",
    operation_id="listTerraformActions",
    responses=responses(200, ActionList, errors=[400, 404]),
    openapi_extra=openapi_extra(
        parameters=[
            query_parameter("filter[provider]", _STRING, "Only actions of these providers"),
            query_parameter(
                "filter[module_address]",
                _STRING,
                "Only actions of these modules: system:root_module or module.a.module.b",
            ),
            *_time_parameters(
                "filter[last_invocation][invoked_at]", "When the last invocation was invoked"
            ),
            *page_parameters(),
        ]
    ),
)
async def list_terraform_actions(
    workspace_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    filters = service.ActionFilters(
        providers=_list(request, "filter[provider]"),
        module_addresses=_list(request, "filter[module_address]"),
        last_invoked=_range(request, "filter[last_invocation][invoked_at]"),
    )
    ws, org = await workspaces.get(session, principal, workspace_id)
    views, total = await service.list_actions(
        session, principal, ws, org, filters, offset=page.offset, limit=page.size
    )
    return page_document(request, page, total, [serialize_action(v) for v in views])


@router.get(
    "/workspaces/{workspace_id}/terraform-actions/filter-options",
    operation_id="showTerraformActionFilterOptions",
    responses=responses(200, ActionFilterOptionsDocument, errors=[404]),
)
async def show_terraform_action_filter_options(
    workspace_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    ws, org = await workspaces.get(session, principal, workspace_id)
    providers = await service.providers(session, principal, ws, org)
    return document(serialize_providers(ws.id, providers))


@router.get(
    "/terraform-actions/{action_id}",
    operation_id="showTerraformAction",
    responses=responses(200, ActionDocument, errors=[404]),
)
async def show_terraform_action(
    action_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    view = await service.get_action(session, principal, action_id)
    return document(serialize_action(view))


@router.get(
    "/terraform-actions/{action_id}/invocations/run-summary",
    operation_id="listTerraformActionRunSummaries",
    responses=responses(200, RunSummaryList, errors=[400, 404]),
    openapi_extra=openapi_extra(
        parameters=[
            query_parameter("filter[run][id]", _STRING, "Only this run"),
            query_parameter(
                "filter[invocation_method]", _STRING, "Comma-separated: direct, lifecycle"
            ),
            query_parameter(
                "filter[aggregate_invocation_status]",
                _STRING,
                "Comma-separated: " + ", ".join(service.RUN_AGGREGATES),
            ),
            query_parameter(
                "filter[invoked_by]",
                _STRING,
                "Comma-separated usernames, or system:not_a_user",
            ),
            query_parameter(
                "filter[source]", _STRING, "Comma-separated: " + ", ".join(service.SOURCES)
            ),
            *_time_parameters("filter[invoked_at]", "When the run's last invocation was invoked"),
            *page_parameters(),
        ]
    ),
)
async def list_terraform_action_run_summaries(
    action_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    filters = service.SummaryFilters(
        run_id=request.query_params.get("filter[run][id]") or None,
        methods=_list(request, "filter[invocation_method]", service.METHODS),
        aggregates=_list(request, "filter[aggregate_invocation_status]", service.RUN_AGGREGATES),
        invoked_by=_list(request, "filter[invoked_by]"),
        sources=_list(request, "filter[source]", service.SOURCES),
        invoked=_range(request, "filter[invoked_at]"),
    )
    summaries, total = await service.run_summaries(
        session, principal, action_id, filters, offset=page.offset, limit=page.size
    )
    return page_document(request, page, total, [serialize_summary(s) for s in summaries])


@router.get(
    "/terraform-actions/{action_id}/invocations/filter-options",
    operation_id="showTerraformActionInvocationFilterOptions",
    responses=responses(200, InvocationFilterOptionsDocument, errors=[404]),
)
async def show_terraform_action_invocation_filter_options(
    action_id: str, session: SessionDep, principal: PrincipalDep
) -> Response:
    names = await service.invoked_by(session, principal, action_id)
    return document(serialize_invoked_by(action_id, names))


@router.get(
    "/terraform-actions/{action_id}/runs/{run_id}/invocations",
    operation_id="listTerraformActionRunInvocations",
    responses=responses(200, InvocationList, errors=[400, 404]),
    openapi_extra=openapi_extra(
        parameters=[
            query_parameter(
                "filter[status]",
                _STRING,
                "Comma-separated final statuses: " + ", ".join(service.FINAL_STATUSES),
            ),
            query_parameter(
                "q", _STRING, "Search by key, status, trigger event or triggering resource"
            ),
            *page_parameters(),
        ]
    ),
)
async def list_terraform_action_run_invocations(
    action_id: str, run_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    views, total = await service.run_invocations(
        session,
        principal,
        action_id,
        run_id,
        statuses=_list(request, "filter[status]", service.FINAL_STATUSES),
        q=_q(request),
        offset=page.offset,
        limit=page.size,
    )
    meta, links = _invocation_meta(request, total, total, page)
    return document([serialize_invocation(v) for v in views], meta=meta, links=links)


@router.get(
    "/terraform-actions/{action_id}/runs/{run_id}/invocations/lifecycle-resource-groups",
    operation_id="listTerraformActionLifecycleResourceGroups",
    responses=responses(200, ResourceGroupList, errors=[400, 404]),
    openapi_extra=openapi_extra(
        parameters=[
            query_parameter(
                "filter[aggregate_status]",
                _STRING,
                "Comma-separated: " + ", ".join(service.GROUP_AGGREGATES),
            ),
            query_parameter(
                "q",
                _STRING,
                "Search by key, status, aggregate status, trigger event or triggering resource",
            ),
            *page_parameters(),
        ]
    ),
)
async def list_terraform_action_lifecycle_resource_groups(
    action_id: str, run_id: str, request: Request, session: SessionDep, principal: PrincipalDep
) -> Response:
    page = page_params(request)
    groups, group_total, invocation_total = await service.resource_groups(
        session,
        principal,
        action_id,
        run_id,
        aggregates=_list(request, "filter[aggregate_status]", service.GROUP_AGGREGATES),
        q=_q(request),
        offset=page.offset,
        limit=page.size,
    )
    meta, links = _invocation_meta(request, invocation_total, group_total, page)
    meta["counts"]["resource-groups"] = {"total": group_total}
    return document([serialize_group(g) for g in groups], meta=meta, links=links)
