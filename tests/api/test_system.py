"""Discovery, ping, health, readiness, metrics and docs."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI


async def test_discovery_lists_every_service(anon: httpx.AsyncClient) -> None:
    r = await anon.get("/.well-known/terraform.json")
    assert r.status_code == 200
    body = r.json()
    for key in ("tfe.v2", "tfe.v2.1", "tfe.v2.2", "state.v2"):
        assert body[key] == "/api/v2/"
    assert body["modules.v1"].startswith("/api/v2/registry/modules")
    assert body["providers.v1"].startswith("/api/v2/registry/providers")
    assert body["login.v1"]["grant_types"] == ["authz_code"]


async def test_ping_carries_the_headers_terraform_checks(anon: httpx.AsyncClient) -> None:
    r = await anon.get("/api/v2/ping")
    assert r.status_code == 200
    assert float(r.headers["TFP-API-Version"]) >= 2.5
    assert r.headers["TFP-AppName"] == "Terrapod"
    # The CLI rejects X-TFE-Version values not shaped like vYYYYMM-N.
    assert re.fullmatch(r"v\d{6}-\d+", r.headers["X-TFE-Version"])
    assert r.headers["x-request-id"]


async def test_every_api_response_carries_tfe_headers_even_errors(anon: httpx.AsyncClient) -> None:
    r = await anon.get("/api/v2/organizations")
    assert r.status_code == 401
    assert r.headers["TFP-API-Version"] == "2.6"


async def test_request_id_is_echoed_when_sane(anon: httpx.AsyncClient) -> None:
    r = await anon.get("/health", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = await anon.get("/health", headers={"X-Request-Id": "bad id\twith spaces"})
    assert r.headers["x-request-id"] != "bad id\twith spaces"


async def test_health_and_ready(anon: httpx.AsyncClient) -> None:
    assert (await anon.get("/health")).json() == {"status": "healthy"}
    r = await anon.get("/ready")
    assert r.status_code == 200
    assert r.json()["checks"] == {"database": "healthy", "storage": "healthy"}


async def test_ready_is_503_when_storage_is_down(app: FastAPI, anon: httpx.AsyncClient) -> None:
    store = app.state.object_store

    class Broken:
        async def check(self) -> None:
            raise OSError("disk gone")

    app.state.object_store = Broken()
    try:
        r = await anon.get("/ready")
    finally:
        app.state.object_store = store
    assert r.status_code == 503
    assert r.json()["checks"]["storage"].startswith("unhealthy")
    assert r.json()["checks"]["database"] == "healthy"


async def test_ready_is_503_when_database_is_down(app: FastAPI, anon: httpx.AsyncClient) -> None:
    engine = app.state.engine

    class BrokenEngine:
        def connect(self) -> None:
            raise ConnectionRefusedError("database down")

    app.state.engine = BrokenEngine()
    try:
        r = await anon.get("/ready")
    finally:
        app.state.engine = engine
    assert r.status_code == 503
    assert r.json()["checks"]["database"].startswith("unhealthy")


async def test_metrics_count_requests_by_route(anon: httpx.AsyncClient) -> None:
    await anon.get("/api/v2/ping")
    text = (await anon.get("/metrics")).text
    assert 'terrapod_http_requests_total{method="GET",route="/api/v2/ping",status="200"}' in text


async def test_docs_pages_use_bundled_assets_only(anon: httpx.AsyncClient) -> None:
    for page in ("/docs", "/redoc"):
        html = (await anon.get(page)).text
        assert "cdn" not in html.lower() and "googleapis" not in html
        for src in re.findall(r'(?:src|href)="(/docs-static/[^"]+)"', html):
            assert (await anon.get(src)).status_code == 200, src
    schema = (await anon.get("/openapi.json")).json()
    assert "/api/v2/organizations" in schema["paths"]
