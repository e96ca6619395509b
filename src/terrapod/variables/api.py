"""variables routes: parse, one service call, serialize."""

from __future__ import annotations

from fastapi import APIRouter

from terrapod.jsonapi.models import JSONAPIRouteResponse, authenticated

router = APIRouter(
    prefix="/api/v2",
    tags=["variables"],
    default_response_class=JSONAPIRouteResponse,
    responses=authenticated(),
)
