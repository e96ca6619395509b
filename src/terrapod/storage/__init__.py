"""Object storage: state files, configuration tarballs, logs, plans and registry archives.

* :mod:`~terrapod.storage.base` — the :class:`ObjectStore` protocol, :class:`ObjectInfo`,
  :class:`ObjectStream` and the errors.
* :mod:`~terrapod.storage.filesystem` / :mod:`~terrapod.storage.s3` — the two back-ends.
* :mod:`~terrapod.storage.keys` — the one place object keys are built.
* :mod:`~terrapod.storage.signing` — signed URL tokens; :mod:`~terrapod.storage.api` — the
  ``/objects/<token>`` routes that serve them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from terrapod.storage.base import (
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectStore,
    ObjectStream,
    ObjectTooLarge,
    StorageError,
)
from terrapod.storage.filesystem import FilesystemObjectStore
from terrapod.storage.signing import (
    SignatureExpired,
    SignatureInvalid,
    SignedUrlError,
    UrlSigner,
)

if TYPE_CHECKING:
    from terrapod.config import Settings

__all__ = [
    "FilesystemObjectStore",
    "InvalidKey",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "ObjectStream",
    "ObjectTooLarge",
    "SignatureExpired",
    "SignatureInvalid",
    "SignedUrlError",
    "StorageError",
    "UrlSigner",
    "build_object_store",
]


def build_object_store(settings: Settings) -> ObjectStore:
    """The back-end ``settings.storage.backend`` names: a directory at
    ``settings.storage_path`` (created if missing), or the configured S3 bucket."""
    if settings.storage.backend == "s3":
        # Imported here so the embedded shape never pays for importing boto3.
        from terrapod.storage.s3 import S3ObjectStore

        return S3ObjectStore.from_settings(settings.storage.s3)
    return FilesystemObjectStore(settings.storage_path)
