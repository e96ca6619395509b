"""Job specs and results as JSON, for the listener protocol (docs/dev/agents.md).

The server sends a :class:`JobSpec` in its ``runs/next`` answer; an agent (or the Kubernetes
pod it launched) sends a :class:`JobResult` back with the job's final status. Both sides use
these functions, so the wire form is written down once. ``from_*`` functions raise
:class:`WireError` naming the first bad member; they never trust their input's types.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from terrapod.runner.spec import (
    ActionInvocationReport,
    DeclaredAction,
    JobResult,
    JobSpec,
    Variable,
)


class WireError(ValueError):
    """A spec or result on the wire is malformed; the message names the member."""


def spec_to_dict(spec: JobSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def result_to_dict(result: JobResult) -> dict[str, Any]:
    return dataclasses.asdict(result)


def spec_from_dict(data: object) -> JobSpec:
    body = _object(data, "spec")
    values = _fields(JobSpec, body, "spec", nested={"variables"})
    values["variables"] = tuple(
        _build(Variable, item, f"spec.variables[{i}]")
        for i, item in enumerate(_list(body.get("variables", []), "spec.variables"))
    )
    return JobSpec(**values)


def result_from_dict(data: object) -> JobResult:
    body = _object(data, "result")
    values = _fields(JobResult, body, "result", nested={"actions", "action_invocations"})
    values["actions"] = tuple(
        _build(DeclaredAction, item, f"result.actions[{i}]")
        for i, item in enumerate(_list(body.get("actions", []), "result.actions"))
    )
    invocations = body.get("action_invocations")
    values["action_invocations"] = (
        None
        if invocations is None
        else tuple(
            _build(ActionInvocationReport, item, f"result.action_invocations[{i}]")
            for i, item in enumerate(_list(invocations, "result.action_invocations"))
        )
    )
    return JobResult(**values)


def _object(data: object, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise WireError(f"{where} must be an object")
    return data


def _list(data: object, where: str) -> list[Any]:
    if not isinstance(data, list):
        raise WireError(f"{where} must be a list")
    return data


def _build(cls: type[Any], data: object, where: str) -> Any:
    return cls(**_fields(cls, _object(data, where), where))


def _fields(
    cls: type[Any],
    body: dict[str, Any],
    where: str,
    *,
    nested: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The members of ``body`` that are fields of ``cls`` (others are ignored, so a newer
    peer may add members), each checked against the field's type."""
    hints = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for name, field in hints.items():
        if name in nested:
            continue
        if name not in body:
            if (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            ):
                raise WireError(f"{where}.{name} is required")
            continue
        values[name] = _check(body[name], str(field.type), f"{where}.{name}")
    return values


_SCALARS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
}


def _check(value: object, annotation: str, where: str) -> Any:
    """``value`` if it fits ``annotation`` (the dataclass field's type, as text)."""
    options = [part.strip() for part in annotation.split("|")]
    if value is None:
        if "None" in options:
            return None
        raise WireError(f"{where} cannot be null")
    for option in options:
        if option in _SCALARS:
            if isinstance(value, _SCALARS[option]) and not (
                option == "int" and isinstance(value, bool)
            ):
                return value
        elif option.startswith("Literal["):
            allowed = [a.strip().strip("'\"") for a in option[8:-1].split(",")]
            if value in allowed:
                return value
        elif option == "tuple[str, ...]":
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
        elif (
            option == "tuple[tuple[str, str], ...]"
            and isinstance(value, list)
            and all(
                isinstance(v, list) and len(v) == 2 and all(isinstance(x, str) for x in v)
                for v in value
            )
        ):
            return tuple((v[0], v[1]) for v in value)
    raise WireError(f"{where} must be {annotation}")


__all__ = [
    "WireError",
    "result_from_dict",
    "result_to_dict",
    "spec_from_dict",
    "spec_to_dict",
]
