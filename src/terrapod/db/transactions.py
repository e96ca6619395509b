"""One transaction outside a request: for the built-in agent, the scheduler and upload hooks.

The request's session dependency (:func:`terrapod.deps.get_session`) is the request-path twin
of this: both commit on success, roll back on error, and run the ``after_commit`` work (event
publications, object deletions) only once the commit has succeeded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from terrapod.db.engine import WRITE_OPTION
from terrapod.db.hooks import run_after_commit


@asynccontextmanager
async def write_transaction(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session in a write transaction (BEGIN IMMEDIATE on SQLite), committed when the block
    ends, rolled back when it raises."""
    async with sessionmaker() as session:
        await session.connection(execution_options={WRITE_OPTION: True})
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        await run_after_commit(session)
