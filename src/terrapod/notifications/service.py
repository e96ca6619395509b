"""The rules of this domain."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from terrapod.runs.models import Run


async def on_run_changed(session: AsyncSession, run: Run) -> None:
    """The ``run_changed`` hook (wired in terrapod.app)."""
