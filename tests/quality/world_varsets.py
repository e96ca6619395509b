"""What the generic endpoint suite's world holds for the variable set routes: a set applied
to the main workspace with a terraform, an env and a sensitive variable, and a global set."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

# IDs that look real but name nothing (for the 401-before-lookup checks).
PLACEHOLDERS: dict[str, str] = {
    "varset_id": "varset-AAAAAAAAAAAAAAAA",
    "var_id": "var-BBBBBBBBBBBBBBBB",
}

SHARED_VARIABLES = (
    {"key": "region", "value": "eu-west-1", "category": "terraform"},
    {"key": "TF_LOG", "value": "INFO", "category": "env"},
    {"key": "API_TOKEN", "value": "s3cr3t", "category": "env", "sensitive": True},
)


async def _created(r: httpx.Response) -> str:
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


async def extend(app: FastAPI, admin: httpx.AsyncClient, values: dict[str, str]) -> dict[str, str]:
    """Create what the variable set routes need in the world; return the values their paths
    use."""
    org_sets = "/api/v2/organizations/default/varsets"
    shared = await _created(
        await admin.post(
            org_sets,
            json={
                "data": {
                    "type": "varsets",
                    "attributes": {"name": "shared", "description": "applied to main"},
                    "relationships": {
                        "workspaces": {
                            "data": [{"type": "workspaces", "id": values["workspace_id"]}]
                        }
                    },
                }
            },
        )
    )
    var_ids = [
        await _created(
            await admin.post(
                f"/api/v2/varsets/{shared}/relationships/vars",
                json={"data": {"type": "vars", "attributes": attributes}},
            )
        )
        for attributes in SHARED_VARIABLES
    ]
    await _created(
        await admin.post(
            org_sets,
            json={
                "data": {
                    "type": "varsets",
                    "attributes": {"name": "everywhere", "global": True},
                    "relationships": {
                        "vars": {
                            "data": [
                                {
                                    "type": "vars",
                                    "attributes": {"key": "owner", "category": "terraform"},
                                }
                            ]
                        }
                    },
                }
            },
        )
    )
    return {"varset_id": shared, "var_id": var_ids[0]}
