"""The Alembic head and the models describe the same schema, on both databases."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from terrapod.config import Settings
from terrapod.db import models as _models  # noqa: F401
from terrapod.db.base import Base
from terrapod.db.engine import create_engine
from terrapod.db.migrate import current_head


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def _compare(settings: Settings) -> tuple[list[object], str | None]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
            version = await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )
    finally:
        await engine.dispose()
    return diff, version


# SQLite cannot reflect expression indexes (lower(name)); PostgreSQL compares them.
@pytest.mark.filterwarnings("ignore:.*expression-based index:UserWarning")
@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_autogenerate_finds_no_difference(migrated_settings: Settings) -> None:
    diff, version = asyncio.run(_compare(migrated_settings))
    assert version == current_head()
    assert diff == [], f"models and migrations differ; run alembic autogenerate: {diff}"


async def _index_names(settings: Settings) -> set[str]:
    engine = create_engine(settings)
    try:
        async with engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                sql = "SELECT name FROM sqlite_master WHERE type = 'index'"
            else:
                sql = "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
            return set((await conn.exec_driver_sql(sql)).scalars())
    finally:
        await engine.dispose()


def test_expression_indexes_survive_every_migration(migrated_settings: Settings) -> None:
    """Autogenerate cannot compare expression indexes on SQLite, and Alembic's batch mode
    drops them when it rebuilds a table; so they are checked by name on both databases."""
    assert "uq_workspaces_org_lower_name" in asyncio.run(_index_names(migrated_settings))
