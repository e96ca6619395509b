"""A plan's summary, and the JSON forms handed over, from ``terraform show -json`` output."""

from __future__ import annotations

from typing import Any

from terrapod.runner.planjson import (
    PlanSummary,
    redacted_plan,
    summarize,
    without_sensitive_variables,
)


def _rc(address: str, *actions: str, mode: str = "managed", **change: Any) -> dict[str, Any]:
    return {"address": address, "mode": mode, "change": {"actions": list(actions), **change}}


def _plan(*changes: dict[str, Any], **rest: Any) -> dict[str, Any]:
    return {"format_version": "1.2", "resource_changes": list(changes), **rest}


def test_counts_follow_terraforms_plan_line() -> None:
    plan = _plan(
        _rc("a", "create"),
        _rc("b", "update"),
        _rc("c", "delete"),
        _rc("d", "delete", "create"),
        _rc("e", "create", "delete"),
        _rc("f", "no-op", importing={"id": "x"}),
        _rc("g", "update", importing={"id": "y"}),
        _rc("data.h", "read", mode="data"),
    )

    assert summarize(plan, refresh_only=False) == PlanSummary(
        has_changes=True, additions=3, changes=2, destructions=3, imports=2
    )


def test_no_op_and_reads_are_no_changes() -> None:
    plan = _plan(_rc("a", "no-op"), _rc("data.b", "read", mode="data"))

    assert summarize(plan, refresh_only=False) == PlanSummary(has_changes=False)


def test_import_or_move_alone_is_a_change() -> None:
    imported = _rc("a", "no-op", importing={"id": "x"})
    assert summarize(_plan(imported), refresh_only=False).has_changes
    moved = {**_rc("a", "no-op"), "previous_address": "old"}
    assert summarize(_plan(moved), refresh_only=False).has_changes


def test_changed_output_alone_is_a_change() -> None:
    plan = _plan(output_changes={"o": {"actions": ["update"]}, "p": {"actions": ["no-op"]}})

    assert summarize(plan, refresh_only=False) == PlanSummary(has_changes=True)


def test_refresh_only_plan_has_changes_only_when_something_drifted() -> None:
    planned = _plan(_rc("a", "create"))
    drifted = _plan(resource_drift=[_rc("a", "update")])

    assert not summarize(planned, refresh_only=True).has_changes
    assert summarize(drifted, refresh_only=True).has_changes


def test_sensitive_variable_values_are_removed_from_the_plan() -> None:
    plan = {
        "variables": {"named": {"value": "x"}, "declared": {"value": "y"}, "plain": {"value": "z"}},
        "configuration": {"root_module": {"variables": {"declared": {"sensitive": True}}}},
    }

    stripped = without_sensitive_variables(plan, {"named"})

    assert stripped["variables"] == {"named": {}, "declared": {}, "plain": {"value": "z"}}


SCHEMAS = {"format_version": "1.0", "provider_schemas": {"p": {"resource_schemas": {}}}}


def test_redacted_plan_has_the_shape_the_cli_decodes() -> None:
    plan = _plan(
        _rc("a", "create", before=None, after={"x": 1}),
        relevant_attributes=[{"resource": "a", "attribute": ["x"]}],
        output_changes={"o": {"actions": ["create"], "before": None, "after": "v"}},
        variables={"v": {"value": "secret"}},
        prior_state={"values": {}},
    )

    redacted = redacted_plan(plan, SCHEMAS)

    assert redacted == {
        "plan_format_version": "1.2",
        "resource_drift": [],
        "resource_changes": plan["resource_changes"],
        "relevant_attributes": plan["relevant_attributes"],
        "output_changes": plan["output_changes"],
        "provider_format_version": "1.0",
        "provider_schemas": SCHEMAS["provider_schemas"],
    }


def test_sensitive_values_are_hashed_keeping_structure_and_equality() -> None:
    change = {
        "actions": ["update"],
        "before": {"password": "old", "keys": ["k1", "k2"], "name": "n", "tags": {"a": "b"}},
        "after": {"password": "new", "keys": ["k1", "k3"], "name": "n", "tags": {"a": "b"}},
        "before_sensitive": {"password": True, "keys": [False, True], "tags": True},
        "after_sensitive": {"password": True, "keys": [False, True], "tags": True},
    }

    redacted = redacted_plan(_plan({"address": "r", "mode": "managed", "change": change}), SCHEMAS)

    before = redacted["resource_changes"][0]["change"]["before"]
    after = redacted["resource_changes"][0]["change"]["after"]
    assert "old" not in str(before) and "new" not in str(after) and "k3" not in str(after)
    assert before["password"] != after["password"]  # changed secrets still show as changed
    assert before["tags"] == after["tags"]  # unchanged ones as unchanged
    assert set(after["tags"]) == {"a"}  # a map stays a map for the renderer
    assert after["keys"][0] == "k1" and len(after["keys"][1]) == 64
    assert after["name"] == "n"


def test_sensitive_output_is_hashed() -> None:
    output = {
        "actions": ["create"],
        "before": None,
        "after": "hunter2",
        "before_sensitive": True,
        "after_sensitive": True,
    }

    redacted = redacted_plan(_plan(output_changes={"s": output}), SCHEMAS)

    assert redacted["output_changes"]["s"]["after"] not in {"hunter2", None}
    assert redacted["output_changes"]["s"]["before"] is None
