"""Fixtures shared by every tier: settings and a migrated database per backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from terrapod.config import Settings
from terrapod.db.migrate import upgrade
from tests.databases import BACKENDS, temporary_database

ADMIN_TOKEN = "tpod.test-admin-token-0123456789abcdefghijklmnop"


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def migrated_settings(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings for a database built by the Alembic migrations, once per backend."""
    data_dir = tmp_path_factory.mktemp(f"data-{backend}")
    with temporary_database(backend, data_dir) as url:
        settings = Settings(
            data_dir=data_dir,
            database={"url": url, "pool_size": 5},
            admin_token=ADMIN_TOKEN,
            log_format="console",
            log_level="warning",
            # The API tier drives jobs through the agent protocol itself (tests/runs_support.py);
            # real execution is proven end to end against a real server (tests/e2e).
            # Run-event streams end quickly so in-process clients (which read whole bodies)
            # get an answer.
            # Housekeeping sweeps once at start-up only, so query counts are not disturbed.
            runs={
                "builtin_agent": False,
                "event_stream_seconds": 0.5,
                "housekeeping_seconds": 3600,
            },
        )
        upgrade(settings)
        yield settings
