"""Service discovery, ping, liveness/readiness, metrics and the offline API docs."""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from terrapod.jsonapi.documents import JSONAPI_CONTENT_TYPE, JSONAPIResponse
from terrapod.jsonapi.models import ERROR_DESCRIPTIONS, ERROR_DOCUMENT_REF, JSONAPIRouteResponse

router = APIRouter(tags=["system"])

# ReDoc and Swagger UI assets ship inside the fastapi-offline wheel: no CDN at run time.
DOCS_STATIC_DIR = Path(fastapi_offline.__file__).parent / "static"

# Terraform's service discovery (https://developer.hashicorp.com/terraform/internals/remote-service-discovery).
# login.v1's ports are the loopback ports terraform login may listen on for the redirect.
DISCOVERY = {
    "tfe.v2": "/api/v2/",
    "tfe.v2.1": "/api/v2/",
    "tfe.v2.2": "/api/v2/",
    "state.v2": "/api/v2/",
    "modules.v1": "/api/v2/registry/modules/",
    "providers.v1": "/api/v2/registry/providers/",
    "login.v1": {
        "client": "terraform-cli",
        "grant_types": ["authz_code"],
        "authz": "/oauth/authorize",
        "token": "/oauth/token",
        "ports": [10000, 10010],
    },
}


@router.get("/.well-known/terraform.json", operation_id="serviceDiscovery")
async def discovery() -> JSONResponse:
    return JSONResponse(DISCOVERY)


_PING_SCHEMA = {
    "type": "object",
    "required": ["data", "meta"],
    "properties": {
        "data": {"type": "null"},
        "meta": {
            "type": "object",
            "properties": {"app": {"type": "string"}},
            "additionalProperties": False,
        },
    },
    "additionalProperties": False,
}


@router.get(
    "/api/v2/ping",
    operation_id="ping",
    response_class=JSONAPIRouteResponse,
    responses={
        200: {
            "description": "Alive; the TFP-API-Version header is what clients check",
            "content": {JSONAPI_CONTENT_TYPE: {"schema": _PING_SCHEMA}},
        },
        # A query string with a NUL character, refused by the middleware like on every route.
        400: {
            "description": ERROR_DESCRIPTIONS[400],
            "content": {JSONAPI_CONTENT_TYPE: {"schema": ERROR_DOCUMENT_REF}},
        },
    },
)
async def ping() -> Response:
    # The CLI reads only the headers (added by the middleware to every /api/v2 response).
    return JSONAPIResponse({"data": None, "meta": {"app": "Terrapod"}})


@router.get("/health", operation_id="health")
async def health() -> JSONResponse:
    return JSONResponse({"status": "healthy"})


@router.get("/ready", operation_id="ready")
async def ready(request: Request) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "healthy"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
        checks["database"] = f"unhealthy: {type(exc).__name__}"
    try:
        await request.app.state.object_store.check()
        checks["storage"] = "healthy"
    except Exception as exc:  # noqa: BLE001
        checks["storage"] = f"unhealthy: {type(exc).__name__}"
    ok = all(v == "healthy" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "checks": checks},
        status_code=200 if ok else 503,
    )


@router.get("/metrics", operation_id="metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )


@router.get("/docs", include_in_schema=False)
async def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="Terrapod API",
        swagger_js_url="/docs-static/swagger-ui-bundle.js",
        swagger_css_url="/docs-static/swagger-ui.css",
        swagger_favicon_url="/docs-static/favicon.png",
    )


@router.get("/redoc", include_in_schema=False)
async def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title="Terrapod API",
        redoc_js_url="/docs-static/redoc.standalone.js",
        redoc_favicon_url="/docs-static/favicon.png",
        with_google_fonts=False,
    )
