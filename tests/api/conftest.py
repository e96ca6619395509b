"""API-tier fixtures: the real application in process, driven over HTTP by httpx.

Each test gets a freshly bootstrapped database: every table is emptied after the test, and
the next app start bootstraps the admin and the ``default`` organization again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete

from terrapod.app import create_app
from terrapod.config import Settings
from terrapod.db import models as _models  # noqa: F401
from terrapod.db.base import Base
from tests.conftest import ADMIN_TOKEN


@pytest.fixture
async def app(migrated_settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(migrated_settings)
    async with application.router.lifespan_context(application):
        yield application
        async with application.state.sessionmaker() as session:
            for table in reversed(Base.metadata.sorted_tables):
                await session.execute(delete(table))
            await session.commit()


@pytest.fixture
async def anon(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://terrapod.test") as client:
        yield client


@pytest.fixture
async def admin(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="https://terrapod.test",
        headers={
            "Authorization": f"Bearer {ADMIN_TOKEN}",
            "Content-Type": "application/vnd.api+json",
        },
    ) as client:
        yield client
