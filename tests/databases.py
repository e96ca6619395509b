"""Throw-away databases for the test matrix: a SQLite file or a fresh PostgreSQL database.

PostgreSQL is expected at 127.0.0.1:5432 with trust auth (DESIGN.md, Tests); `.ci/run` starts
it when it is down. A test run that cannot reach it fails rather than skipping.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg

PG_HOST = os.environ.get("TERRAPOD_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("TERRAPOD_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("TERRAPOD_TEST_PG_USER", "postgres")

BACKENDS = ("sqlite", "postgresql")


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def temporary_database(backend: str, data_dir: Path) -> Iterator[str | None]:
    """Yield a database URL for ``backend`` (None means Terrapod's SQLite default)."""
    if backend == "sqlite":
        yield None
        return
    name = f"terrapod_test_{secrets.token_hex(6)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
