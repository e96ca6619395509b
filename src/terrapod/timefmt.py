"""Timestamps as TFE clients parse them (no web framework here, so services may use it)."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime | None) -> str | None:
    """RFC 3339 UTC with a literal ``Z`` (``+00:00`` breaks go-tfe)."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
