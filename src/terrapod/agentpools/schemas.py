"""TFE wire shapes for agent pools, agent tokens and agents (HCP Terraform "Agent Pools and
Agents API" and "Agent Tokens API"; go-tfe ``AgentPool``, ``AgentToken``, ``Agent``).

A pool's ``workspaces`` are the workspaces running on it (execution mode agent), its
``allowed-workspaces`` those that may use it when it is not organization-scoped. Terrapod has
no projects, so ``allowed-projects`` and ``excluded-workspaces`` are refused when non-empty
and never shown. Agent tokens are ``authentication-tokens`` resources, the same shape as user
tokens (terrapod.auth.schemas). Terrapod extras: a pool's ``online-agent-count``,
``capacity`` and ``active-runs``; an agent's ``online``, ``capacity``, ``active-runs`` and its
``agent-pool`` relationship (null for a server's built-in agent).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from terrapod.agentpools.service import MAX_DESCRIPTION_LENGTH, MAX_NAME_LENGTH, AgentView, PoolView
from terrapod.errors import Invalid
from terrapod.jsonapi.documents import Resource, iso, ref, refs, resource
from terrapod.jsonapi.models import (
    Omitted,
    Timestamp,
    WireModel,
    listing,
    single,
    to_many,
    to_one,
)
from terrapod.jsonapi.parsing import Attributes


class AgentPoolAttributes(Attributes):
    """Attributes a client may send for a pool (``name`` is required to create one)."""

    name: str | Omitted = Field(default=None, json_schema_extra={"maxLength": MAX_NAME_LENGTH})
    organization_scoped: bool | Omitted = Field(
        default=None,
        json_schema_extra={
            "description": "Every workspace of the organization may use the pool (default "
            "true); else only its allowed-workspaces"
        },
    )


class AgentTokenAttributes(Attributes):
    description: str | Omitted = Field(
        default=None,
        json_schema_extra={"maxLength": MAX_DESCRIPTION_LENGTH, "description": "Required"},
    )


def pool_values(attrs: AgentPoolAttributes) -> dict[str, Any]:
    """The attributes the client sent, by domain name (null included, absent left out)."""
    return attrs.model_dump(exclude_unset=True)


def _relationship_list(relationships: dict[str, Any], name: str) -> list[Any] | None:
    """``relationships.<name>.data`` as a list; None when the relationship is absent."""
    if name not in relationships:
        return None
    pointer = f"/data/relationships/{name}"
    rel = relationships[name]
    if not isinstance(rel, dict) or not isinstance(rel.get("data"), list):
        raise Invalid(
            f"relationship {name} must be an object whose data is a list", pointer=pointer
        )
    items: list[Any] = rel["data"]
    return items


def allowed_workspace_ids(relationships: dict[str, Any]) -> list[str] | None:
    """The ids in ``relationships.allowed-workspaces`` (None: absent, so unchanged)."""
    for unsupported, why in (
        ("allowed-projects", "Terrapod has no projects"),
        ("excluded-workspaces", "pools cannot exclude workspaces in Terrapod"),
    ):
        if _relationship_list(relationships, unsupported):
            raise Invalid(
                f"{unsupported} is not supported ({why}); use allowed-workspaces",
                pointer=f"/data/relationships/{unsupported}",
            )
    items = _relationship_list(relationships, "allowed-workspaces")
    if items is None:
        return None
    ids = []
    for index, item in enumerate(items):
        pointer = f"/data/relationships/allowed-workspaces/data/{index}"
        if not isinstance(item, dict):
            raise Invalid("each element must be an object", pointer=pointer)
        if item.get("type") != "workspaces":
            raise Invalid("type must be workspaces", pointer=pointer + "/type")
        if not isinstance(item.get("id"), str) or not item["id"]:
            raise Invalid("id is required", pointer=pointer + "/id")
        ids.append(item["id"])
    return ids


# -- responses ------------------------------------------------------------------------------


# Member for member what serialize_pool() sends.
class AgentPoolResponseAttributes(WireModel):
    name: str
    created_at: Timestamp
    organization_scoped: bool
    agent_count: int
    online_agent_count: int
    capacity: int
    active_runs: int


class AgentPoolRelationships(WireModel):
    organization: to_one("organizations")  # type: ignore[valid-type]
    workspaces: to_many("workspaces")  # type: ignore[valid-type]
    allowed_workspaces: to_many("workspaces")  # type: ignore[valid-type]


class SelfLinks(WireModel):
    self_: str = Field(alias="self")


AgentPoolDocument = single(
    "agent-pools",
    AgentPoolResponseAttributes,
    relationships=AgentPoolRelationships,
    links=SelfLinks,
)
AgentPoolList = listing(
    "agent-pools",
    AgentPoolResponseAttributes,
    relationships=AgentPoolRelationships,
    links=SelfLinks,
)


def serialize_pool(view: PoolView) -> Resource:
    pool = view.pool
    return resource(
        "agent-pools",
        pool.id,
        {
            "name": pool.name,
            "created-at": iso(pool.created_at),
            "organization-scoped": pool.organization_scoped,
            "agent-count": view.agent_count,
            "online-agent-count": view.online_agent_count,
            "capacity": view.capacity,
            "active-runs": view.active_runs,
        },
        relationships={
            "organization": ref("organizations", view.organization.name),
            "workspaces": refs("workspaces", view.workspace_ids),
            "allowed-workspaces": refs("workspaces", view.allowed_workspace_ids),
        },
        links={"self": f"/api/v2/agent-pools/{pool.id}"},
    )


# Member for member what serialize_agent() sends.
class AgentResponseAttributes(WireModel):
    """``status``: idle, busy, unknown (not heard of for the heartbeat timeout), exited or
    errored."""

    name: str
    status: str
    ip_address: str | None
    last_ping_at: Timestamp | None
    online: bool
    capacity: int
    active_runs: int


class AgentRelationships(WireModel):
    agent_pool: to_one("agent-pools")  # type: ignore[valid-type]


AgentDocument = single(
    "agents", AgentResponseAttributes, relationships=AgentRelationships, links=SelfLinks
)
AgentList = listing(
    "agents", AgentResponseAttributes, relationships=AgentRelationships, links=SelfLinks
)


def serialize_agent(view: AgentView) -> Resource:
    agent = view.agent
    return resource(
        "agents",
        agent.id,
        {
            "name": agent.name,
            "status": view.status,
            "ip-address": agent.ip_address,
            "last-ping-at": iso(agent.last_ping_at),
            "online": view.online,
            "capacity": agent.capacity,
            "active-runs": view.active_runs,
        },
        relationships={"agent-pool": ref("agent-pools", agent.pool_id)},
        links={"self": f"/api/v2/agents/{agent.id}"},
    )
