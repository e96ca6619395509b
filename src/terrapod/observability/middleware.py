"""The one pure-ASGI middleware: request id, TFE headers, access log, metrics.

One layer instead of four keeps the per-request cost low (DESIGN.md, performance budgets).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import secrets
import time
from collections.abc import Sequence

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from terrapod.jsonapi.errors import error_response
from terrapod.observability.metrics import Metrics

# Terraform refuses a TFP-API-Version below 2.5; X-TFE-Version must look like vYYYYMM-N or
# remote plans fail (CLIENT_FACTS.md). 2.6 is what seed 003 documents.
TFP_API_VERSION = "2.6"
TFE_VERSION = "v202611-1"
APP_NAME = "Terrapod"

_API_HEADERS = [
    (b"tfp-api-version", TFP_API_VERSION.encode()),
    (b"tfp-appname", APP_NAME.encode()),
    (b"x-tfe-version", TFE_VERSION.encode()),
]
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

log = structlog.get_logger("terrapod.access")


class ObservabilityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        trusted_proxies: Sequence[str] = (),
        access_log: bool = True,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.trusted = [ipaddress.ip_network(c, strict=False) for c in trusted_proxies]
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _incoming_request_id(scope) or secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        is_api = scope["path"].startswith("/api/v2")
        status = 500
        rid_header = (b"x-request-id", request_id.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append(rid_header)
                if is_api:
                    headers.extend(_API_HEADERS)
                message["headers"] = headers
            await send(message)

        # Agents' long polls are held open by design (docs/dev/agents.md): they are not load.
        counted = not _is_long_poll(scope["path"])
        if counted:
            self.metrics.in_flight.inc()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            refusal = _refuse_nul(scope)
            if refusal is not None:
                await refusal(scope, receive, send_wrapper)
            else:
                await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:
            # The caller went away (an in-process agent stopping its long poll): not a
            # server error. 499 as nginx counts it.
            if status == 500:
                status = 499
            raise
        finally:
            if counted:
                self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            if self.access_log:
                log.info(
                    "request",
                    method=method,
                    path=scope["path"],
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    client=self.client_ip(scope),
                )
            structlog.contextvars.unbind_contextvars("request_id")

    def client_ip(self, scope: Scope) -> str | None:
        """The caller's address; X-Forwarded-For is believed only from configured proxies."""
        client = scope.get("client")
        peer: str | None = client[0] if client else None
        if peer is None or not self._is_trusted(peer):
            return peer
        for name, value in scope.get("headers", []):
            if name == b"x-forwarded-for":
                hops: list[str] = [
                    h.strip() for h in value.decode("latin-1").split(",") if h.strip()
                ]
                # Walk back from the nearest hop; the first untrusted address is the client.
                untrusted = [hop for hop in reversed(hops) if not self._is_trusted(hop)]
                return untrusted[0] if untrusted else (hops[0] if hops else peer)
        return peer

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            # A malformed hop is never trusted, so the walk stops there.
            return False
        return any(ip in net for net in self.trusted)


def _is_long_poll(path: str) -> bool:
    """``runs/next`` and a job's heartbeat, the listener protocol's two long polls."""
    return path.startswith("/api/v2/listeners/") and (
        path.endswith("/runs/next") or ("/runs/" in path and path.endswith("/heartbeat"))
    )


def _refuse_nul(scope: Scope) -> ASGIApp | None:
    """NUL can name nothing (PostgreSQL text cannot even hold it): a path with one is 404 and a
    query string with one is 400, before any route or database sees it."""
    if "\x00" in scope["path"]:
        return error_response(404, "no such endpoint or resource")
    query: bytes = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        return error_response(400, "query parameters must not contain NUL characters")
    return None


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            return candidate if _REQUEST_ID_RE.match(candidate) else None
    return None
