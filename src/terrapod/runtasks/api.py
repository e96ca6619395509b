"""Routes of this domain: parse, one service call, serialize."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
