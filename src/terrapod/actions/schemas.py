"""TFE wire shapes of Terraform actions (seed 002, HCP Terraform's "Terraform actions API").

Types as the seed shows them: ``actions``, ``action-filter-options``,
``action-invocation-run-summary``, ``action-invocation-filter-options``,
``action-invocations`` and ``action-invocation-resource-groups``. ``invocation-count``
appears on the show document only, as in the seed. Invocation lists carry
``meta.counts.invocations.total`` (and ``resource-groups.total`` for the groups) beside
Terrapod's usual ``meta.pagination``.
"""

from __future__ import annotations

from typing import Any

from terrapod.actions.models import TerraformAction
from terrapod.actions.service import ActionView, InvocationView, ResourceGroup, RunSummary
from terrapod.jsonapi.documents import Resource, iso, ref, resource
from terrapod.jsonapi.models import (
    ListMeta,
    Omitted,
    PageLinks,
    Pagination,
    Timestamp,
    WireModel,
    listing,
    single,
    to_one,
)
from terrapod.jsonapi.models import resource as resource_model

ACTION_TYPE = "actions"
INVOCATION_TYPE = "action-invocations"

# -- responses ------------------------------------------------------------------------------


class ActionResponseAttributes(WireModel):
    address: str
    module_address: str
    provider: str
    documentation_url: str | None
    created_at: Timestamp
    updated_at: Timestamp
    instance_type: str
    count_value: int | None
    for_each_values: list[str] | None
    invocation_count: int | Omitted = None


class ActionRelationships(WireModel):
    workspace: to_one("workspaces")  # type: ignore[valid-type]
    last_invocation: to_one("action-invocations")  # type: ignore[valid-type]


ActionDocument = single(ACTION_TYPE, ActionResponseAttributes, relationships=ActionRelationships)
ActionList = listing(ACTION_TYPE, ActionResponseAttributes, relationships=ActionRelationships)


class ActionFilterOptionsResponseAttributes(WireModel):
    providers: list[str]


ActionFilterOptionsDocument = single("action-filter-options", ActionFilterOptionsResponseAttributes)


class InvokedBy(WireModel):
    username: str
    avatar_url: str | None


class InvocationStatuses(WireModel):
    successful: int
    failed: int


class RunSummaryResponseAttributes(WireModel):
    aggregate_invocation_status: str
    invocation_method: str
    invoked_at: Timestamp | None
    invoked_by: InvokedBy
    invocation_statuses: InvocationStatuses
    planned_invocation_count: int


class RunSummaryRelationships(WireModel):
    action: to_one("actions")  # type: ignore[valid-type]
    run: to_one("runs")  # type: ignore[valid-type]


RunSummaryList = listing(
    "action-invocation-run-summary",
    RunSummaryResponseAttributes,
    relationships=RunSummaryRelationships,
)


class InvocationFilterOptionsResponseAttributes(WireModel):
    invoked_by: list[str]


InvocationFilterOptionsDocument = single(
    "action-invocation-filter-options", InvocationFilterOptionsResponseAttributes
)


class InvocationResponseAttributes(WireModel):
    final_status: str | None
    invocation_method: str
    action_key: str | int | None
    action_trigger_event: str | None
    triggering_resource_address: str | None
    action_trigger_block_index: int | None
    actions_list_index: int | None
    invoked_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp


class InvocationRelationships(WireModel):
    action: to_one("actions")  # type: ignore[valid-type]
    run: to_one("runs")  # type: ignore[valid-type]


class Total(WireModel):
    total: int


class InvocationCounts(WireModel):
    invocations: Total


class InvocationListMeta(ListMeta):
    counts: InvocationCounts


InvocationResource = resource_model(
    INVOCATION_TYPE, InvocationResponseAttributes, relationships=InvocationRelationships
)


class InvocationList(WireModel):
    data: list[InvocationResource]  # type: ignore[valid-type]
    meta: InvocationListMeta
    links: PageLinks


class GroupMember(WireModel):
    id: str
    final_status: str | None
    action_key: str | int | None
    action_trigger_event: str | None


class ResourceGroupResponseAttributes(WireModel):
    triggering_resource_address: str
    aggregate_invocation_status: str
    invocations: list[GroupMember]


class GroupCounts(WireModel):
    invocations: Total
    resource_groups: Total


class ResourceGroupListMeta(WireModel):
    pagination: Pagination
    counts: GroupCounts


GroupResource = resource_model("action-invocation-resource-groups", ResourceGroupResponseAttributes)


class ResourceGroupList(WireModel):
    data: list[GroupResource]  # type: ignore[valid-type]
    meta: ResourceGroupListMeta
    links: PageLinks


# -- serializers ----------------------------------------------------------------------------


def serialize_action(view: ActionView) -> Resource:
    action: TerraformAction = view.action
    attributes: dict[str, Any] = {
        "address": action.address,
        "module-address": action.module_address,
        "provider": action.provider,
        # Providers do not tell the engine where their documentation is.
        "documentation-url": None,
        "created-at": iso(action.created_at),
        "updated-at": iso(action.updated_at),
        "instance-type": action.instance_type,
        "count-value": action.count_value,
        "for-each-values": action.for_each_values,
    }
    if view.invocation_count is not None:
        attributes["invocation-count"] = view.invocation_count
    return resource(
        ACTION_TYPE,
        action.id,
        attributes,
        relationships={
            "workspace": ref("workspaces", action.workspace_id),
            "last-invocation": ref(INVOCATION_TYPE, action.last_invocation_id),
        },
    )


def serialize_providers(workspace_id: str, providers: list[str]) -> Resource:
    return resource("action-filter-options", workspace_id, {"providers": providers})


def serialize_invoked_by(action_id: str, names: list[str]) -> Resource:
    return resource("action-invocation-filter-options", action_id, {"invoked-by": names})


def serialize_summary(summary: RunSummary) -> Resource:
    return resource(
        "action-invocation-run-summary",
        f"{summary.action_id}:{summary.run_id}",
        {
            "aggregate-invocation-status": summary.aggregate,
            "invocation-method": summary.method,
            "invoked-at": iso(summary.invoked_at) if summary.invoked_at else None,
            "invoked-by": {
                "username": summary.username or "system:not_a_user",
                "avatar-url": None,
            },
            "invocation-statuses": {"successful": summary.successful, "failed": summary.failed},
            "planned-invocation-count": summary.planned,
        },
        relationships={
            "action": ref(ACTION_TYPE, summary.action_id),
            "run": ref("runs", summary.run_id),
        },
    )


def serialize_invocation(view: InvocationView) -> Resource:
    i = view.invocation
    return resource(
        INVOCATION_TYPE,
        i.id,
        {
            "final-status": view.status,
            "invocation-method": i.invocation_method,
            "action-key": i.action_key,
            "action-trigger-event": i.action_trigger_event,
            "triggering-resource-address": i.triggering_resource_address,
            "action-trigger-block-index": i.action_trigger_block_index,
            "actions-list-index": i.actions_list_index,
            "invoked-at": iso(i.invoked_at) if i.invoked_at else None,
            "created-at": iso(i.created_at),
            "updated-at": iso(i.updated_at),
        },
        relationships={
            "action": ref(ACTION_TYPE, i.action_id),
            "run": ref("runs", i.run_id),
        },
    )


def serialize_group(group: ResourceGroup) -> Resource:
    return resource(
        "action-invocation-resource-groups",
        group.address,
        {
            "triggering-resource-address": group.address,
            "aggregate-invocation-status": group.aggregate,
            "invocations": [
                {
                    "id": v.invocation.id,
                    "final-status": v.status,
                    "action-key": v.invocation.action_key,
                    "action-trigger-event": v.invocation.action_trigger_event,
                }
                for v in group.invocations
            ],
        },
    )
