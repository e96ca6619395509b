"""This domain's part of the reviewed route table (see tests/quality/routes.py)."""

from __future__ import annotations

from tests.quality.routes import Route

POOLS = "/api/v2/organizations/{org_name}/agent-pools"
POOL = "/api/v2/agent-pools/{pool_id}"

POOL_BODY = {
    "data": {
        "type": "agent-pools",
        "attributes": {"name": "from-the-suite", "organization-scoped": False},
        "relationships": {
            "allowed-workspaces": {"data": [{"type": "workspaces", "id": "{workspace_id}"}]}
        },
    }
}
AGENT_TOKEN_BODY = {"data": {"type": "authentication-tokens", "attributes": {"description": "x"}}}

# The world (world_agentpools) has two pools, two agent tokens and two agents in the first
# pool, and a built-in agent, so every list's page of one is a real page.
ROUTES: tuple[Route, ...] = (
    Route("GET", POOLS, "member", is_list=True, query_budget=8),
    Route("POST", POOLS, "owner", body=POOL_BODY, query_budget=12),
    Route("GET", POOL, "member"),
    Route("PATCH", POOL, "owner", body=POOL_BODY, query_budget=12),
    Route("DELETE", POOL, "owner", query_budget=8),
    Route("POST", POOL + "/authentication-tokens", "owner", body=AGENT_TOKEN_BODY),
    Route("GET", POOL + "/authentication-tokens", "owner", is_list=True),
    Route("GET", POOL + "/agents", "member", is_list=True),
    Route("GET", "/api/v2/agents/{agent_id}", "member"),
    Route("GET", "/api/v2/admin/agents", "platform", is_list=True),
)
