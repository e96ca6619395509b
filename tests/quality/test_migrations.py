"""The Alembic head and the models describe the same schema, on both databases."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from terrapod.config import Settings
from terrapod.db import models as _models  # noqa: F401
from terrapod.db.base import Base
from terrapod.db.engine import create_engine
from terrapod.db.migrate import current_head, upgrade


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


def _insert(connection: sqlite3.Connection, table: str, **given: object) -> None:
    """A row of ``table`` with ``given`` values and a filler for every other NOT NULL column."""
    values: dict[str, object] = {}
    for _cid, name, declared, notnull, default, _pk in connection.execute(
        f"PRAGMA table_info({table})"
    ):
        if name in given:
            values[name] = given[name]
        elif notnull and default is None:
            kind = (declared or "").upper()
            values[name] = 0 if ("INT" in kind or "BOOL" in kind) else f"x-{name}"
    columns = ", ".join(values)
    marks = ", ".join("?" * len(values))
    # Table and column names come from this test and from SQLite's own table_info.
    sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"  # noqa: S608
    connection.execute(sql, list(values.values()))


def _counts(path: Path, tables: tuple[str, ...]) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as connection:
        return {
            t: connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0]  # noqa: S608
            for t in tables
        }


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
def test_sqlite_table_rebuilds_keep_the_rows_of_tables_pointing_at_them(tmp_path: Path) -> None:
    """Batch mode rebuilds a SQLite table (copy, drop, rename); with foreign keys on, the drop
    fired the ON DELETE CASCADE of its children: upgrading past 0005 (which rebuilds
    `workspaces`) deleted every state version and tag of an existing install."""
    settings = Settings(data_dir=tmp_path)
    upgrade(settings, "0004")
    database = next(tmp_path.glob("*.db"))
    with closing(sqlite3.connect(database)) as connection:
        _insert(connection, "organizations", id="org-aaaaaaaaaaaaaaaa", name="o")
        _insert(
            connection,
            "workspaces",
            id="ws-aaaaaaaaaaaaaaaa",
            organization_id="org-aaaaaaaaaaaaaaaa",
            name="w",
        )
        _insert(
            connection,
            "state_versions",
            id="sv-aaaaaaaaaaaaaaaa",
            workspace_id="ws-aaaaaaaaaaaaaaaa",
        )
        _insert(connection, "workspace_tags", workspace_id="ws-aaaaaaaaaaaaaaaa")
        connection.commit()
    tables = ("organizations", "workspaces", "state_versions", "workspace_tags")
    assert _counts(database, tables) == dict.fromkeys(tables, 1)
    upgrade(settings, "head")
    assert _counts(database, tables) == dict.fromkeys(tables, 1)
