"""Engine and session factory for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from terrapod.config import Settings
from terrapod.db.hooks import Hooks


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed during a write; busy_timeout makes concurrent writers queue
    # instead of failing with "database is locked"; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


WRITE_OPTION = "terrapod_write"
SQLITE_POOL_SIZE = 4


def _sqlite_begin(conn: Any) -> None:
    # Python's sqlite3 transaction handling is disabled (isolation_level=None) so that we
    # emit BEGIN ourselves. A transaction that will write takes the write lock at BEGIN
    # (IMMEDIATE): with deferred transactions two writers that both read first cannot both
    # upgrade, and one fails at once with SQLITE_BUSY, ignoring busy_timeout. Read-only
    # transactions stay deferred so WAL readers never queue behind writers.
    # Read-only requests run in autocommit: each statement sees the newest committed data
    # and skipping BEGIN/COMMIT saves two thread hand-offs per request (about a fifth of a
    # read's CPU, measured by benchmarks/api_latency.py). The price is that two reads in one
    # request (a count and a page) are not one snapshot.
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # SQLite serializes writers anyway; a few connections (each with an aiosqlite
        # thread) serve reads as well as thirty and contend less for the GIL.
        engine = create_async_engine(
            url,
            echo=settings.database.echo,
            pool_size=min(settings.database.pool_size, SQLITE_POOL_SIZE),
            max_overflow=min(settings.database.max_overflow, SQLITE_POOL_SIZE),
            connect_args={"isolation_level": None},
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        url,
        echo=settings.database.echo,
        pool_size=settings.database.pool_size,
        max_overflow=settings.database.max_overflow,
        pool_pre_ping=False,
    )


def create_sessionmaker(
    engine: AsyncEngine, hooks: Hooks | None = None, *, events: object | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions carry the application's :class:`~terrapod.db.hooks.Hooks` and its event bus
    (:class:`terrapod.events.bus.EventBus`) in ``info``."""
    return async_sessionmaker(
        engine,
        expire_on_commit=False,
        autoflush=False,
        info={"hooks": hooks or Hooks(), "events": events},
    )
