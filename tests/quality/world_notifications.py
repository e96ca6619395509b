"""What the generic endpoint suite's world holds for the notification routes: two
configurations in the main workspace, a generic one (with a token) and a Slack one, both
pointing at hosts that never resolve, so nothing leaves the machine."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

# IDs that look real but name nothing (for the 401-before-lookup checks).
PLACEHOLDERS: dict[str, str] = {"configuration_id": "nc-AAAAAAAAAAAAAAAA"}

CONFIGURATIONS = (
    {
        "name": "webhook",
        "destination-type": "generic",
        "url": "https://hooks.example.invalid/terrapod",
        "token": "world-hmac-key",
        "enabled": True,
        "triggers": ["run:created", "run:errored"],
    },
    {
        "name": "chat",
        "destination-type": "slack",
        "url": "https://slack.example.invalid/services/T/B/X",
        "enabled": False,
        "triggers": ["run:completed"],
    },
)


async def extend(app: FastAPI, admin: httpx.AsyncClient, values: dict[str, str]) -> dict[str, str]:
    """Create what the notification routes need in the world; return the values their paths
    use."""
    ids = []
    for attributes in CONFIGURATIONS:
        r = await admin.post(
            f"/api/v2/workspaces/{values['workspace_id']}/notification-configurations",
            json={"data": {"type": "notification-configurations", "attributes": attributes}},
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["data"]["id"])
    return {"configuration_id": ids[0]}
