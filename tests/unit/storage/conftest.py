"""Fixtures for the object-store tests: one ``store`` per back-end, and probes that look
behind a store's back (stray temporary files, pending multipart uploads)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from terrapod.storage.base import ObjectStore
from terrapod.storage.filesystem import FilesystemObjectStore
from terrapod.storage.s3 import MIN_PART_SIZE, S3ObjectStore
from tests.fixtures.s3 import (  # noqa: F401  (pytest fixtures)
    ACCESS_KEY_ID,
    REGION,
    SECRET_ACCESS_KEY,
    moto_endpoint,
    s3_bucket,
)

BACKENDS = ("filesystem", "s3")
# Smallest part S3 allows, so tests reach multipart uploads with little data.
PART_SIZE = MIN_PART_SIZE


class Probe:
    """Everything a back-end stores, including what a store should have cleaned up."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        root: Path | None = None,
        s3: Any = None,
        bucket: str = "",
        prefix: str = "",
    ) -> None:
        self.store = store
        self._root = root
        self._s3 = s3
        self._bucket = bucket
        self.prefix = prefix

    def raw_entries(self) -> list[str]:
        """Every file (filesystem, dot-files included) or object key (S3) of this store."""
        if self._root is not None:
            return sorted(
                os.path.relpath(os.path.join(d, f), self._root)
                for d, _, files in os.walk(self._root)
                for f in files
            )
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self.prefix
        )
        return sorted(o["Key"][len(self.prefix) :] for p in pages for o in p.get("Contents", []))

    def purge(self) -> None:
        """Delete everything this store's S3 prefix holds."""
        for key in self.raw_entries():
            self._s3.delete_object(Bucket=self._bucket, Key=self.prefix + key)

    def pending_uploads(self) -> list[str]:
        """Multipart uploads neither completed nor aborted (always [] on the filesystem)."""
        if self._s3 is None:
            return []
        response = self._s3.list_multipart_uploads(Bucket=self._bucket, Prefix=self.prefix)
        return [u["Key"] for u in response.get("Uploads", [])]


@pytest.fixture(scope="session")
def boto_session() -> boto3.session.Session:
    """Shared so each test's store does not reload botocore's service models."""
    return boto3.session.Session()


@pytest.fixture(params=BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def probe(
    store_backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Probe]:
    """A fresh, empty store of each back-end (S3: its own key prefix in the session bucket)."""
    if store_backend == "filesystem":
        root = tmp_path / "objects"
        fs_store = FilesystemObjectStore(root)
        yield Probe(fs_store, root=Path(fs_store.root))
        await fs_store.close()
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    bucket = request.getfixturevalue("s3_bucket")
    prefix = f"t-{secrets.token_hex(6)}/"
    s3_store = S3ObjectStore(
        bucket,
        endpoint_url=endpoint,
        region=REGION,
        access_key_id=ACCESS_KEY_ID,
        secret_access_key=SECRET_ACCESS_KEY,
        prefix=prefix,
        part_size=PART_SIZE,
        session=request.getfixturevalue("boto_session"),
    )
    s3_probe = Probe(s3_store, s3=s3_store.client, bucket=bucket, prefix=prefix)
    yield s3_probe
    # moto holds objects in memory for the whole session; do not let big ones pile up.
    s3_probe.purge()
    await s3_store.close()


@pytest.fixture
def store(probe: Probe) -> ObjectStore:
    return probe.store
