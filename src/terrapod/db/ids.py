"""Prefixed external IDs: ``<prefix>-<16 random base62 chars>`` (DESIGN.md, contracts).

The same ID is the primary key in the database and the ``id`` on the wire, so there is no
mapping table and no second lookup.
"""

from __future__ import annotations

import re
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 16
_ID_RE = re.compile(r"^[a-z]+-[A-Za-z0-9]{16}$")


def new_id(prefix: str) -> str:
    return f"{prefix}-" + "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))


def looks_like_id(value: str, prefix: str) -> bool:
    """True when ``value`` is a well-formed ID of the given prefix (says nothing of existence)."""
    return value.startswith(prefix + "-") and bool(_ID_RE.match(value))
