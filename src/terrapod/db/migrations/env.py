"""Alembic environment: runs migrations over the async engine Terrapod itself uses."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from terrapod.config import Settings
from terrapod.db import models as _models  # noqa: F401  (fills Base.metadata)
from terrapod.db.base import Base
from terrapod.db.engine import create_engine

target_metadata = Base.metadata


def _settings() -> Settings:
    settings = context.config.attributes.get("terrapod_settings")
    return settings if settings is not None else Settings()


def _run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode alters a SQLite table by copying it and dropping the original. With
        # foreign keys on (terrapod.db.engine turns them on for every connection), that DROP
        # fires the ON DELETE CASCADE of every table pointing at it: 0005's rebuild of
        # `workspaces` deleted every state version and tag. Off while migrating (SQLite's
        # documented procedure for altering tables), then checked and back on.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        if sqlite:
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"the migrations left broken foreign keys: {broken[:5]}")
    finally:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")


async def _run_async() -> None:
    engine = create_engine(_settings())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def _main(**_: Any) -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    asyncio.run(_run_async())


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `terrapod migrate`")
_main()
