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
