"""The workspace's Terraform version setting resolves to an engine on this agent."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from terrapod.runner.engines import EngineResolver, EngineUnavailable

EXTRA = {
    "1.14.2": Path("/opt/tf/1.14.2"),
    "1.16.0-beta1": Path("/opt/tf/1.16.0-beta1"),
    "2.0.0": Path("/opt/tf/2.0.0"),
}


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
def test_newest_offered_version_satisfying_the_setting_wins(setting: str, version: str) -> None:
    assert EngineResolver(EXTRA).resolve(setting).version == version


def test_pre_release_does_not_satisfy_a_range() -> None:
    with pytest.raises(EngineUnavailable):
        EngineResolver(EXTRA).resolve("> 1.15.5, < 2")


def test_unavailable_version_names_what_the_agent_has() -> None:
    with pytest.raises(EngineUnavailable) as refused:
        EngineResolver().resolve("1.2.3")

    assert str(refused.value) == "Terraform 1.2.3 is not available on this agent; it has: 1.15.5"


@pytest.mark.parametrize("setting", ["banana", "~> ", ">= 1.0,, < 2", "1.2.3.4"])
def test_malformed_setting_is_unavailable(setting: str) -> None:
    with pytest.raises(EngineUnavailable, match="is not valid"):
        EngineResolver().resolve(setting)
