"""Object keys are built in one module and validated everywhere."""

from __future__ import annotations

import pytest

from terrapod.storage import keys
from terrapod.storage.base import InvalidKey


def test_named_builders_layout() -> None:
    assert (
        keys.state_version("ws-abc", "sv-def") == "workspaces/ws-abc/state-versions/sv-def.tfstate"
    )
    assert (
        keys.state_version_json("ws-abc", "sv-def")
        == "workspaces/ws-abc/state-versions/sv-def.json"
    )
    assert keys.configuration_version("cv-123") == "configuration-versions/cv-123.tar.gz"
    assert keys.plan_log("run-9") == "runs/run-9/plan.log"
    assert keys.apply_log("run-9") == "runs/run-9/apply.log"
    assert keys.workspace_prefix("ws-abc") == "workspaces/ws-abc/"
    assert keys.run_prefix("run-9") == "runs/run-9/"


def test_every_workspace_object_is_under_its_prefix() -> None:
    prefix = keys.workspace_prefix("ws-abc")

    assert keys.state_version("ws-abc", "sv-1").startswith(prefix)
    assert keys.state_version_json("ws-abc", "sv-1").startswith(prefix)
    assert not keys.state_version("ws-abcd", "sv-1").startswith(prefix)


@pytest.mark.parametrize(
    "call",
    [
        lambda: keys.state_version("sv-def", "ws-abc"),  # swapped
        lambda: keys.state_version("ws-", "sv-1"),
        lambda: keys.configuration_version("run-1"),
        lambda: keys.plan_log("ws-1"),
        lambda: keys.apply_log("../run-1"),
        lambda: keys.state_version("ws-a/b", "sv-1"),
    ],
)
def test_builders_reject_wrong_ids(call: object) -> None:
    with pytest.raises(InvalidKey):
        call()  # type: ignore[operator]


def test_key_joins_validated_segments() -> None:
    assert keys.key("a", "b-c", "d.e") == "a/b-c/d.e"


@pytest.mark.parametrize(
    "parts",
    [(), ("",), ("a", ""), ("..",), ("a", ".."), ("/a",), ("a/b",), ("a\x00",), ("a\\b",), (".x",)],
)
def test_key_rejects_bad_parts(parts: tuple[str, ...]) -> None:
    with pytest.raises(InvalidKey):
        keys.key(*parts)


def test_invalid_key_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="segment"):
        keys.validate_key("a/../b")


def test_key_length_limit_counts_utf8_bytes() -> None:
    assert keys.validate_key("é" * 512)  # 1024 bytes
    with pytest.raises(InvalidKey):
        keys.validate_key("é" * 513)


@pytest.mark.parametrize("prefix", ["", "a", "a/", "a/b", "runs/run-1/"])
def test_valid_prefixes(prefix: str) -> None:
    assert keys.validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["/", "//", "a//", "../", "/a", "a/../"])
def test_invalid_prefixes(prefix: str) -> None:
    with pytest.raises(InvalidKey):
        keys.validate_prefix(prefix)
