"""The master secret and the keys derived from it.

One master secret (``TERRAPOD_SECRET_KEY``, or a file generated once in the data dir with mode
0600) yields independent keys per purpose through HKDF, so a signed-URL key can never decrypt
a stored secret and vice versa.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from terrapod.config import Settings

SECRET_FILE = "secret.key"  # noqa: S105 - a file name


def load_master_secret(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        value = settings.secret_key.get_secret_value().encode()
        if len(value) < 32:
            raise ValueError("TERRAPOD_SECRET_KEY must be at least 32 characters")
        return value
    path = settings.data_dir / SECRET_FILE
    if path.exists():
        return path.read_bytes().strip()
    return _create_secret_file(path)


def _create_secret_file(path: Path) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48).encode()
    # O_EXCL: two processes starting at once cannot both write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as handle:
        handle.write(value)
    return value


def derive_key(master: bytes, purpose: str, length: int = 32) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=purpose.encode()).derive(
        master
    )
