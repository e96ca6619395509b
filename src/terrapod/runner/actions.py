"""Terraform actions (1.14+) as the engine reports them: declared, planned, invoked.

* The plan's JSON (``terraform show -json <plan>``) lists the configuration's ``action``
  blocks under ``configuration`` (per module) and the invocations the plan holds under
  ``action_invocations``: ``invoke_action_trigger`` for ``-invoke=<address>``,
  ``lifecycle_action_trigger`` for a resource's ``lifecycle { action_trigger { … } }``.
* An apply with ``-json`` streams ``action_start``, ``action_progress``, ``action_complete``
  and ``action_errored`` lines (Terraform's machine-readable UI), each naming the action
  (``hook.action``) and, for a lifecycle invocation, its trigger (``hook.lifecycle``).

Both phases describe an invocation by the same four things (its full address, the triggering
resource, the trigger block's index and the action's index in its ``actions`` list), which
make its :attr:`~terrapod.runner.spec.ActionInvocationReport.match_key`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from terrapod.runner.spec import ActionInvocationReport, DeclaredAction

_ADDRESS = re.compile(
    r"^(?:(?P<module>.+)\.)?(?P<local>action\.[A-Za-z_][\w-]*\.[A-Za-z_][\w-]*)"
    r"(?:\[(?P<key>.*)\])?$"
)
_EVENTS = frozenset({"action_start", "action_progress", "action_complete", "action_errored"})


def match_key(
    full_address: str,
    triggering_resource: str | None,
    block_index: int | None,
    list_index: int | None,
) -> str:
    return json.dumps([full_address, triggering_resource, block_index, list_index])


def split_address(full_address: str) -> tuple[str, str, str | int | None]:
    """``module.a.action.t.n["k"]`` -> (``module.a``, ``action.t.n``, ``"k"``)."""
    match = _ADDRESS.match(full_address)
    if match is None:
        return "", full_address, None
    key: str | int | None = None
    if match["key"] is not None:
        try:
            decoded = json.loads(match["key"])
        except ValueError:
            decoded = match["key"]
        key = decoded if isinstance(decoded, str | int) else str(decoded)
    return match["module"] or "", match["local"], key


def provider_type(source_or_key: str) -> str:
    """``registry.terraform.io/hashicorp/aws`` or ``module.a:aws.west`` -> ``aws``."""
    name = source_or_key.rpartition(":")[2].rpartition("/")[2]
    return name.partition(".")[0]


def declared_actions(plan: dict[str, Any]) -> list[DeclaredAction]:
    """Every ``action`` block of the plan's configuration, root module first."""
    found: list[DeclaredAction] = []
    root = (plan.get("configuration") or {}).get("root_module") or {}
    pending: list[tuple[str, dict[str, Any]]] = [("", root)]
    while pending:
        module_address, module = pending.pop(0)
        for block in module.get("actions") or ():
            if not isinstance(block, dict) or not isinstance(block.get("address"), str):
                continue
            instance_type: Literal["single", "count", "for_each"] = "single"
            count_value = None
            if "count_expression" in block:
                instance_type = "count"
                constant = (block.get("count_expression") or {}).get("constant_value")
                count_value = constant if isinstance(constant, int) else None
            elif "for_each_expression" in block:
                instance_type = "for_each"
            found.append(
                DeclaredAction(
                    module_address=module_address,
                    address=block["address"],
                    provider=provider_type(str(block.get("provider_config_key", ""))),
                    instance_type=instance_type,
                    count_value=count_value,
                )
            )
        for name, call in sorted((module.get("module_calls") or {}).items()):
            child = (call or {}).get("module") or {}
            prefix = f"{module_address}." if module_address else ""
            pending.append((f"{prefix}module.{name}", child))
    return found


def planned_invocations(plan: dict[str, Any]) -> list[ActionInvocationReport]:
    """The plan's ``action_invocations``, in the plan's order."""
    found: list[ActionInvocationReport] = []
    for order, item in enumerate(plan.get("action_invocations") or ()):
        if not isinstance(item, dict) or not isinstance(item.get("address"), str):
            continue
        full = item["address"]
        module, address, key = split_address(full)
        provider = provider_type(str(item.get("provider_name", "")))
        trigger = item.get("lifecycle_action_trigger")
        if isinstance(trigger, dict):
            resource = trigger.get("triggering_resource_address")
            block_index = trigger.get("action_trigger_block_index")
            list_index = trigger.get("actions_list_index")
            found.append(
                ActionInvocationReport(
                    match_key=match_key(full, resource, block_index, list_index),
                    module_address=module,
                    address=address,
                    action_key=key,
                    provider=provider,
                    method="lifecycle",
                    triggering_resource_address=resource,
                    trigger_event=trigger.get("action_trigger_event"),
                    trigger_block_index=block_index,
                    actions_list_index=list_index,
                    order=order,
                )
            )
        else:
            found.append(
                ActionInvocationReport(
                    match_key=match_key(full, None, None, None),
                    module_address=module,
                    address=address,
                    action_key=key,
                    provider=provider,
                    method="direct",
                    order=order,
                )
            )
    return found


@dataclass
class _Seen:
    report: ActionInvocationReport
    messages: list[str] = field(default_factory=list)


class ApplyActions:
    """Follows an apply's JSON lines (fed in arbitrary chunks) and keeps what each action
    invocation did: when it started and ended, its progress messages, its error."""

    def __init__(self) -> None:
        self._partial = b""
        self._seen: dict[str, _Seen] = {}

    def feed(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            if b'"action_' in line:
                self._line(line)

    def reports(self) -> tuple[ActionInvocationReport, ...]:
        """What was seen; an invocation that started but never ended counts as failed."""
        if self._partial:
            self.feed(b"\n")
        done = []
        for seen in self._seen.values():
            report = replace(seen.report, messages=tuple(seen.messages))
            if report.status == "planned":
                report = replace(report, status="failed", error=report.error or "interrupted")
            done.append(report)
        return tuple(done)

    def _line(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("type") not in _EVENTS:
            return
        hook = message.get("hook")
        action = hook.get("action") if isinstance(hook, dict) else None
        if not isinstance(hook, dict) or not isinstance(action, dict):
            return
        full = action.get("addr")
        if not isinstance(full, str):
            return
        lifecycle = hook.get("lifecycle")
        if isinstance(lifecycle, dict):
            resource = (lifecycle.get("resource") or {}).get("addr")
            block_index, list_index = lifecycle.get("trigger_index"), lifecycle.get("actions_index")
            key = match_key(full, resource, block_index, list_index)
        else:
            resource = block_index = list_index = None
            key = match_key(full, None, None, None)
        when = message.get("@timestamp") if isinstance(message.get("@timestamp"), str) else None
        seen = self._seen.get(key)
        if seen is None:
            module, address, action_key = split_address(full)
            seen = self._seen[key] = _Seen(
                ActionInvocationReport(
                    match_key=key,
                    module_address=module,
                    address=address,
                    action_key=action_key,
                    provider=str(action.get("implied_provider") or ""),
                    method="lifecycle" if isinstance(lifecycle, dict) else "direct",
                    triggering_resource_address=resource,
                    trigger_event=lifecycle.get("trigger_event")
                    if isinstance(lifecycle, dict)
                    else None,
                    trigger_block_index=block_index,
                    actions_list_index=list_index,
                    order=len(self._seen),
                    started_at=when,
                )
            )
        kind = message["type"]
        if kind == "action_progress" and isinstance(hook.get("message"), str):
            seen.messages.append(hook["message"])
        elif kind == "action_complete":
            seen.report = replace(seen.report, status="successful", completed_at=when)
        elif kind == "action_errored":
            error = hook.get("error")
            seen.report = replace(
                seen.report,
                status="failed",
                completed_at=when,
                error=error if isinstance(error, str) else "the action failed",
            )
