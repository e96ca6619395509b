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


def _sqlite_begin(conn: Any) -> None:
    # Python's sqlite3 transaction handling is disabled (isolation_level=None) so that we
    # emit BEGIN ourselves. A transaction that will write takes the write lock at BEGIN
    # (IMMEDIATE): with deferred transactions two writers that both read first cannot both
    # upgrade, and one fails at once with SQLITE_BUSY, ignoring busy_timeout. Read-only
    # transactions stay deferred so WAL readers never queue behind writers.
    if conn.get_execution_options().get(WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def create_engine(settings: Settings) -> AsyncEngine:
    url = settings.database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            echo=settings.database.echo,
            pool_size=settings.database.pool_size,
            max_overflow=settings.database.max_overflow,
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
    engine: AsyncEngine, hooks: Hooks | None = None
) -> async_sessionmaker[AsyncSession]:
    """Sessions carry the application's :class:`~terrapod.db.hooks.Hooks` in ``info``."""
    return async_sessionmaker(
        engine, expire_on_commit=False, autoflush=False, info={"hooks": hooks or Hooks()}
    )
