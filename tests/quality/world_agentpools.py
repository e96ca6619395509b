"""What the generic endpoint suite's world holds for the agent pool routes: two pools of the
default organization, two agent tokens and two agents in the first, and a built-in agent.

Agents are written directly: they come into being when an agent process joins (the listener
protocol), which the generic suite does not run.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import httpx
from fastapi import FastAPI

from terrapod.agentpools.models import Agent
from terrapod.db.base import utcnow
from terrapod.db.engine import WRITE_OPTION
from terrapod.db.ids import new_id

# IDs that look real but name nothing (for the 401-before-lookup checks).
PLACEHOLDERS: dict[str, str] = {
    "pool_id": "apool-AAAAAAAAAAAAAAAA",
    "agent_id": "agent-AAAAAAAAAAAAAAAA",
}


async def extend(app: FastAPI, admin: httpx.AsyncClient, values: dict[str, str]) -> dict[str, str]:
    """Create what the agent pool routes need in the world; return the values their paths
    use."""
    pools = []
    for name in ("pool-1", "pool-2"):
        r = await admin.post(
            "/api/v2/organizations/default/agent-pools",
            json={"data": {"type": "agent-pools", "attributes": {"name": name}}},
        )
        assert r.status_code == 201, r.text
        pools.append(r.json()["data"]["id"])
    for description in ("host-1", "host-2"):
        r = await admin.post(
            f"/api/v2/agent-pools/{pools[0]}/authentication-tokens",
            json={
                "data": {
                    "type": "authentication-tokens",
                    "attributes": {"description": description},
                }
            },
        )
        assert r.status_code == 201, r.text
    agents = []
    async with app.state.sessionmaker() as session:
        await session.connection(execution_options={WRITE_OPTION: True})
        for pool_id, name in ((pools[0], "host-1"), (pools[0], "host-2"), (None, "builtin-1")):
            agent = Agent(
                id=new_id("agent"),
                pool_id=pool_id,
                name=name,
                status="idle",
                capacity=2,
                credential_hash=secrets.token_hex(32),
                credential_expires_at=utcnow() + timedelta(hours=1),
                last_ping_at=utcnow(),
            )
            session.add(agent)
            agents.append(agent.id)
        await session.commit()
    return {"pool_id": pools[0], "agent_id": agents[0]}
