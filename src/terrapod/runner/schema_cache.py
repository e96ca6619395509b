"""A cache of ``terraform providers schema -json`` output.

The redacted plan the CLI renders needs the schemas of the providers a plan uses. They depend
only on the engine and on the exact providers ``init`` installed, which the dependency lock
file pins (a configuration that uses only the built-in provider has no lock file), so one
answer serves every plan with the same engine and lock file. Asking Terraform costs an engine
start per plan (benchmarks/run_overhead.py); reading the cache costs a file read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from terrapod.runner.engines import Engine

# Schemas of big providers run to megabytes; keep the most recently used few.
MAX_ENTRIES = 32
LOCK_FILE = ".terraform.lock.hcl"


class SchemaCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def key(self, engine: Engine, module_dir: Path) -> str:
        digest = hashlib.sha256()
        digest.update(f"{engine.name}\0{engine.version}\0{engine.path}\0".encode())
        with contextlib.suppress(FileNotFoundError):
            digest.update((module_dir / LOCK_FILE).read_bytes())
        return digest.hexdigest()

    def get(self, key: str) -> bytes | None:
        path = self.directory / f"{key}.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        with contextlib.suppress(FileNotFoundError):
            os.utime(path)  # most recently used
        return data

    def put(self, key: str, data: bytes) -> None:
        """Store atomically (a concurrent job reads the whole answer or none), then trim."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self.directory / f".{key}.{os.getpid()}.partial"
        partial.write_bytes(data)
        partial.replace(self.directory / f"{key}.json")
        entries = sorted(self.directory.glob("*.json"), key=_mtime, reverse=True)
        for stale in entries[MAX_ENTRIES:]:
            stale.unlink(missing_ok=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
