"""The built-in agent started by the application."""

from __future__ import annotations

from pathlib import Path

import pytest

from terrapod.app import create_app
from terrapod.config import RunSettings, Settings


@pytest.fixture
def in_scratch_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path.resolve()


async def test_a_relative_work_dir_is_made_absolute(
    migrated_settings: Settings, in_scratch_dir: Path
) -> None:
    """Terraform runs with the module directory as its working directory, so every path the
    runner hands it must be absolute (``make serve`` uses the relative ``data``)."""
    runs = RunSettings(builtin_agent=True, work_dir=Path("work"), housekeeping_seconds=3600)
    app = create_app(migrated_settings.model_copy(update={"runs": runs}))
    async with app.router.lifespan_context(app):
        assert app.state.agent.executor.workdir_root == in_scratch_dir / "work"


async def test_the_builtin_agent_reports_on_the_servers_metrics(
    migrated_settings: Settings, in_scratch_dir: Path
) -> None:
    """Its metrics go on the server's registry (/metrics), the same names a ``terrapod agent``
    process serves on its own."""
    runs = RunSettings(builtin_agent=True, agent_concurrency=3, housekeeping_seconds=3600)
    app = create_app(migrated_settings.model_copy(update={"runs": runs}))
    async with app.router.lifespan_context(app):
        registry = app.state.metrics.registry
        assert registry.get_sample_value("terrapod_agent_capacity") == 3
        assert registry.get_sample_value("terrapod_agent_jobs_running") == 0
        retries = "terrapod_agent_server_retries_total"
        assert registry.get_sample_value(retries, {"kind": "job"}) == 0
