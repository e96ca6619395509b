"""This domain's part of the reviewed route table (see tests/quality/routes.py)."""

from __future__ import annotations

from tests.quality.routes import Route

ROUTES: tuple[Route, ...] = ()
