"""Reading a plan's JSON (``terraform show -json <planfile>``): its summary, and the two
forms handed over for the API.

* :func:`summarize` — has-changes and the resource counts the run records.
* :func:`without_sensitive_variables` — the full JSON plan minus the values of sensitive
  input variables (its ``variables`` block holds every value in clear).
* :func:`redacted_plan` — what ``GET /plans/:id/json-output-redacted`` serves: the shape the
  terraform CLI decodes into ``jsonformat.Plan`` and renders (terraform
  ``internal/cloud/backend_plan.go``, ``readRedactedPlan``/``decodeRedactedPlan``;
  ``internal/command/jsonformat/plan.go``), with sensitive values replaced by keyed hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

JSON = Any  # a decoded JSON value

_NOTHING_TO_DO = (["no-op"], ["read"])


@dataclass(frozen=True)
class PlanSummary:
    has_changes: bool
    additions: int = 0
    changes: int = 0
    destructions: int = 0
    imports: int = 0


def summarize(plan: JSON, *, refresh_only: bool) -> PlanSummary:
    """Counts as Terraform's own "Plan: …" line makes them (managed resources; a replace is
    one addition and one destruction). A plan has changes when applying it would do
    anything: a resource action other than no-op/read, an import or a move, or a changed
    output; for a refresh-only plan, when the refresh found drift or outputs changed."""
    additions = changes = destructions = imports = 0
    acts = False
    for rc in plan.get("resource_changes") or ():
        change = rc["change"]
        actions = change["actions"]
        if change.get("importing") is not None:
            imports += 1
        if actions not in _NOTHING_TO_DO or change.get("importing") is not None:
            acts = True
        if rc.get("previous_address"):
            acts = True
        if rc.get("mode") != "managed":
            continue
        if actions == ["create"]:
            additions += 1
        elif actions == ["update"]:
            changes += 1
        elif actions == ["delete"]:
            destructions += 1
        elif sorted(actions) == ["create", "delete"]:
            additions += 1
            destructions += 1
    outputs_change = any(
        oc["actions"] != ["no-op"] for oc in (plan.get("output_changes") or {}).values()
    )
    if refresh_only:
        drifted = any(
            rd["change"]["actions"] != ["no-op"] or rd.get("previous_address")
            for rd in plan.get("resource_drift") or ()
        )
        has_changes = drifted or outputs_change
    else:
        has_changes = acts or outputs_change
    return PlanSummary(has_changes, additions, changes, destructions, imports)


def without_sensitive_variables(plan: JSON, sensitive_names: Iterable[str]) -> JSON:
    """``plan`` with the ``value`` of every sensitive input variable removed: those named
    in ``sensitive_names`` and those the configuration declares ``sensitive = true``."""
    declared = (plan.get("configuration") or {}).get("root_module", {}).get("variables", {})
    hidden = set(sensitive_names) | {n for n, d in declared.items() if d.get("sensitive")}
    variables = {
        name: ({k: v for k, v in body.items() if k != "value"} if name in hidden else body)
        for name, body in (plan.get("variables") or {}).items()
    }
    return {**plan, "variables": variables} if "variables" in plan else plan


def redacted_plan(plan: JSON, provider_schemas: JSON) -> JSON:
    """The redacted plan for the CLI's renderer, from ``terraform show -json <planfile>``
    and ``terraform providers schema -json``.

    Every value marked sensitive (``before_sensitive``/``after_sensitive``) is replaced, leaf
    by leaf, by an HMAC under a key made for this plan alone: the renderer only prints
    "(sensitive value)" but compares before and after to tell an unchanged secret from a
    changed one, and it walks lists and maps by their schema type, so the structure stays.
    """
    redact = _Redactor(secrets.token_bytes(32))
    redacted: dict[str, JSON] = {
        "plan_format_version": plan["format_version"],
        "resource_drift": [redact.resource_change(rc) for rc in plan.get("resource_drift") or ()],
        "resource_changes": [
            redact.resource_change(rc) for rc in plan.get("resource_changes") or ()
        ],
        "relevant_attributes": plan.get("relevant_attributes") or [],
        "output_changes": {
            name: redact.change(oc) for name, oc in (plan.get("output_changes") or {}).items()
        },
        "provider_format_version": provider_schemas["format_version"],
        "provider_schemas": provider_schemas.get("provider_schemas") or {},
    }
    if plan.get("deferred_changes"):
        redacted["deferred_changes"] = [
            {**dc, "resource_change": redact.resource_change(dc["resource_change"])}
            for dc in plan["deferred_changes"]
        ]
    if plan.get("action_invocations"):
        redacted["action_invocations"] = [
            {
                **ai,
                "config_values": redact.value(
                    ai.get("config_values"), ai.get("config_sensitive", False)
                ),
            }
            for ai in plan["action_invocations"]
        ]
    return redacted


class _Redactor:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def resource_change(self, rc: JSON) -> JSON:
        return {**rc, "change": self.change(rc["change"])}

    def change(self, change: JSON) -> JSON:
        return {
            **change,
            "before": self.value(change.get("before"), change.get("before_sensitive", False)),
            "after": self.value(change.get("after"), change.get("after_sensitive", False)),
        }

    def value(self, value: JSON, sensitive: JSON) -> JSON:
        """``value`` with the parts ``sensitive`` marks (``true``, or a mirror structure
        with ``true`` at sensitive paths) hashed."""
        if sensitive is True:
            return self._hashed(value)
        if isinstance(sensitive, dict) and isinstance(value, dict):
            return {k: self.value(v, sensitive.get(k, False)) for k, v in value.items()}
        if isinstance(sensitive, list) and isinstance(value, list):
            return [
                self.value(v, sensitive[i] if i < len(sensitive) else False)
                for i, v in enumerate(value)
            ]
        return value

    def _hashed(self, value: JSON) -> JSON:
        if isinstance(value, dict):
            return {k: self._hashed(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._hashed(v) for v in value]
        if value is None:
            return None
        encoded = json.dumps(value, sort_keys=True).encode()
        return hmac.new(self._key, encoded, hashlib.sha256).hexdigest()
