"""What the generic endpoint suite's world holds for the run trigger routes: two source
workspaces, each connected to the main workspace by a run trigger."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.runs_support import make_workspace

# IDs that look real but name nothing (for the 401-before-lookup checks).
PLACEHOLDERS: dict[str, str] = {"run_trigger_id": "rt-AAAAAAAAAAAAAAAA"}


async def extend(app: FastAPI, admin: httpx.AsyncClient, values: dict[str, str]) -> dict[str, str]:
    """Create what the run trigger routes need in the world; return the values their paths
    use."""
    ids = []
    for name in ("rt-source-1", "rt-source-2"):
        source = await make_workspace(admin, name)
        r = await admin.post(
            f"/api/v2/workspaces/{values['workspace_id']}/run-triggers",
            json={
                "data": {
                    "type": "run-triggers",
                    "relationships": {"sourceable": {"data": {"type": "workspaces", "id": source}}},
                }
            },
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["data"]["id"])
    return {"run_trigger_id": ids[0]}
