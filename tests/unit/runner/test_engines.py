"""The workspace's Terraform version setting resolves to an engine on this agent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from terrapod.runner.engines import EngineResolver, EngineUnavailable


@pytest.fixture
def extra(tmp_path: Path) -> dict[str, Path]:
    """Other versions configured as binaries (empty files stand in for them)."""
    binaries = {v: tmp_path / f"terraform-{v}" for v in ("1.14.2", "1.16.0-beta1", "2.0.0")}
    for path in binaries.values():
        path.touch()
    return binaries


def test_embedded_engine_is_the_installed_terrapod_terraform() -> None:
    engine = EngineResolver().resolve("latest")

    assert engine.name == "terraform"
    assert engine.version == "1.15.5"
    assert engine.path == Path(sys.executable).parent / "terrapod-terraform"


@pytest.mark.parametrize(
    "setting",
    ["latest", "1.15.5", "v1.15.5", "= 1.15.5", "~> 1.15", "~> 1.15.0", ">= 1.0, < 2.0", "> 1.15"],
)
def test_embedded_engine_serves_every_setting_it_satisfies(setting: str) -> None:
    assert EngineResolver().resolve(setting).version == "1.15.5"


@pytest.mark.parametrize(
    ("setting", "version"),
    [
        ("latest", "2.0.0"),  # the newest release, never a pre-release
        ("1.14.2", "1.14.2"),
        ("~> 1.14.0", "1.14.2"),
        ("~> 1.14", "1.15.5"),  # the newest 1.x
        ("~> 1", "2.0.0"),  # as in go-version, a one-segment "~>" only sets the minimum
        ("< 1.15", "1.14.2"),
        ("<= 1.15.5, != 1.15.5", "1.14.2"),
        ("> 1.15.5", "2.0.0"),
        ("1.16.0-beta1", "1.16.0-beta1"),  # a pre-release only when named exactly
    ],
)
def test_newest_offered_version_satisfying_the_setting_wins(
    extra: dict[str, Path], setting: str, version: str
) -> None:
    engine = EngineResolver(extra).resolve(setting)

    assert engine.version == version
    assert engine.path == extra.get(version, Path(sys.executable).parent / "terrapod-terraform")


def test_pre_release_does_not_satisfy_a_range(extra: dict[str, Path]) -> None:
    with pytest.raises(EngineUnavailable):
        EngineResolver(extra).resolve("> 1.15.5, < 2")


def test_configured_binary_that_is_missing_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="which is not a file"):
        EngineResolver({"1.14.2": tmp_path / "gone"}).resolve("1.14.2")


def test_unavailable_version_names_what_the_agent_has() -> None:
    with pytest.raises(EngineUnavailable) as refused:
        EngineResolver().resolve("1.2.3")

    assert str(refused.value) == "Terraform 1.2.3 is not available on this agent; it has: 1.15.5"


@pytest.mark.parametrize("setting", ["banana", "~> ", ">= 1.0,, < 2", "1.2.3.4"])
def test_malformed_setting_is_unavailable(setting: str) -> None:
    with pytest.raises(EngineUnavailable, match="is not valid"):
        EngineResolver().resolve(setting)
