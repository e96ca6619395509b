"""``terrapod serve`` over TLS stops promptly while clients hold idle keep-alive connections.

Agents (and terraform between polls) keep a TLS connection open and idle. Closing it, the
server sends its close_notify and waited for the client's, which an idle client never sends,
so every stop sat out uvicorn's whole graceful-shutdown timeout (30 s) whenever an agent was
connected (terrapod.serveloop). The harness gives a stopping server 20 s before it kills it
and fails; the log must not show the graceful-shutdown timeout expiring either.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.databases import temporary_database
from tests.e2e.harness import run_server

pytestmark = pytest.mark.e2e


def test_idle_keep_alive_clients_do_not_hold_a_stopping_server(
    backend: str, tmp_path: Path
) -> None:
    with temporary_database(backend, tmp_path) as database_url:
        with run_server(
            tmp_path, backend=backend, database_url=database_url, admin_token=ADMIN_TOKEN
        ) as server:
            idle = server.http(ADMIN_TOKEN)
            assert idle.get("/api/v2/ping").status_code == 200
            log_path = server.log_path
            # run_server's exit sends SIGTERM with the connection still open and idle, and
            # fails when the server is not gone within its shutdown timeout.
        idle.close()
    log = log_path.read_text()
    assert "Application shutdown complete" in log
    assert "timeout graceful shutdown exceeded" not in log
