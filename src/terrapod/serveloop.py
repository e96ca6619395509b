"""The event loop ``terrapod serve`` runs on: uvloop, with a short TLS close.

When a TLS connection closes, the server sends its close_notify and waits for the client's
before it lets go of the connection. An idle keep-alive client (an agent between heartbeats,
a terraform CLI between polls) never answers, so each such connection held a stopping server
for uvicorn's whole graceful-shutdown timeout (30 s) and a restart took that long whenever an
agent was connected. uvicorn passes no ``ssl_shutdown_timeout``; this loop gives TLS servers
a short one. Requests in flight are unaffected: a connection is only closed once its
response has been sent.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvloop

# Seconds a closing TLS connection waits for the client's close_notify.
TLS_SHUTDOWN_SECONDS = 2.0


class ServeLoop(uvloop.Loop):
    async def create_server(  # type: ignore[override] # called by uvicorn, with keywords
        self, *args: Any, **kwargs: Any
    ) -> asyncio.AbstractServer:
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_shutdown_timeout", TLS_SHUTDOWN_SECONDS)
        return await super().create_server(*args, **kwargs)
