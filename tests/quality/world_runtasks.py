"""What the generic endpoint suite's world holds for this domain's routes."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

# IDs that look real but name nothing (for the 401-before-lookup checks).
PLACEHOLDERS: dict[str, str] = {}


async def extend(app: FastAPI, admin: httpx.AsyncClient, values: dict[str, str]) -> dict[str, str]:
    """Create what this domain's routes need in the world; return the values their paths use."""
    return {}
