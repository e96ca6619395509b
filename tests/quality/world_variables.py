"""What the generic endpoint suite's world holds for the variables routes: in the main
workspace, a terraform variable, an HCL one, an environment variable and a sensitive one."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

# IDs that look real but name nothing (for the 401-before-lookup checks).
PLACEHOLDERS: dict[str, str] = {"variable_id": "var-AAAAAAAAAAAAAAAA"}

VARIABLES = (
    {"key": "region", "value": "eu-west-1", "category": "terraform"},
    {"key": "tags", "value": '{ team = "core" }', "category": "terraform", "hcl": True},
    {"key": "TF_LOG", "value": "INFO", "category": "env"},
    {"key": "AWS_SECRET_ACCESS_KEY", "value": "s3cr3t", "category": "env", "sensitive": True},
)


async def extend(app: FastAPI, admin: httpx.AsyncClient, values: dict[str, str]) -> dict[str, str]:
    """Create what the variables routes need in the world; return the values their paths use."""
    ids = []
    for attributes in VARIABLES:
        r = await admin.post(
            f"/api/v2/workspaces/{values['workspace_id']}/vars",
            json={"data": {"type": "vars", "attributes": attributes}},
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["data"]["id"])
    return {"variable_id": ids[0]}
